package testsvc

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// server is a process a test started (redis-server, dynalite, versitygw, local-kms): its output
// is kept for error messages and it is reaped in the background, so that exited closes when it
// ends whoever stops it.
type server struct {
	name   string // as error messages name it
	cmd    *exec.Cmd
	out    Buffer
	exited chan struct{}
}

// startServer starts cmd, its stdout and stderr captured.
func startServer(name string, cmd *exec.Cmd) (*server, error) {
	s := &server{name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", cmd.Path, err)
	}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// stop interrupts the server and waits for it to exit, killing it after 5 s. It may be called
// again, and after the server exited by itself.
func (s *server) stop() { s.halt(os.Interrupt) }

// halt sends sig (os.Kill: a crash) and waits as stop does.
func (s *server) halt(sig os.Signal) {
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// waitReady calls ready every interval until it reports true. It returns an error, with the last
// lines of the server's output, when the server exits first, when ready fails (a server other than
// ours answered) or when timeout passes; the server is stopped then, except when it exited.
// waitingFor says what did not happen in time ("answering PING on 127.0.0.1:6379").
func (s *server) waitReady(timeout, interval time.Duration, waitingFor string, ready func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := ready()
		switch {
		case err != nil:
			s.stop()
			return err
		case ok:
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited: %s", s.name, lastLines(s.out.String(), 5))
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("%s not %s after %v: %s", s.name, waitingFor, timeout, lastLines(s.out.String(), 5))
		}
		time.Sleep(interval)
	}
}

// unavailable reports a service that cannot run here: it fails tb under CI, where a missing
// dependency must never pass silently, and skips it elsewhere.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf(format, args...)
	}
	tb.Skipf(format, args...)
}

// retryPorts calls start up to three times and returns its first success, or the last error.
// The free port a start chooses is free only until the server binds it, so another process may
// take it first: a start that fails is retried on another port.
func retryPorts[T any](start func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 3 {
		if v, err = start(); err == nil {
			return v, nil
		}
	}
	return v, err
}
