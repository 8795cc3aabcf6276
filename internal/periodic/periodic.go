// Package periodic is veil's one ticker loop: background work that runs every interval until its
// context ends (the key janitor, the watchers of principals, key stores and lag, the blob
// sweeper, the console's sampler, the embedded broker's offset saver).
//
// Both functions return only once ctx has ended, and never while f runs: f gets the same ctx and
// should give up promptly when it ends. A call to f that takes longer than the interval delays
// the next one (ticks are dropped, not queued).
package periodic

import (
	"context"
	"time"
)

// Every calls f every interval, the first time one interval after the call, until ctx ends.
func Every(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f(ctx)
	}
}

// NowAndEvery calls f at once and then every interval until ctx ends. f runs once even when ctx
// has already ended.
func NowAndEvery(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
