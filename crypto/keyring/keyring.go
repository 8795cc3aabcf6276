package keyring

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/veil-project/veil/crypto/envelope"
)

// ErrKeyDestroyed is returned by OpeningKey when the key of (app, period) is past its DestroyAt,
// was erased, or never existed: data sealed under it can no longer be opened.
var ErrKeyDestroyed = errors.New("keyring: key destroyed")

// ErrClosed is returned by calls on a closed Keyring.
var ErrClosed = errors.New("keyring: closed")

// SkewMargin is added to every key's lifetime so that clock skew between processes never destroys
// a key while data sealed under it is still readable.
const SkewMargin = 5 * time.Minute

// KEKSize is the size of an app KEK in bytes (AES-256).
const KEKSize = 32

// Defaults for the zero values of Config.
const (
	DefaultMaxTTL    = 24 * time.Hour
	DefaultCacheSize = 4096
	DefaultCacheTTL  = time.Hour
)

// flightTimeout bounds one shared KMS round (store read, KMS call, store write). It is detached
// from any single caller's context, so one caller giving up does not fail the others.
const flightTimeout = 30 * time.Second

// startFlight begins one shared round (a singleflight function, which runs in a goroutine of its
// own): its context keeps ctx's values but not its cancellation (see flightTimeout), and Close
// cancels it and waits for done. It returns ErrClosed once Close has begun.
func (k *Keyring) startFlight(ctx context.Context) (fctx context.Context, done func(), err error) {
	// Under mu, so that Close (which sets closed under mu, then waits) never misses one.
	k.mu.Lock()
	if k.closed.Load() {
		k.mu.Unlock()
		return nil, nil, ErrClosed
	}
	k.bg.Add(1)
	k.mu.Unlock()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightTimeout)
	stop := context.AfterFunc(k.bgCtx, cancel)
	return fctx, func() { stop(); cancel(); k.bg.Done() }, nil
}

// shared runs f once for all concurrent callers that name the same round (singleflight), in a
// round of its own (startFlight: detached from ctx, bounded by flightTimeout, cancelled by Close),
// and waits for its result. Cancelling ctx returns ctx.Err() at once; the round goes on for the
// other callers.
func shared[T any](ctx context.Context, k *Keyring, name string, f func(ctx context.Context) (T, error)) (T, error) {
	ch := k.flights.DoChan(name, func() (any, error) {
		fctx, done, err := k.startFlight(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		v, err := f(fctx)
		return v, err
	})
	var zero T
	select {
	case <-ctx.Done():
		return zero, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Err
		}
		return r.Val.(T), nil
	}
}

// KMS operation names passed to Config.OnKMSCall.
const (
	OpGenerateDataKey = "GenerateDataKey"
	OpDecrypt         = "Decrypt"
)

// Config configures a Keyring. KMS, KeyID and Store are required; the zero value of every other
// field is its documented default.
type Config struct {
	KMS   KMS      // wraps and unwraps app KEKs
	KeyID string   // the KMS key that wraps new app KEKs
	Store KeyStore // where wrapped app KEKs live

	Clock     func() time.Time // current time, for periods and destruction; default time.Now
	MaxTTL    time.Duration    // longest TTL of data sealed under an app KEK; default 24h
	CacheSize int              // most unwrapped keys held in memory; default 4096
	CacheTTL  time.Duration    // how long an unwrapped key stays cached; default 1h
	OnKMSCall func(op string)  // called before every KMS call with OpGenerateDataKey or OpDecrypt; optional

	// RefreshInterval is how often, by Clock, SealingKey asks the store whether another process
	// rotated an app's key (see Rotate), besides the change counter; default
	// DefaultRefreshInterval.
	RefreshInterval time.Duration
	// Window, when set, seals each entry under the key of its expiry window (see window.go):
	// windows of this length (whole minutes, at least MinWindow), each key destroyed WindowGrace
	// after its window closes. Zero keeps one key per app per 24 h period.
	Window time.Duration
	// Prefetch, with Window set, generates the key of the next window in the background as soon
	// as a window is first used, so sealing does not wait on the KMS when a window opens.
	Prefetch bool
	// PollInterval is how often, by Clock, the Keyring reads the store's change counter (see
	// KeyStore.Changes) before handing out a key; default DefaultPollInterval. It bounds how long
	// a rotation or an erasure done by another process goes unnoticed here.
	PollInterval time.Duration
}

// Stats counts cache and KMS activity since New.
type Stats struct {
	CacheHits       uint64
	CacheMisses     uint64
	Evictions       uint64 // unwrapped keys dropped (and zeroed) from the cache
	GenerateDataKey uint64 // KMS GenerateDataKey calls
	Decrypt         uint64 // KMS Decrypt calls
}

type cacheKey struct {
	app    string
	period int64
}

// entry is one unwrapped app KEK.
type entry struct {
	key       *envelope.AppKey
	raw       *secret
	destroyAt time.Time
}

// Keyring hands out app KEKs; it implements envelope.Keys. It is safe for concurrent use.
//
// The expirable cache runs one cleanup goroutine per Keyring that golang-lru/v2 offers no way to
// stop; Close empties the cache but that goroutine stays (a ticker that holds no key: the only
// goroutine of a Keyring that Close does not wait for).
type Keyring struct {
	cfg     Config
	cache   *expirable.LRU[cacheKey, *entry]
	flights singleflight.Group
	gens    genTable[string] // newest known generation per app (rotate.go)
	wins    winTable         // generation per expiry window (window.go)

	// Background prefetches of window keys and shared KMS rounds (startFlight): cancelled and
	// waited for by Close.
	bg         sync.WaitGroup
	bgCtx      context.Context
	bgCancel   context.CancelFunc
	prefetches sync.Map // winKey → struct{}: prefetches in flight
	changes    changeState

	mu     sync.Mutex // makes check-then-add on the cache atomic, and orders it with Close
	closed atomic.Bool

	hits, misses, evictions, generates, decrypts atomic.Uint64
}

var _ envelope.Keys = (*Keyring)(nil)

// New returns a Keyring.
func New(cfg Config) (*Keyring, error) {
	switch {
	case cfg.KMS == nil:
		return nil, errors.New("creating keyring: no KMS")
	case cfg.KeyID == "":
		return nil, errors.New("creating keyring: no KMS key id")
	case cfg.Store == nil:
		return nil, errors.New("creating keyring: no key store")
	case cfg.MaxTTL < 0, cfg.CacheSize < 0, cfg.CacheTTL < 0:
		return nil, errors.New("creating keyring: negative MaxTTL, CacheSize or CacheTTL")
	case cfg.Window != 0 && (cfg.Window < MinWindow || cfg.Window%time.Minute != 0):
		return nil, errors.New("creating keyring: Window must be whole minutes, at least one")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	k := &Keyring{cfg: cfg}
	k.bgCtx, k.bgCancel = context.WithCancel(context.Background())
	k.cache = expirable.NewLRU(cfg.CacheSize, func(_ cacheKey, e *entry) {
		e.raw.zero()
		k.evictions.Add(1)
	}, cfg.CacheTTL)
	return k, nil
}

// DestroyAt returns when the key of version v (see KeyVersion; for generation 0 the period index)
// is destroyed: the end of its period plus the longest TTL plus SkewMargin.
func (k *Keyring) DestroyAt(v int64) time.Time {
	if end, ok := IsWindowVersion(v); ok {
		return end.Add(WindowGrace)
	}
	return PeriodEnd(PeriodOfVersion(v)).Add(k.cfg.MaxTTL + SkewMargin)
}

// beginSealing is what every sealing call checks first: a valid app, an open Keyring, the key
// store's changes seen (sync), and sealing not refused.
func (k *Keyring) beginSealing(ctx context.Context, app string) error {
	if err := ValidateApp(app); err != nil {
		return err
	}
	if k.closed.Load() {
		return ErrClosed
	}
	if err := k.sync(ctx); err != nil {
		return err
	}
	return k.sealingAllowed()
}

func isDestroyed(err error) bool { return errors.Is(err, ErrKeyDestroyed) }

// SealingKey returns the key of app for the current period (its newest generation, see Rotate),
// unwrapping it from the store or, if there is none yet, generating it through the KMS. Concurrent
// callers share one KMS call. Cancelling ctx returns early; the shared KMS call goes on for the
// other callers.
func (k *Keyring) SealingKey(ctx context.Context, app string) (*envelope.AppKey, error) {
	if err := k.beginSealing(ctx, app); err != nil {
		return nil, err
	}
	for range 2 {
		p, err := k.sealingVersion(ctx, app)
		if err != nil {
			return nil, err
		}
		key, ok, err := k.cached(app, p)
		if !ok && err == nil {
			key, err = k.load(ctx, app, p, true)
		}
		if !errors.Is(err, ErrKeyDestroyed) {
			return key, err
		}
		// Erased elsewhere since this Keyring last looked: find the next live generation.
		k.gens.stale(app)
	}
	return nil, fmt.Errorf("%w: app %s has no live sealing key", ErrKeyDestroyed, app)
}

// OpeningKey returns the key of (app, period) for opening data; period is the key version a
// record carries (see KeyVersion). It never generates a key: a key
// that is missing, erased or past its DestroyAt gives ErrKeyDestroyed.
func (k *Keyring) OpeningKey(ctx context.Context, app string, period int64) (*envelope.AppKey, error) {
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	if err := k.sync(ctx); err != nil {
		return nil, err
	}
	if key, ok, err := k.cached(app, period); ok || err != nil {
		return key, err
	}
	return k.load(ctx, app, period, false)
}

// cached looks (app, p) up in the cache, dropping it if it is past its DestroyAt.
func (k *Keyring) cached(app string, p int64) (*envelope.AppKey, bool, error) {
	if k.closed.Load() {
		return nil, false, ErrClosed
	}
	ck := cacheKey{app, p}
	e, ok := k.cache.Get(ck)
	if !ok {
		k.misses.Add(1)
		return nil, false, nil
	}
	k.hits.Add(1)
	if !k.cfg.Clock().Before(e.destroyAt) {
		k.cache.Remove(ck)
		return nil, false, destroyed(app, p)
	}
	return e.key, true, nil
}

func destroyed(app string, p int64) error {
	return fmt.Errorf("%w: app %s period %d", ErrKeyDestroyed, app, p)
}

// load fetches (app, p) once for all concurrent callers.
func (k *Keyring) load(ctx context.Context, app string, p int64, generate bool) (*envelope.AppKey, error) {
	name := "o/"
	if generate {
		name = "s/"
	}
	name += strconv.FormatInt(p, 10) + "/" + app
	return shared(ctx, k, name, func(fctx context.Context) (*envelope.AppKey, error) {
		return k.fetch(fctx, app, p, generate)
	})
}

func (k *Keyring) fetch(ctx context.Context, app string, p int64, generate bool) (*envelope.AppKey, error) {
	ck := cacheKey{app, p}
	// A flight that finished just before this one started may have filled the cache.
	if e, ok := k.cache.Peek(ck); ok {
		if !k.cfg.Clock().Before(e.destroyAt) {
			return nil, destroyed(app, p)
		}
		return e.key, nil
	}
	wk, err := k.cfg.Store.Get(ctx, app, p)
	if errors.Is(err, ErrKeyNotFound) {
		if !generate {
			return nil, destroyed(app, p)
		}
		return k.generate(ctx, app, p)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key store: %w", err)
	}
	if wk.Pending() {
		// Being generated by another process: nothing was sealed under it yet.
		if !generate {
			return nil, destroyed(app, p)
		}
		return k.generate(ctx, app, p)
	}
	if wk.Erased || !k.cfg.Clock().Before(wk.DestroyAt) {
		return nil, destroyed(app, p)
	}
	return k.unwrap(ctx, wk)
}

func (k *Keyring) generate(ctx context.Context, app string, p int64) (*envelope.AppKey, error) {
	raw, stored, err := k.obtain(ctx, app, p, k.DestroyAt(p))
	switch {
	case err != nil:
		return nil, err
	case stored.Erased:
		// Erased by another process: this version never seals again.
		if raw != nil {
			raw.zero()
		}
		return nil, destroyed(app, p)
	case raw == nil:
		// Another process stored its key first: everyone must seal under that one.
		return k.unwrap(ctx, stored)
	}
	return k.add(app, p, raw, stored.DestroyAt)
}

func (k *Keyring) unwrap(ctx context.Context, wk WrappedKey) (*envelope.AppKey, error) {
	k.decrypts.Add(1)
	if k.cfg.OnKMSCall != nil {
		k.cfg.OnKMSCall(OpDecrypt)
	}
	in := &kms.DecryptInput{
		CiphertextBlob:    wk.Ciphertext,
		EncryptionContext: EncryptionContext(wk.App, wk.Period),
	}
	if wk.KeyID != "" {
		in.KeyId = aws.String(wk.KeyID)
	}
	out, err := k.cfg.KMS.Decrypt(ctx, in)
	if err != nil {
		return nil, &KMSError{Op: OpDecrypt, Err: err}
	}
	raw := &secret{b: out.Plaintext}
	if len(out.Plaintext) != KEKSize {
		raw.zero()
		return nil, &KMSError{Op: OpDecrypt, Err: fmt.Errorf("unexpected data key of %d bytes", len(out.Plaintext))}
	}
	return k.add(wk.App, wk.Period, raw, wk.DestroyAt)
}

// add caches a freshly unwrapped key, or returns the one a concurrent flight cached first.
func (k *Keyring) add(app string, p int64, raw *secret, destroyAt time.Time) (*envelope.AppKey, error) {
	key, err := envelope.NewAppKey(app, p, raw.b)
	if err != nil {
		raw.zero()
		return nil, err
	}
	e := &entry{key: key, raw: raw, destroyAt: destroyAt}
	ck := cacheKey{app, p}

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Load() {
		raw.zero()
		return nil, ErrClosed
	}
	if old, ok := k.cache.Peek(ck); ok {
		raw.zero()
		return old.key, nil
	}
	// An expired entry may still sit in the cache; Add would replace it without the eviction
	// callback, leaving its bytes unzeroed.
	k.cache.Remove(ck)
	k.cache.Add(ck, e)
	return e.key, nil
}

// DestroyExpired deletes from the store and the cache every key past its DestroyAt and returns how
// many stored keys it deleted.
func (k *Keyring) DestroyExpired(ctx context.Context) (int, error) {
	now := k.cfg.Clock()
	for _, ck := range k.cache.Keys() {
		if e, ok := k.cache.Peek(ck); ok && !now.Before(e.destroyAt) {
			k.cache.Remove(ck)
		}
	}
	keys, err := k.cfg.Store.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing keys: %w", err)
	}
	n := 0
	for _, wk := range keys {
		if now.Before(wk.DestroyAt) {
			continue
		}
		k.cache.Remove(cacheKey{wk.App, wk.Period})
		if err := k.cfg.Store.Delete(ctx, wk.App, wk.Period); err != nil {
			return n, fmt.Errorf("deleting key: %w", err)
		}
		n++
	}
	if err := removeLeftovers(ctx, k.cfg.Store, ""); err != nil {
		return n, err
	}
	return n, nil
}

// EraseApp destroys every key of app in the store and the cache, making all its data unreadable at
// once, and returns how many stored keys it destroyed. Each key is replaced in the store by a
// tombstone kept until the key's DestroyAt, so that no process creates another key under a
// destroyed version (records sealed under it keep answering ErrKeyDestroyed, never opening under
// a newer key), and the store's change counter is increased: every Keyring sharing the store drops
// its cached copies within its PollInterval. A SealingKey call after EraseApp generates a fresh
// key under a new version: callers that must not seal for app any more stop sending it first.
func (k *Keyring) EraseApp(ctx context.Context, app string) (int, error) {
	if err := ValidateApp(app); err != nil {
		return 0, err
	}
	k.dropCached(app)
	k.gens.forget(app)
	keys, err := k.cfg.Store.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing keys: %w", err)
	}
	n := 0
	for _, wk := range keys {
		if wk.App != app || wk.Erased || wk.Period == SecretVersion {
			continue
		}
		if err := k.cfg.Store.Tombstone(ctx, wk.App, wk.Period, wk.DestroyAt); err != nil {
			return n, fmt.Errorf("destroying key: %w", err)
		}
		n++
	}
	if err := k.cfg.Store.NoteChange(ctx); err != nil {
		return n, fmt.Errorf("keys destroyed, announcing it to other processes: %w", err)
	}
	// A flight that was unwrapping one of these keys may have cached it meanwhile.
	k.dropCached(app)
	k.gens.forget(app)
	k.wins.reset(app, k.cfg.Clock())
	if err := removeLeftovers(ctx, k.cfg.Store, app); err != nil {
		return n, err
	}
	return n, nil
}

func (k *Keyring) dropCached(app string) {
	for _, ck := range k.cache.Keys() {
		if ck.app == app {
			k.cache.Remove(ck)
		}
	}
}

// Stats returns cache and KMS counters.
func (k *Keyring) Stats() Stats {
	return Stats{
		CacheHits:       k.hits.Load(),
		CacheMisses:     k.misses.Load(),
		Evictions:       k.evictions.Load(),
		GenerateDataKey: k.generates.Load(),
		Decrypt:         k.decrypts.Load(),
	}
}

// Close stops background prefetches and shared KMS rounds in flight and waits for them, then drops and zeroes every cached key;
// later calls return ErrClosed. It is idempotent: a second call returns nil. ctx is not
// consulted: cancelled prefetches return promptly, and the keys must be zeroed whatever ctx says.
func (k *Keyring) Close(context.Context) error {
	k.mu.Lock()
	if k.closed.Swap(true) {
		k.mu.Unlock()
		return nil
	}
	k.mu.Unlock()
	k.bgCancel()
	k.bg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cache.Purge()
	return nil
}
