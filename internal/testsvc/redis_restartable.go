package testsvc

import (
	"fmt"
	"os"
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

	mu  sync.Mutex
	srv *server // nil while stopped
}

// StartRedisServer starts a restartable redis-server on a free loopback port; it is stopped when
// tb ends.
func StartRedisServer(tb testing.TB) *RedisServer {
	tb.Helper()
	r := &RedisServer{tb: tb, bin: lookPath(tb, "redis-server"), dir: tb.TempDir()}
	if _, err := retryPorts(func() (int, error) {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		r.port = port
		return port, r.start()
	}); err != nil {
		tb.Fatalf("starting redis-server: %v", err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// Addr is the server's host:port; it stays the same across restarts.
func (r *RedisServer) Addr() string { return redisAddr(r.port) }

// Kill stops the server at once (SIGKILL), as a crash would. It is a no-op when stopped.
func (r *RedisServer) Kill() { r.halt(os.Kill) }

// Stop stops the server (SIGINT, then SIGKILL after 5 s). It is a no-op when stopped.
func (r *RedisServer) Stop() { r.halt(os.Interrupt) }

func (r *RedisServer) halt(sig os.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return
	}
	r.srv.halt(sig)
	r.srv = nil
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
	if r.srv != nil {
		return fmt.Errorf("redis-server on %s already running", r.Addr())
	}
	srv, err := startRedisOn(r.bin, r.port, r.dir)
	if err != nil {
		return err
	}
	r.srv = srv
	return nil
}
