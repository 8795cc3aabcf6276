// Package badgerstore is the embedded encrypted store: a store.Store on a Badger database in a
// local directory, the default when no shared store is configured.
//
// Every item carries its expiry as Badger's native TTL (ExpiresAt), so compaction removes it
// physically, and Get checks the expiry against the store's clock too, so an item is dead from its
// expiry second whatever compaction has done. Keys are "r/" + app + 0x00 + ref: the items of one
// app form one key range, which DeleteApp walks. A background goroutine reclaims value-log space;
// Close stops it and waits for it.
//
// Only what callers put is written to disk, and callers put sealed records: ciphertext and
// wrapped keys, never plaintext.
package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/veil-project/veil/sinks/store"
)

// ErrClosed is returned by every operation on a closed Store.
var ErrClosed = errors.New("badgerstore: store closed")

const (
	keyPrefix = "r/"
	// deleteBatch bounds how many keys DeleteApp removes per transaction.
	deleteBatch = 256
	// gcDiscardRatio is Badger's recommended share of garbage before a value-log file is rewritten.
	gcDiscardRatio = 0.5
)

// Option configures Open.
type Option func(*config)

type config struct {
	clock      func() time.Time
	logger     *slog.Logger
	gcInterval time.Duration
	syncWrites bool
}

// WithClock sets the clock that Get and Put compare expiries against. The default is time.Now.
// Badger's native TTL always runs on the real clock.
func WithClock(clock func() time.Time) Option {
	return func(c *config) { c.clock = clock }
}

// WithLogger routes Badger's warnings and errors to l. By default Badger logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithGCInterval sets how often value-log garbage collection runs; zero or less disables it. The
// default is 5 minutes.
func WithGCInterval(d time.Duration) Option {
	return func(c *config) { c.gcInterval = d }
}

// WithSyncWrites makes every write wait for fsync. By default writes reach the operating system
// before Put returns, which survives a crash of the process but not of the machine.
func WithSyncWrites(sync bool) Option {
	return func(c *config) { c.syncWrites = sync }
}

// Store is a store.Store on Badger. It is safe for concurrent use.
type Store struct {
	db    *badger.DB
	clock func() time.Time

	mu     sync.RWMutex // held for reading by operations, for writing by Close
	closed bool

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	gcDone    chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := config{clock: time.Now, gcInterval: 5 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	if dir == "" {
		return nil, errors.New("opening badger store: empty directory")
	}
	bopts := badger.DefaultOptions(dir).
		WithSyncWrites(cfg.syncWrites).
		WithLogger(nil).
		// Memory: Badger's defaults (five 64 MiB memtables, a 256 MiB block cache, 1 GiB value-log
		// files mapped into memory) would dominate veil's footprint. Sealed records are written
		// once and read rarely, so small memtables and caches cost little, and the heap Badger
		// needs stays bounded whatever the backlog. (Its tables and value log are memory-mapped:
		// their pages are page cache the kernel reclaims, see docs/performance.md.)
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		// Sealed records (hundreds of bytes to a few KiB) go to the value log, so compactions move
		// small pointers rather than the ciphertext.
		WithValueThreshold(256).
		// Values are ciphertext and keys are random refs: compressing them only costs CPU.
		WithCompression(options.None)
	if cfg.logger != nil {
		bopts = bopts.WithLogger(slogLogger{cfg.logger.With("component", "badger")}).
			WithLoggingLevel(badger.WARNING)
	}
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("opening badger store: %w", err)
	}
	s := &Store{
		db:     db,
		clock:  cfg.clock,
		stop:   make(chan struct{}),
		gcDone: make(chan struct{}),
	}
	go s.runGC(cfg.gcInterval, cfg.logger)
	return s, nil
}

// Put writes the live items of items whose ref holds no record yet; see store.Store. It validates
// every app id before writing anything. Each transaction reads every key it writes, so of two
// writers racing for a ref Badger commits one and fails the other with a conflict, which then
// runs again and finds the winner's record. Items are written in several transactions when they
// do not fit in one: on error some may have been written, and a retry of the same items is
// harmless.
func (s *Store) Put(ctx context.Context, items []store.Item) error {
	if err := store.ValidateItems(items); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("putting items: %w", ErrClosed)
	}
	write, exists := store.Distinct(items, s.clock())
	for conflicts := 0; len(write) > 0; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("putting items: %w", err)
		}
		n, ex, err := s.putTxn(items, write)
		if errors.Is(err, badger.ErrConflict) && conflicts < maxConflicts {
			conflicts++ // another writer committed one of these keys: read them again
			continue
		}
		if err != nil {
			return fmt.Errorf("putting items: %w", err)
		}
		exists = append(exists, ex...)
		write = write[n:]
	}
	return store.ExistsResult(exists)
}

// maxConflicts bounds how often one Put runs a transaction again after a conflict; each conflict
// means another writer committed meanwhile, so the next run finds more keys written.
const maxConflicts = 100

// putTxn writes, in one transaction, a prefix of the items idx names that fits in one: each only
// if its key is absent. It returns how many of idx it handled and which of those already held
// another record.
func (s *Store) putTxn(items []store.Item, idx []int) (int, []int, error) {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	var exists []int
	n := 0
	for ; n < len(idx); n++ {
		it := items[idx[n]]
		k := key(it.App, it.Ref)
		bi, err := txn.Get(k)
		if err == nil {
			same := false
			if err := bi.Value(func(v []byte) error { same = bytes.Equal(v, it.Value); return nil }); err != nil {
				return 0, nil, err
			}
			if !same {
				exists = append(exists, idx[n])
			}
			continue
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return 0, nil, err
		}
		e := badger.NewEntry(k, it.Value)
		e.ExpiresAt = uint64(it.Expiry.Unix())
		if err := txn.SetEntry(e); err != nil {
			if errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
				break // commit what fits; the caller goes on with the rest
			}
			return 0, nil, err
		}
	}
	if err := txn.Commit(); err != nil {
		return 0, nil, err
	}
	return n, exists, nil
}

// Get returns the live item for (app, ref), or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	if err := store.ValidateApp(app); err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Item{}, fmt.Errorf("getting item: %w", ErrClosed)
	}
	it := store.Item{App: app, Ref: ref}
	err := s.db.View(func(txn *badger.Txn) error {
		bi, err := txn.Get(key(app, ref))
		if err != nil {
			return err
		}
		exp := bi.ExpiresAt()
		if exp == 0 {
			// Every item is written with an expiry; one without cannot be trusted to die.
			return badger.ErrKeyNotFound
		}
		it.Expiry = time.Unix(int64(exp), 0)
		if store.Expired(it.Expiry, s.clock()) {
			return badger.ErrKeyNotFound
		}
		it.Value, err = bi.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return store.Item{}, store.ErrNotFound
	}
	if err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	return it, nil
}

// Delete removes the item for (app, ref), if any.
func (s *Store) Delete(ctx context.Context, app string, ref [16]byte) error {
	if err := store.ValidateApp(app); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("deleting item: %w", ErrClosed)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key(app, ref)) }); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	return nil
}

// DeleteApp removes every item of app, deleteBatch keys per transaction, and reports how many
// live items it removed. Cancelling ctx stops it between batches; the count then says how many
// were removed before.
func (s *Store) DeleteApp(ctx context.Context, app string) (int, error) {
	if err := store.ValidateApp(app); err != nil {
		return 0, fmt.Errorf("deleting app: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("deleting app: %w", ErrClosed)
	}
	prefix := appPrefix(app)
	seek := prefix
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("deleting app: %w", err)
		}
		keys := make([][]byte, 0, deleteBatch)
		err := s.db.View(func(txn *badger.Txn) error {
			iter := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer iter.Close()
			for iter.Seek(seek); iter.ValidForPrefix(prefix) && len(keys) < deleteBatch; iter.Next() {
				keys = append(keys, iter.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("deleting app: %w", err)
		}
		if len(keys) == 0 {
			return total, nil
		}
		err = s.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("deleting app: %w", err)
		}
		total += len(keys)
		// Resume just past the last key removed: the smallest key greater than it.
		seek = append(keys[len(keys)-1], 0)
	}
}

// Close stops value-log garbage collection, waiting for a round in progress, and closes the
// database. It waits for operations in flight. It is idempotent: later calls return the first
// call's result. ctx is not consulted: stopping half-way would leave the database open.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.gcDone
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing badger store: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) runGC(every time.Duration, logger *slog.Logger) {
	defer close(s.gcDone)
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		// Rewrite files while there is enough garbage, but give way to Close between files.
		for {
			err := s.db.RunValueLogGC(gcDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) && logger != nil {
					logger.Warn("badger value-log gc failed", "err", err)
				}
				break
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}
}

func appPrefix(app string) []byte {
	b := make([]byte, 0, len(keyPrefix)+len(app)+1)
	b = append(b, keyPrefix...)
	b = append(b, app...)
	return append(b, 0)
}

func key(app string, ref [16]byte) []byte {
	b := make([]byte, 0, len(keyPrefix)+len(app)+1+len(ref))
	b = append(b, keyPrefix...)
	b = append(b, app...)
	b = append(b, 0)
	return append(b, ref[:]...)
}

// slogLogger adapts slog to Badger's logger. Badger is asked for warnings and errors only.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Errorf(f string, v ...any) { l.l.Error(msg(f, v)) }

func (l slogLogger) Warningf(f string, v ...any) { l.l.Warn(msg(f, v)) }

func (l slogLogger) Infof(f string, v ...any) { l.l.Debug(msg(f, v)) }

func (l slogLogger) Debugf(f string, v ...any) { l.l.Debug(msg(f, v)) }

func msg(f string, v []any) string { return strings.TrimSpace(fmt.Sprintf(f, v...)) }
