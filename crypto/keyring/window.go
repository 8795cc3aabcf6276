package keyring

import (
	"context"
	"fmt"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
)

// Key windows (Config.Window > 0): instead of one key per app per 24 h period, an entry is sealed
// under the key of its expiry window, the window of Window length that its expiry falls in, and
// that key is destroyed WindowGrace after the window closes. So the key that can open an entry
// dies at most Window + WindowGrace after the entry's TTL, whatever copies of its ciphertext
// survive elsewhere (store rows not yet deleted, backups, encrypted topics).
//
// A window key's version carries the window's end, in Unix minutes, negated, as its period
// (KeyVersion(-endMinute, generation)): negative periods never name a 24 h period of this era,
// and two processes configured with different window lengths that meet on the same end build
// the same key with the same DestroyAt, so they never disagree.
const (
	// WindowGrace is how long a window key outlives its window: clock skew between processes.
	WindowGrace = SkewMargin
	// MinWindow is the shortest Config.Window.
	MinWindow = time.Minute
)

// IsWindowVersion reports whether v is the version of a window key, and the window's end.
func IsWindowVersion(v int64) (time.Time, bool) {
	p := PeriodOfVersion(v)
	if p >= 0 {
		return time.Time{}, false
	}
	return time.Unix(-p*60, 0).UTC(), true
}

// windowEnd returns the end of the window of Window length that expiry falls in (an expiry on a
// boundary ends its window).
func (k *Keyring) windowEnd(expiry time.Time) time.Time {
	w := int64(k.cfg.Window / time.Second)
	s := expiry.Unix()
	if expiry.Nanosecond() > 0 {
		s++
	}
	end := (s + w - 1) / w * w
	if s < 0 {
		end = s / w * w
	}
	return time.Unix(end, 0).UTC()
}

// winKey names one window of one app.
type winKey struct {
	app string
	end int64 // Unix minutes
}

// winTable maps a window to the generation this Keyring seals it under, and when it last asked.
// (A window's genState.period is -end, the same for every generation, so set never steps back.)
type winTable struct{ genTable[winKey] }

// reset forgets every window (a rotation or an erasure happened somewhere), or those of app; and
// windows already closed, so the table stays small.
func (t *winTable) reset(app string, now time.Time) {
	t.forgetIf(func(k winKey) bool { return app == "" || k.app == app || k.end*60 < now.Unix() })
}

// SealingKeyFor returns the key new data of app expiring at expiry is sealed under: with
// Config.Window set, the key of expiry's window (generated through the KMS, once per deployment,
// if it does not exist yet); without it, SealingKey's key of the current 24 h period. It
// implements envelope.WindowKeys.
func (k *Keyring) SealingKeyFor(ctx context.Context, app string, expiry time.Time) (*envelope.AppKey, error) {
	if k.cfg.Window <= 0 {
		return k.SealingKey(ctx, app)
	}
	if err := k.beginSealing(ctx, app); err != nil {
		return nil, err
	}
	wk := winKey{app, k.windowEnd(expiry).Unix() / 60}
	for range 2 {
		v, err := k.windowVersion(ctx, wk)
		if err != nil {
			return nil, err
		}
		key, ok, err := k.cached(app, v)
		if !ok && err == nil {
			key, err = k.load(ctx, app, v, true)
			if err == nil && k.cfg.Prefetch {
				k.prefetch(winKey{app, wk.end + int64(k.cfg.Window/time.Minute)})
			}
		}
		if err == nil || !isDestroyed(err) {
			return key, err
		}
		// Erased elsewhere: find the next live generation of the window.
		k.wins.reset(app, k.cfg.Clock())
	}
	return nil, fmt.Errorf("%w: app %s has no live key for the window ending %s", ErrKeyDestroyed, app, time.Unix(wk.end*60, 0).UTC())
}

// windowVersion returns the version the window is sealed under: known, or asked of the store
// (the newest live generation, or the first free one above an erasure's tombstones).
func (k *Keyring) windowVersion(ctx context.Context, wk winKey) (int64, error) {
	now := k.cfg.Clock()
	if g, ok := k.wins.get(wk); ok && !g.checked.IsZero() {
		return KeyVersion(-wk.end, g.gen), nil
	}
	return shared(ctx, k, fmt.Sprintf("w/%d/%s", wk.end, wk.app), func(fctx context.Context) (int64, error) {
		gen, err := k.newestGen(fctx, wk.app, -wk.end, 0)
		if err != nil {
			return 0, err
		}
		k.wins.set(wk, genState{period: -wk.end, gen: gen, checked: now})
		g, _ := k.wins.get(wk)
		return KeyVersion(-wk.end, g.gen), nil
	})
}

// rotateWindows gives every window of app that is still open and already has a key a new
// generation, so nothing is sealed under a key that existed before the rotation; windows that
// have no key yet get a fresh one when first needed anyway. It returns the version of the new
// key of the latest window it rotated (0 if none had a key) and how many it rotated.
func (k *Keyring) rotateWindows(ctx context.Context, app string) (int64, int, error) {
	keys, err := k.cfg.Store.List(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("listing keys: %w", err)
	}
	now := k.cfg.Clock()
	newest := map[int64]int{} // window period → newest stored generation
	for _, wk := range keys {
		end, ok := IsWindowVersion(wk.Period)
		if wk.App != app || !ok || !end.After(now) || wk.Period == SecretVersion {
			continue
		}
		p, g := SplitVersion(wk.Period)
		if n, seen := newest[p]; !seen || g > n {
			newest[p] = g
		}
	}
	n := 0
	var last int64
	for p, g := range newest {
		if g == MaxGeneration {
			continue
		}
		v := KeyVersion(p, g+1)
		if _, err := k.load(ctx, app, v, true); err != nil && !isDestroyed(err) {
			return last, n, fmt.Errorf("rotating window key: %w", err)
		}
		if last == 0 || p < PeriodOfVersion(last) { // a later window has a lower (negated) period
			last = v
		}
		n++
	}
	k.wins.reset(app, now)
	return last, n, nil
}

// prefetch makes sure the key of window next exists and is cached, in the background: called when
// a window's key is first loaded, it readies the following window's before any entry needs it.
func (k *Keyring) prefetch(next winKey) {
	if _, busy := k.prefetches.LoadOrStore(next, struct{}{}); busy {
		return
	}
	// Under mu, so that Close (which sets closed under mu, then waits) never misses one.
	k.mu.Lock()
	if k.closed.Load() {
		k.mu.Unlock()
		k.prefetches.Delete(next)
		return
	}
	k.bg.Add(1)
	k.mu.Unlock()
	go func() {
		defer k.bg.Done()
		defer k.prefetches.Delete(next)
		ctx, cancel := context.WithTimeout(k.bgCtx, flightTimeout)
		defer cancel()
		v, err := k.windowVersion(ctx, next)
		if err != nil {
			return
		}
		if _, ok, err := k.cached(next.app, v); ok || err != nil {
			return
		}
		_, _ = k.load(ctx, next.app, v, true)
	}()
}
