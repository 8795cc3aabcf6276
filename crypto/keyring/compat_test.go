package keyring_test

import (
	"errors"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/keyring"
)

// TestPeriodKeysOpenUnderWindows: a deployment that turns key windows on (the default since
// issue 19) keeps opening what its 24 h period keys sealed, until each period key's own DestroyAt,
// while new data goes under window keys.
func TestPeriodKeysOpenUnderWindows(t *testing.T) {
	e := newEnv(t)
	before := e.keyring() // keys.window 0: one key per app per 24 h period
	rec, tok := seal(t, before, "app-1", t0, `"old"`)
	if _, isWin := keyring.IsWindowVersion(rec.Period); isWin || rec.Period != p0 {
		t.Fatalf("sealed under version %d, want the period key %d", rec.Period, p0)
	}

	after := e.keyring(func(c *keyring.Config) { c.Window = 15 * time.Minute }) // restarted with windows
	if key, err := after.SealingKeyFor(ctx, "app-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	} else if _, isWin := keyring.IsWindowVersion(key.Period); !isWin {
		t.Errorf("new data sealed under version %d, want a window key", key.Period)
	}
	destroyAt := keyring.PeriodEnd(p0).Add(keyring.DefaultMaxTTL + keyring.SkewMargin)
	e.clock.Set(destroyAt.Add(-time.Second))
	if got, err := open(after, rec, tok, t0); err != nil || got != `"old"` {
		t.Errorf("period-key token under windows, 1 s before its DestroyAt = %q, %v", got, err)
	}
	e.clock.Set(destroyAt)
	if _, err := open(e.keyring(func(c *keyring.Config) { c.Window = 15 * time.Minute }), rec, tok, t0); !errors.Is(err, keyring.ErrKeyDestroyed) {
		t.Errorf("period-key token at its DestroyAt = %v, want ErrKeyDestroyed", err)
	}
}
