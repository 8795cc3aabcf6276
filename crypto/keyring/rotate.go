package keyring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// DefaultRefreshInterval is the default of Config.RefreshInterval.
const DefaultRefreshInterval = 10 * time.Second

// genState is what a Keyring knows about the newest generation of one app's current period.
type genState struct {
	period  int64
	gen     int
	checked time.Time // when the store was last asked for a newer generation
}

// genTable maps a key to the genState of what it names: an app's current period (Keyring.gens,
// keyed by app) or one window of one app (Keyring.wins, keyed by winKey). Its zero value is ready
// to use.
type genTable[K comparable] struct {
	mu sync.Mutex
	m  map[K]genState
}

func (t *genTable[K]) get(key K) (genState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.m[key]
	return g, ok
}

func (t *genTable[K]) set(key K, g genState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[K]genState)
	}
	// Never step back within a period: a slower probe may finish after a Rotate.
	if old, ok := t.m[key]; ok && old.period == g.period && old.gen > g.gen {
		g.gen = old.gen
	}
	t.m[key] = g
}

// stale makes the next sealingVersion of app ask the store again.
func (t *genTable[K]) stale(key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if g, ok := t.m[key]; ok {
		g.checked = time.Time{}
		t.m[key] = g
	}
}

// staleAll is stale for every key.
func (t *genTable[K]) staleAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, g := range t.m {
		g.checked = time.Time{}
		t.m[key] = g
	}
}

func (t *genTable[K]) forget(key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

// forgetIf deletes every key f reports true for.
func (t *genTable[K]) forgetIf(f func(K) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key := range t.m {
		if f(key) {
			delete(t.m, key)
		}
	}
}

func (k *Keyring) refreshInterval() time.Duration {
	if k.cfg.RefreshInterval > 0 {
		return k.cfg.RefreshInterval
	}
	return DefaultRefreshInterval
}

// sealingVersion returns the version new data of app is sealed under: the newest generation of the
// current period that this Keyring knows of. Every RefreshInterval (judged by the injected clock) it
// asks the store whether another process rotated, so processes sharing a store converge on the
// newest key within that interval. Checking costs one store read per app per interval.
func (k *Keyring) sealingVersion(ctx context.Context, app string) (int64, error) {
	now := k.cfg.Clock()
	p := PeriodOf(now)
	if g, ok := k.gens.get(app); ok && g.period == p && !g.checked.IsZero() && !now.Before(g.checked) && now.Sub(g.checked) < k.refreshInterval() {
		return KeyVersion(p, g.gen), nil
	}
	return shared(ctx, k, "g/"+app, func(fctx context.Context) (int64, error) {
		return k.probe(fctx, app, p, now)
	})
}

// probe finds the generation of (app, p) to seal under, starting from the one this Keyring knows:
// the newest stored live generation, or the first free one above the tombstones of an erasure.
// If the known one is gone or erased (the app was erased by another process), every cached key
// of app is dropped.
func (k *Keyring) probe(ctx context.Context, app string, p int64, now time.Time) (int64, error) {
	gen := 0
	if g, ok := k.gens.get(app); ok && g.period == p {
		gen = g.gen
	}
	if _, cached := k.cache.Peek(cacheKey{app, KeyVersion(p, gen)}); cached {
		wk, err := k.cfg.Store.Get(ctx, app, KeyVersion(p, gen))
		switch {
		case errors.Is(err, ErrKeyNotFound), err == nil && wk.Erased:
			k.dropCached(app)
			k.gens.forget(app)
			if err != nil {
				gen = 0
			}
		case err != nil:
			return 0, fmt.Errorf("reading key store: %w", err)
		}
	}
	gen, err := k.newestGen(ctx, app, p, gen)
	if err != nil {
		return 0, err
	}
	k.gens.set(app, genState{period: p, gen: gen, checked: now})
	g, _ := k.gens.get(app)
	return KeyVersion(p, g.gen), nil
}

// newestGen returns, from generation from up, the first generation of (app, p) that is either not
// stored (SealingKey generates it) or live with no stored generation right above it. Tombstones
// are stepped over: an erased version never seals again.
func (k *Keyring) newestGen(ctx context.Context, app string, p int64, from int) (int, error) {
	gen := from
	for gen < MaxGeneration {
		wk, err := k.cfg.Store.Get(ctx, app, KeyVersion(p, gen))
		if errors.Is(err, ErrKeyNotFound) {
			return gen, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading key store: %w", err)
		}
		if !wk.Erased {
			_, err := k.cfg.Store.Get(ctx, app, KeyVersion(p, gen+1))
			if errors.Is(err, ErrKeyNotFound) {
				return gen, nil
			}
			if err != nil {
				return 0, fmt.Errorf("reading key store: %w", err)
			}
		}
		gen++
	}
	return 0, fmt.Errorf("app %s has used every generation of period %d", app, p)
}

// Rotate makes app seal new data under a fresh KEK from now on, besides the 24 h schedule: it
// generates the next generation of the current period and returns its version. Data sealed
// under earlier generations still opens until their DestroyAt (the period's). Other processes
// sharing the key store switch to the new key within their RefreshInterval. Two processes
// rotating the same app at the same moment create one new generation, not two.
func (k *Keyring) Rotate(ctx context.Context, app string) (int64, error) {
	if err := ValidateApp(app); err != nil {
		return 0, err
	}
	if k.closed.Load() {
		return 0, ErrClosed
	}
	if k.cfg.Window > 0 {
		// Nothing is sealed under period keys any more: only the windows move on.
		v, _, err := k.rotateWindows(ctx, app)
		if err != nil {
			return v, err
		}
		if err := k.cfg.Store.NoteChange(ctx); err != nil {
			return v, fmt.Errorf("rotated, announcing it to other processes (they switch within %s anyway): %w", k.pollInterval(), err)
		}
		return v, nil
	}
	now := k.cfg.Clock()
	p := PeriodOf(now)
	gen, err := k.newestGen(ctx, app, p, 0)
	if err != nil {
		return 0, fmt.Errorf("rotating key: %w", err)
	}
	next := gen
	if _, err := k.cfg.Store.Get(ctx, app, KeyVersion(p, gen)); err == nil {
		next = gen + 1 // gen is live: rotate past it
	} else if !errors.Is(err, ErrKeyNotFound) {
		return 0, fmt.Errorf("reading key store: %w", err)
	}
	if next > MaxGeneration {
		return 0, fmt.Errorf("rotating key: app %s has used every generation of period %d", app, p)
	}
	v := KeyVersion(p, next)
	if _, err := k.load(ctx, app, v, true); err != nil {
		return 0, fmt.Errorf("rotating key: %w", err)
	}
	k.gens.set(app, genState{period: p, gen: next, checked: now})
	if err := k.cfg.Store.NoteChange(ctx); err != nil {
		return v, fmt.Errorf("rotated, announcing it to other processes (they switch within %s anyway): %w", k.refreshInterval(), err)
	}
	return v, nil
}

// KeyState is the lifecycle state of a stored key.
type KeyState string

const (
	// StateActive is the key new data of its app is sealed under.
	StateActive KeyState = "active"
	// StateRetired is a key that no longer seals but still opens data until its DestroyAt.
	StateRetired KeyState = "retired-still-opening"
	// StateDestroyPending is a key past its DestroyAt that DestroyExpired has not deleted yet. It
	// opens nothing already.
	StateDestroyPending KeyState = "destroyed-pending"
	// StateErased is the tombstone of a key EraseApp destroyed, kept until DestroyAt so that its
	// version is never reused. It opens nothing.
	StateErased KeyState = "erased"
)

// KeyInfo describes one stored key. It holds no key material.
type KeyInfo struct {
	App         string
	Version     int64 // what records sealed under the key carry as Period
	Period      int64
	Generation  int
	PeriodStart time.Time // zero for a window key
	WindowEnd   time.Time // the end of a window key's window; zero for a period key
	KMSKeyID    string    // the KMS key that wraps it
	DestroyAt   time.Time
	State       KeyState
}

// Keys lists every stored key, sorted by app and version, with its state at the Keyring's clock.
// A key is active when it is the newest stored generation of its app's current period.
func (k *Keyring) Keys(ctx context.Context) ([]KeyInfo, error) {
	stored, err := k.cfg.Store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	now := k.cfg.Clock()
	cur := PeriodOf(now)
	newest := make(map[string]int)      // app → newest generation of the current period
	newestWin := make(map[cacheKey]int) // (app, window period) → newest generation
	for _, wk := range stored {
		if p, g := SplitVersion(wk.Period); p == cur && !wk.Erased {
			if n, ok := newest[wk.App]; !ok || g > n {
				newest[wk.App] = g
			}
		}
		if _, ok := IsWindowVersion(wk.Period); ok && !wk.Erased && wk.Period != SecretVersion {
			p, g := SplitVersion(wk.Period)
			if n, ok := newestWin[cacheKey{wk.App, p}]; !ok || g > n {
				newestWin[cacheKey{wk.App, p}] = g
			}
		}
	}
	out := make([]KeyInfo, 0, len(stored))
	for _, wk := range stored {
		if wk.Period == SecretVersion || wk.Pending() {
			continue
		}
		p, g := SplitVersion(wk.Period)
		ki := KeyInfo{
			App: wk.App, Version: wk.Period, Period: p, Generation: g, PeriodStart: PeriodStart(p),
			KMSKeyID: wk.KeyID, DestroyAt: wk.DestroyAt.UTC(), State: StateRetired,
		}
		end, window := IsWindowVersion(wk.Period)
		if window {
			ki.PeriodStart, ki.WindowEnd = time.Time{}, end
		}
		switch n, ok := newest[wk.App]; {
		case wk.Erased:
			ki.State = StateErased
		case !now.Before(wk.DestroyAt):
			ki.State = StateDestroyPending
		case !window && ok && p == cur && g == n:
			ki.State = StateActive
		case window && end.After(now) && g == newestWin[cacheKey{wk.App, p}]:
			ki.State = StateActive
		}
		out = append(out, ki)
	}
	slices.SortFunc(out, func(a, b KeyInfo) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Period, b.Period), cmp.Compare(a.Generation, b.Generation))
	})
	return out, nil
}

// Apps returns the ids of the apps that have at least one stored live key, sorted.
func (k *Keyring) Apps(ctx context.Context) ([]string, error) {
	stored, err := k.cfg.Store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	var apps []string
	for _, wk := range stored {
		if !wk.Erased && !wk.Pending() && wk.Period != SecretVersion {
			apps = append(apps, wk.App)
		}
	}
	slices.Sort(apps)
	return slices.Compact(apps), nil
}
