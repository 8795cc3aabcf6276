package keyring

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is the default of Config.PollInterval.
const DefaultPollInterval = 2 * time.Second

// ErrSealingRefused is returned by SealingKey while sealing is refused (see RefuseSealing). It is
// transient: callers retry with backoff and seal once it is lifted.
var ErrSealingRefused = errors.New("keyring: sealing refused")

// changeState is what a Keyring knows of the store's change counter. The fast path (a fresh
// counter, sealing allowed) takes no lock.
type changeState struct {
	mu      sync.Mutex
	seen    int64
	checked atomic.Int64           // UnixNano of the last read, by Clock; 0: never read
	refused atomic.Pointer[string] // why sealing is refused; nil when it is not
}

func (k *Keyring) pollInterval() time.Duration {
	if k.cfg.PollInterval > 0 {
		return k.cfg.PollInterval
	}
	return DefaultPollInterval
}

// sync reads the store's change counter if it was last read PollInterval ago or more, and when it
// moved, checks every cached key against the store (dropping erased ones) and makes every app's
// sealing generation be asked again. Concurrent callers share one read. It fails, closed, when
// the counter cannot be read: a key that may have been erased elsewhere is not handed out.
func (k *Keyring) sync(ctx context.Context) error {
	now := k.cfg.Clock()
	if c := k.changes.checked.Load(); c != 0 {
		if d := now.UnixNano() - c; d >= 0 && d < int64(k.pollInterval()) {
			return nil
		}
	}
	_, err := shared(ctx, k, "c", func(fctx context.Context) (struct{}, error) {
		return struct{}{}, k.pollChanges(fctx, now)
	})
	return err
}

func (k *Keyring) pollChanges(ctx context.Context, now time.Time) error {
	n, err := k.cfg.Store.Changes(ctx)
	if err != nil {
		return fmt.Errorf("reading key store change counter: %w", err)
	}
	k.changes.mu.Lock()
	defer k.changes.mu.Unlock()
	if k.changes.checked.Load() == 0 || n != k.changes.seen {
		if err := k.revalidate(ctx); err != nil {
			return err
		}
	}
	k.changes.seen = n
	k.changes.checked.Store(max(now.UnixNano(), 1))
	return nil
}

// revalidate drops every cached key that the store no longer holds live, and makes every app's
// sealing generation be asked again.
func (k *Keyring) revalidate(ctx context.Context) error {
	k.gens.staleAll()
	k.wins.reset("", k.cfg.Clock())
	for _, ck := range k.cache.Keys() {
		wk, err := k.cfg.Store.Get(ctx, ck.app, ck.period)
		switch {
		case errors.Is(err, ErrKeyNotFound), err == nil && wk.Erased:
			k.cache.Remove(ck)
		case err != nil:
			return fmt.Errorf("reading key store: %w", err)
		}
	}
	return nil
}

// RefuseSealing makes SealingKey fail with ErrSealingRefused, naming reason, until AllowSealing;
// opening is not affected. A process calls it when sealing would write data other processes of
// its deployment cannot open (see docs/deploy.md).
func (k *Keyring) RefuseSealing(reason string) {
	if reason == "" {
		k.changes.refused.Store(nil)
		return
	}
	k.changes.refused.Store(&reason)
}

// AllowSealing lifts RefuseSealing.
func (k *Keyring) AllowSealing() { k.RefuseSealing("") }

func (k *Keyring) sealingAllowed() error {
	if r := k.changes.refused.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrSealingRefused, *r)
	}
	return nil
}
