package testkit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Component is a long-lived stage (the stream processor, an egress stage, the analytics sink):
// Run until stopped, Close(ctx) to stop it.
type Component interface {
	Run(ctx context.Context) error
	Close(ctx context.Context) error
}

// Start runs c.Run in a goroutine and returns the channel its result arrives on.
func Start(c Component) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	return done
}

// CheckClose closes c, whose Run (started by Start) reports on done, and checks what every
// component's Close promises: it returns nil, Run has returned by then, Run's result matches
// want (errors.Is; a nil want means nil), and a second Close returns nil.
func CheckClose(t testing.TB, c Component, done <-chan error, want error) {
	t.Helper()
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	// Run has finished its work when Close returns, but its result reaches done a moment later
	// (Start's goroutine sends it after Run's deferred calls): allow that moment, not more.
	select {
	case err := <-done:
		if !errors.Is(err, want) { // a nil want matches only nil
			t.Errorf("Run() = %v, want %v after Close", err, want)
		}
	case <-time.After(time.Second):
		t.Errorf("Close returned while Run still ran")
		<-done
	}
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

// Background runs c.Run until the returned stop is called: stop cancels Run's context, waits for
// Run to return, then closes c. It acts once (later calls do nothing), and at the end of the test
// if the test did not call it. An error from Run or Close fails the test, named by what.
func Background(t testing.TB, what string, c Component) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := c.Close(context.Background()); err != nil {
				t.Errorf("%s: Close: %v", what, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
