// Package testsvc starts real services for tests: a throwaway server on a free loopback port, in
// a temporary directory, stopped when the test ends. A test that needs a service which is not
// installed fails when the CI environment variable is set and is skipped otherwise, so a missing
// dependency can never pass silently in CI.
//
// Every server is one process run the same way (server.go): output kept for error messages,
// ready when it answers its own probe (PING, a DynamoDB request id, /health, a KMS call), stopped
// with SIGINT and, after 5 s, SIGKILL.
package testsvc

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis starts a redis-server with persistence off, bound to 127.0.0.1 on a free port, and
// returns its address. The server is stopped when tb ends.
func Redis(tb testing.TB) string {
	tb.Helper()
	bin := lookPath(tb, "redis-server")
	addr, err := retryPorts(func() (string, error) { return startRedis(tb, bin) })
	if err != nil {
		tb.Fatalf("starting redis-server: %v", err)
	}
	return addr
}

func startRedis(tb testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	s, err := startRedisOn(bin, port, tb.TempDir())
	if err != nil {
		return "", err
	}
	tb.Cleanup(s.stop)
	return redisAddr(port), nil
}

func redisAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// startRedisOn starts redis-server on port with persistence off and dir as its directory, and
// returns once it answers PING.
func startRedisOn(bin string, port int, dir string) (*server, error) {
	s, err := startServer("redis-server", exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
	))
	if err != nil {
		return nil, err
	}
	addr := redisAddr(port)
	if err := s.waitReady(10*time.Second, 20*time.Millisecond, "answering PING on "+addr, func() (bool, error) {
		return ping(addr) == nil, nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// lookPath finds a server binary, failing the test under CI and skipping it elsewhere.
func lookPath(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	unavailable(tb, "%s not found on PATH; run scripts/test-deps.sh to install it: %v", name, err)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr returns a loopback host:port that was free a moment ago: for a server the test starts
// there, or, left unused, an address where nothing answers.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Buffer is a bytes.Buffer safe for concurrent use: a log destination that a server's or a
// component's goroutines write while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
