package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RedisServer is a redis-server the test can stop and start again on the same address, to
// simulate the store going down. Like Redis, persistence is off: a restart comes back empty.
type RedisServer struct {
	tb   testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedisServer starts a restartable redis-server on a free loopback port; it is stopped when
// tb ends.
func StartRedisServer(tb testing.TB) *RedisServer {
	tb.Helper()
	r := &RedisServer{tb: tb, bin: lookPath(tb, "redis-server"), dir: tb.TempDir()}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		r.port = port
		if lastErr = r.start(); lastErr == nil {
			tb.Cleanup(r.Stop)
			return r
		}
	}
	tb.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port; it stays the same across restarts.
func (r *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Kill stops the server at once (SIGKILL), as a crash would. It is a no-op when stopped.
func (r *RedisServer) Kill() { r.halt(os.Kill) }

// Stop stops the server (SIGINT, then SIGKILL after 5 s). It is a no-op when stopped.
func (r *RedisServer) Stop() { r.halt(os.Interrupt) }

func (r *RedisServer) halt(sig os.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// Restart starts the server again on the same port, failing the test if it cannot.
func (r *RedisServer) Restart() {
	r.tb.Helper()
	var err error
	// The port was just released: another process may hold it briefly (TIME_WAIT does not
	// block a listener, but a racing bind can): retry for a few seconds.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err = r.start(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		r.tb.Fatalf("restarting redis-server on %s: %v", r.Addr(), err)
	}
}

func (r *RedisServer) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return fmt.Errorf("redis-server on %s already running", r.Addr())
	}
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--daemonize", "no",
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", r.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ping(r.Addr()) == nil {
			r.cmd, r.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", lastLines(out.String(), 5))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server not answering PING on %s after 10s: %s", r.Addr(), lastLines(out.String(), 5))
		}
	}
}
