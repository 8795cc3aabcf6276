package periodic_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/periodic"
)

func TestEvery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		run     func(context.Context, time.Duration, func(context.Context))
		atStart int64 // calls before the first interval has passed
	}{
		{"Every", periodic.Every, 0},
		{"NowAndEvery", periodic.NowAndEvery, 1},
	} {
		const interval = 100 * time.Millisecond
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var calls atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.run(ctx, interval, func(fctx context.Context) {
					if fctx != ctx {
						t.Errorf("f got another context than the loop's")
					}
					calls.Add(1)
				})
			}()
			if tc.atStart == 0 {
				// The ticker starts after the go statement, so nothing can be due yet.
				time.Sleep(interval / 2)
				if got := calls.Load(); got != 0 {
					t.Errorf("calls within the first interval = %d, want 0", got)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for calls.Load() < tc.atStart+3 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := calls.Load(); got < tc.atStart+3 {
				t.Fatalf("calls after 5s = %d, want at least %d", got, tc.atStart+3)
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the loop did not return within 5s of its context ending")
			}
			n := calls.Load()
			time.Sleep(2 * interval)
			if got := calls.Load(); got != n {
				t.Errorf("calls went on after the loop returned: %d, then %d", n, got)
			}
		})
	}
}

// NowAndEvery calls f once even with an ended context (the callers' "at once, then every
// interval"); Every does not.
func TestEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var now, every int
	periodic.NowAndEvery(ctx, time.Millisecond, func(context.Context) { now++ })
	periodic.Every(ctx, time.Millisecond, func(context.Context) { every++ })
	if now != 1 || every != 0 {
		t.Errorf("calls with an ended context: NowAndEvery %d, Every %d; want 1, 0", now, every)
	}
}
