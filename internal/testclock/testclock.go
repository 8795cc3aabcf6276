// Package testclock is a settable clock for tests: it reads only what the test set, so expiry,
// key periods and windows are tested by moving the clock, not by waiting. It is safe for
// concurrent use. (internal/testkit.Clock is the other kind: real time plus an offset.)
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable clock; pass its Now method value as the clock of what is tested.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock reading now.
func New(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to now, forwards or backwards.
func (c *Clock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

// Advance moves the clock forwards by d (backwards if d < 0).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
