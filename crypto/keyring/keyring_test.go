package keyring_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
)

var ctx = context.Background()

func header(app string, now time.Time) envelope.Header {
	var ref envelope.RefID
	rand.Read(ref[:])
	return envelope.Header{App: app, Ledger: "event", Ref: ref, Expiry: now.Add(24 * time.Hour)}
}

// seal seals one field with the sealing key of app and returns the record and its token.
func seal(t *testing.T, k *keyring.Keyring, app string, now time.Time, value string) (*envelope.Record, envelope.Token) {
	t.Helper()
	key, err := k.SealingKey(ctx, app)
	if err != nil {
		t.Fatalf("SealingKey(%s) = %v", app, err)
	}
	rec, toks, err := envelope.SealWith(key, rand.Reader, header(app, now), []envelope.Field{{Path: "data.text", Value: []byte(value)}})
	if err != nil {
		t.Fatalf("SealWith = %v", err)
	}
	return rec, toks[0]
}

// open opens a record with the opening key k gives for its app and period.
func open(k *keyring.Keyring, rec *envelope.Record, tok envelope.Token, now time.Time) (string, error) {
	key, err := k.OpeningKey(ctx, rec.App, rec.Period)
	if err != nil {
		return "", err
	}
	pt, err := envelope.OpenWith(key, rec, tok, now)
	return string(pt), err
}

func TestRotation(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()

	k0, err := k.SealingKey(ctx, "app-1")
	if err != nil {
		t.Fatalf("SealingKey = %v", err)
	}
	if k0.App != "app-1" || k0.Period != p0 {
		t.Fatalf("SealingKey = %v, want app-1 period %d", k0, p0)
	}
	rec0, tok0 := seal(t, k, "app-1", e.clock.Now(), `"day 0"`)

	e.clock.Advance(keyring.PeriodLength)
	k1, err := k.SealingKey(ctx, "app-1")
	if err != nil {
		t.Fatalf("SealingKey next day = %v", err)
	}
	if k1.Period != p0+1 {
		t.Errorf("SealingKey next day period = %d, want %d", k1.Period, p0+1)
	}
	rec1, tok1 := seal(t, k, "app-1", e.clock.Now(), `"day 1"`)
	if _, err := envelope.OpenWith(k0, rec1, tok1, e.clock.Now()); err == nil {
		t.Errorf("the day-0 key opened a day-1 record: keys did not rotate")
	}
	if got := e.kms.generates.Load(); got != 2 {
		t.Errorf("GenerateDataKey calls = %d, want 2 (one per period)", got)
	}

	// The day-0 key still opens until its DestroyAt, from the cache or from the store.
	fresh := e.keyring()
	destroyAt := keyring.PeriodEnd(p0).Add(keyring.DefaultMaxTTL + keyring.SkewMargin)
	if got := k.DestroyAt(p0); !got.Equal(destroyAt) {
		t.Errorf("DestroyAt(%d) = %v, want %v", p0, got, destroyAt)
	}
	e.clock.Set(destroyAt.Add(-time.Second))
	for _, kr := range []*keyring.Keyring{k, fresh} {
		if got, err := open(kr, rec0, tok0, t0); err != nil || got != `"day 0"` {
			t.Errorf("open day-0 record 1 s before DestroyAt = %q, %v, want \"day 0\"", got, err)
		}
	}
	e.clock.Set(destroyAt)
	for _, kr := range []*keyring.Keyring{k, fresh, e.keyring()} {
		if _, err := kr.OpeningKey(ctx, "app-1", p0); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("OpeningKey at DestroyAt = %v, want ErrKeyDestroyed", err)
		}
	}
	if got, err := open(k, rec1, tok1, e.clock.Now()); err != nil || got != `"day 1"` {
		t.Errorf("open day-1 record = %q, %v, want \"day 1\"", got, err)
	}
}

func TestOpeningKeyNeverGenerates(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	for _, p := range []int64{p0, p0 - 1, p0 + 1} {
		if _, err := k.OpeningKey(ctx, "app-1", p); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("OpeningKey(app-1, %d) with no key = %v, want ErrKeyDestroyed", p, err)
		}
	}
	if got := e.kms.generates.Load(); got != 0 {
		t.Errorf("GenerateDataKey calls = %d, want 0", got)
	}
	if _, err := k.OpeningKey(ctx, "../etc", p0); !errors.Is(err, keyring.ErrInvalidApp) {
		t.Errorf("OpeningKey(../etc) = %v, want ErrInvalidApp", err)
	}
	if _, err := k.SealingKey(ctx, "a/b"); !errors.Is(err, keyring.ErrInvalidApp) {
		t.Errorf("SealingKey(a/b) = %v, want ErrInvalidApp", err)
	}
}

func TestDestroyExpired(t *testing.T) {
	e := newEnv(t)
	k := e.keyring(func(c *keyring.Config) { c.MaxTTL = time.Hour })
	for i := range 3 {
		for _, app := range []string{"a", "b"} {
			if _, err := k.SealingKey(ctx, app); err != nil {
				t.Fatalf("SealingKey(%s) day %d = %v", app, i, err)
			}
		}
		e.clock.Advance(keyring.PeriodLength)
	}
	// At the start of p0+3, p0 and p0+1 are past their end + 1 h + 5 min; p0+2 is not.
	e.clock.Set(keyring.PeriodStart(p0 + 3))
	n, err := k.DestroyExpired(ctx)
	if err != nil || n != 4 {
		t.Fatalf("DestroyExpired = %d, %v, want 4, nil", n, err)
	}
	left, err := e.store().List(ctx)
	if err != nil || len(left) != 2 {
		t.Fatalf("List after DestroyExpired = %d keys, %v, want 2", len(left), err)
	}
	for _, wk := range left {
		if wk.Period != p0+2 {
			t.Errorf("key of period %d survived, want only %d", wk.Period, p0+2)
		}
	}
	for _, p := range []int64{p0, p0 + 1} {
		if kek, ok := k.CachedKEK("a", p); ok {
			t.Errorf("destroyed key of period %d still cached (%d bytes)", p, len(kek))
		}
		// Even with the clock turned back, a destroyed key stays destroyed.
		e.clock.Set(t0)
		if _, err := k.OpeningKey(ctx, "a", p); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("OpeningKey(a, %d) after DestroyExpired = %v, want ErrKeyDestroyed", p, err)
		}
	}
	if _, err := k.OpeningKey(ctx, "b", p0+2); err != nil {
		t.Errorf("OpeningKey(b, %d) = %v, want the live key", p0+2, err)
	}
	if n, err := k.DestroyExpired(ctx); err != nil || n != 0 {
		t.Errorf("second DestroyExpired = %d, %v, want 0, nil", n, err)
	}
}

func TestEraseApp(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	recA0, tokA0 := seal(t, k, "app-a", e.clock.Now(), `"a0"`)
	recB0, tokB0 := seal(t, k, "app-b", e.clock.Now(), `"b0"`)
	e.clock.Advance(keyring.PeriodLength)
	recA1, tokA1 := seal(t, k, "app-a", e.clock.Now(), `"a1"`)
	kek, _ := k.CachedKEK("app-a", p0+1)

	n, err := k.EraseApp(ctx, "app-a")
	if err != nil || n != 2 {
		t.Fatalf("EraseApp(app-a) = %d, %v, want 2, nil", n, err)
	}
	if !bytes.Equal(kek, make([]byte, keyring.KEKSize)) {
		t.Errorf("erased KEK was not zeroed in memory")
	}
	for _, kr := range []*keyring.Keyring{k, e.keyring()} {
		for _, r := range []struct {
			rec *envelope.Record
			tok envelope.Token
		}{{recA0, tokA0}, {recA1, tokA1}} {
			if _, err := open(kr, r.rec, r.tok, e.clock.Now()); !errors.Is(err, keyring.ErrKeyDestroyed) {
				t.Errorf("open app-a record of period %d after EraseApp = %v, want ErrKeyDestroyed", r.rec.Period, err)
			}
		}
		if got, err := open(kr, recB0, tokB0, t0); err != nil || got != `"b0"` {
			t.Errorf("open app-b record after erasing app-a = %q, %v, want \"b0\"", got, err)
		}
	}
	if _, err := k.EraseApp(ctx, "bad/app"); !errors.Is(err, keyring.ErrInvalidApp) {
		t.Errorf("EraseApp(bad/app) = %v, want ErrInvalidApp", err)
	}
}

func TestTwoKeyringsShareOneKey(t *testing.T) {
	e := newEnv(t)
	k1, k2 := e.keyring(), e.keyring()
	var wg sync.WaitGroup
	keys := make([]*envelope.AppKey, 16)
	errs := make([]error, len(keys))
	for i := range keys {
		kr := k1
		if i%2 == 1 {
			kr = k2
		}
		wg.Go(func() { keys[i], errs[i] = kr.SealingKey(ctx, "app-1") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("SealingKey #%d = %v", i, err)
		}
	}
	stored, err := e.store().List(ctx)
	if err != nil || len(stored) != 1 {
		t.Fatalf("store holds %d keys, %v, want 1", len(stored), err)
	}
	// Every key handed out, by either keyring, opens what any other sealed.
	for i, key := range keys {
		rec, toks, err := envelope.SealWith(key, rand.Reader, header("app-1", t0), []envelope.Field{{Path: "x", Value: []byte(`1`)}})
		if err != nil {
			t.Fatal(err)
		}
		for j, other := range []*keyring.Keyring{k1, k2} {
			if got, err := open(other, rec, toks[0], t0); err != nil || got != "1" {
				t.Errorf("keyring %d cannot open what key #%d sealed: %q, %v", j+1, i, got, err)
			}
		}
	}
	if got := e.kms.generates.Load(); got < 1 || got > 2 {
		t.Errorf("GenerateDataKey calls = %d, want 1 or 2 (at most one per keyring)", got)
	}
}

// racingStore lets another process store its key between this keyring's Get and Create.
type racingStore struct {
	keyring.KeyStore
	beforeCreate func()
}

func (s *racingStore) Create(ctx context.Context, k keyring.WrappedKey) (keyring.WrappedKey, error) {
	if s.beforeCreate != nil {
		s.beforeCreate()
		s.beforeCreate = nil
	}
	return s.KeyStore.Create(ctx, k)
}

func TestLosingTheCreateRaceUsesTheWinner(t *testing.T) {
	e := newEnv(t)
	winner := e.keyring()
	var winnerKey *envelope.AppKey
	rs := &racingStore{KeyStore: e.store(), beforeCreate: func() {
		var err error
		if winnerKey, err = winner.SealingKey(ctx, "app-1"); err != nil {
			t.Errorf("winner SealingKey = %v", err)
		}
	}}
	loser := e.keyring(func(c *keyring.Config) { c.Store = rs })
	loserKey, err := loser.SealingKey(ctx, "app-1")
	if err != nil {
		t.Fatalf("loser SealingKey = %v", err)
	}
	rec, toks, err := envelope.SealWith(loserKey, rand.Reader, header("app-1", t0), []envelope.Field{{Path: "x", Value: []byte(`2`)}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := envelope.OpenWith(winnerKey, rec, toks[0], t0); err != nil || string(got) != "2" {
		t.Errorf("winner's key cannot open what the loser sealed: %q, %v", got, err)
	}
	// The winner's claim came first: the loser never called the KMS to generate, only to unwrap.
	if got, want := loser.Stats(), (keyring.Stats{CacheMisses: 1, GenerateDataKey: 0, Decrypt: 1}); got != want {
		t.Errorf("loser Stats() = %+v, want %+v", got, want)
	}
}

func TestCacheEvictionZeroesKEK(t *testing.T) {
	e := newEnv(t)
	k := e.keyring(func(c *keyring.Config) { c.CacheSize = 2 })
	recA, tokA := seal(t, k, "a", t0, `"a"`)
	kekA, ok := k.CachedKEK("a", p0)
	if !ok || len(kekA) != keyring.KEKSize || bytes.Equal(kekA, make([]byte, keyring.KEKSize)) {
		t.Fatalf("CachedKEK(a) = %d bytes, ok=%v, want a nonzero 32-byte key", len(kekA), ok)
	}
	seal(t, k, "b", t0, `"b"`)
	seal(t, k, "c", t0, `"c"`) // evicts a
	if _, ok := k.CachedKEK("a", p0); ok {
		t.Fatalf("a still cached after two newer keys in a cache of 2")
	}
	if !bytes.Equal(kekA, make([]byte, keyring.KEKSize)) {
		t.Errorf("evicted KEK buffer = %d nonzero bytes, want all zero", len(bytes.Trim(kekA, "\x00")))
	}
	if got := k.Stats().Evictions; got != 1 {
		t.Errorf("Stats().Evictions = %d, want 1", got)
	}
	// The evicted key comes back from the store, not from a new GenerateDataKey.
	if got, err := open(k, recA, tokA, t0); err != nil || got != `"a"` {
		t.Errorf("open after eviction = %q, %v, want \"a\"", got, err)
	}
	if got := e.kms.generates.Load(); got != 3 {
		t.Errorf("GenerateDataKey calls = %d, want 3", got)
	}

	kekC, _ := k.CachedKEK("c", p0)
	if err := k.Close(context.Background()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if !bytes.Equal(kekC, make([]byte, keyring.KEKSize)) {
		t.Errorf("Close left a cached KEK unzeroed")
	}
	if _, err := k.SealingKey(ctx, "c"); !errors.Is(err, keyring.ErrClosed) {
		t.Errorf("SealingKey after Close = %v, want ErrClosed", err)
	}
	if err := k.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestOneKMSCallPer100kEntries seals 100,000 entries of one app in one period from several
// goroutines: KMS calls grow with apps × periods, never with entries.
func TestOneKMSCallPer100kEntries(t *testing.T) {
	e := newEnv(t)
	var hookMu sync.Mutex
	hookCalls := map[string]int{}
	k := e.keyring(func(c *keyring.Config) {
		c.OnKMSCall = func(op string) {
			hookMu.Lock()
			defer hookMu.Unlock()
			hookCalls[op]++
		}
	})
	const workers, perWorker = 8, 12_500
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start
			fields := []envelope.Field{{Path: "data.text", Value: []byte(`"my email is jane@example.com"`)}}
			for range perWorker {
				key, err := k.SealingKey(ctx, "app-42")
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := envelope.SealWith(key, rand.Reader, header("app-42", t0), fields); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sealing = %v", err)
	}
	if got := e.kms.generates.Load(); got != 1 {
		t.Errorf("GenerateDataKey calls for 100,000 entries = %d, want 1", got)
	}
	if got := e.kms.decrypts.Load(); got != 0 {
		t.Errorf("Decrypt calls = %d, want 0", got)
	}
	hookMu.Lock()
	if got := hookCalls[keyring.OpGenerateDataKey]; got != 1 || len(hookCalls) != 1 {
		t.Errorf("OnKMSCall calls = %v, want only GenerateDataKey once", hookCalls)
	}
	hookMu.Unlock()
	st := k.Stats()
	if st.CacheHits+st.CacheMisses != workers*perWorker || st.GenerateDataKey != 1 {
		t.Errorf("Stats() = %+v, want %d lookups and 1 GenerateDataKey", st, workers*perWorker)
	}
}

func TestKeyOfOneAppDoesNotUnwrapForAnother(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	seal(t, k, "app-a", t0, `"a"`)
	s := e.store()
	wk, err := s.Get(ctx, "app-a", p0)
	if err != nil {
		t.Fatalf("Get(app-a) = %v", err)
	}
	_, err = e.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wk.Ciphertext, KeyId: aws.String(wk.KeyID), EncryptionContext: keyring.EncryptionContext("app-b", p0)})
	var bad *types.InvalidCiphertextException
	if !errors.As(err, &bad) {
		t.Errorf("Decrypt of app-a's key under app-b's context = %v, want InvalidCiphertextException", err)
	}
	// Plant app-a's wrapped key as app-b's (and as app-a's next period): the keyring refuses both.
	for _, forged := range []keyring.WrappedKey{
		{App: "app-b", Period: p0, KeyID: wk.KeyID, Ciphertext: wk.Ciphertext, DestroyAt: wk.DestroyAt},
		{App: "app-a", Period: p0 - 1, KeyID: wk.KeyID, Ciphertext: wk.Ciphertext, DestroyAt: wk.DestroyAt},
	} {
		if _, err := s.Create(ctx, forged); err != nil {
			t.Fatal(err)
		}
		_, err := k.OpeningKey(ctx, forged.App, forged.Period)
		if !errors.As(err, &bad) || keyring.IsTransient(err) {
			t.Errorf("OpeningKey(%s, %d) of a transplanted key = %v, want a permanent InvalidCiphertextException", forged.App, forged.Period, err)
		}
	}
}

type netError struct{}

func (netError) Error() string { return "connection refused" }

func TestIsTransient(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"destroyed", fmt.Errorf("opening: %w", keyring.ErrKeyDestroyed), false},
		{"invalid app", keyring.ErrInvalidApp, false},
		{"closed", keyring.ErrClosed, false},
		{"cancelled", context.Canceled, false},
		{"deadline", context.DeadlineExceeded, true},
		{"kms internal", &keyring.KMSError{Op: "Decrypt", Err: &types.KMSInternalException{}}, true},
		{"kms throttled", &keyring.KMSError{Op: "Decrypt", Err: api("ThrottlingException")}, true},
		{"kms dependency timeout", &keyring.KMSError{Op: "Decrypt", Err: &types.DependencyTimeoutException{}}, true},
		{"kms unreachable", &keyring.KMSError{Op: "GenerateDataKey", Err: netError{}}, true},
		{"bad ciphertext", &keyring.KMSError{Op: "Decrypt", Err: &types.InvalidCiphertextException{}}, false},
		{"unknown key", &keyring.KMSError{Op: "Decrypt", Err: &types.NotFoundException{}}, false},
		{"access denied", &keyring.KMSError{Op: "Decrypt", Err: api("AccessDeniedException")}, false},
		{"store error", errors.New("reading key store: disk on fire"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyring.IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	e := newEnv(t)
	ok := keyring.Config{KMS: e.kms, KeyID: "k", Store: e.store()}
	tests := []struct {
		name string
		mod  func(*keyring.Config)
	}{
		{"no KMS", func(c *keyring.Config) { c.KMS = nil }},
		{"no key id", func(c *keyring.Config) { c.KeyID = "" }},
		{"no store", func(c *keyring.Config) { c.Store = nil }},
		{"negative TTL", func(c *keyring.Config) { c.MaxTTL = -time.Hour }},
		{"negative cache", func(c *keyring.Config) { c.CacheSize = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			if _, err := keyring.New(cfg); err == nil {
				t.Errorf("New(%s) = nil error, want error", tt.name)
			}
		})
	}
}

// blockingStore holds every Get until release is closed.
type blockingStore struct {
	keyring.KeyStore
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) Get(ctx context.Context, app string, period int64) (keyring.WrappedKey, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.KeyStore.Get(ctx, app, period)
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	e := newEnv(t)
	bs := &blockingStore{KeyStore: e.store(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	k := e.keyring(func(c *keyring.Config) { c.Store = bs })

	cctx, cancel := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() {
		_, err := k.SealingKey(cctx, "app-1")
		first <- err
	}()
	<-bs.entered // the shared flight is running under the first caller
	second := make(chan error, 1)
	go func() {
		_, err := k.SealingKey(ctx, "app-1")
		second <- err
	}()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled SealingKey = %v, want context.Canceled", err)
	}
	close(bs.release)
	if err := <-second; err != nil {
		t.Errorf("SealingKey sharing the flight of a cancelled caller = %v, want nil", err)
	}
	if got := e.kms.generates.Load(); got != 1 {
		t.Errorf("GenerateDataKey calls = %d, want 1", got)
	}
}

func BenchmarkSealingKeyCached(b *testing.B) {
	e := newEnv(b)
	k := e.keyring()
	if _, err := k.SealingKey(ctx, "app-1"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.SealingKey(ctx, "app-1"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestStaleClaimIsTakenOver: a process that died between claiming a key and storing it leaves a
// claim; once it is stale another process generates the key instead of waiting for ever, and a
// claim never opens anything.
func TestStaleClaimIsTakenOver(t *testing.T) {
	e := newEnv(t)
	st := e.store()
	claim := keyring.WrappedKey{App: "app-1", Period: p0, KeyID: "veil-pending:dead", Ciphertext: []byte("nonce-of-a-dead-process"), DestroyAt: t0.Add(-time.Second)}
	if _, err := st.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	k := e.keyring()
	if _, err := k.OpeningKey(ctx, "app-1", p0); !errors.Is(err, keyring.ErrKeyDestroyed) {
		t.Errorf("OpeningKey of a claimed version = %v, want ErrKeyDestroyed", err)
	}
	rec, tok := seal(t, k, "app-1", t0, `"after takeover"`)
	if got, err := open(e.keyring(), rec, tok, t0); err != nil || got != `"after takeover"` {
		t.Errorf("open after a takeover = %q, %v", got, err)
	}
	if wk, err := st.Get(ctx, "app-1", p0); err != nil || wk.Pending() {
		t.Errorf("stored after takeover = %+v, %v, want the key", wk, err)
	}
	if got := e.kms.generates.Load(); got != 1 {
		t.Errorf("GenerateDataKey calls = %d, want 1", got)
	}
}

// TestWindowPrefetch: using a window readies the next window's key in the background, so the first
// entry of the next window is sealed without a KMS call on its path.
func TestWindowPrefetch(t *testing.T) {
	e := newEnv(t)
	k := e.keyring(func(c *keyring.Config) { c.Window = 15 * time.Minute; c.Prefetch = true })
	if _, err := k.SealingKeyFor(ctx, "app-1", t0.Add(5*time.Minute)); err != nil { // window to 10:15
		t.Fatal(err)
	}
	next := keyring.KeyVersion(-t0.Add(30*time.Minute).Unix()/60, 0) // window to 10:30
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := e.store().Get(ctx, "app-1", next); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next window's key was never prefetched")
		}
	}
	before := e.kms.generates.Load()
	key, err := k.SealingKeyFor(ctx, "app-1", t0.Add(20*time.Minute))
	if err != nil || key.Period != next {
		t.Fatalf("SealingKeyFor(10:20) = %v, %v, want version %d", key, err, next)
	}
	if got := e.kms.generates.Load() - before; got != 0 {
		t.Errorf("sealing in the prefetched window called GenerateDataKey %d times, want 0", got)
	}
	if err := k.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
