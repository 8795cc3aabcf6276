// Package keystoretest is the conformance suite every keyring.KeyStore backend runs (file, Redis,
// DynamoDB): the same cases and expectations, so a deployment may pick any of them. Besides the
// store's own contract (put-if-absent, tombstones, compare-and-swap, the change counter), it runs
// keyrings of several "processes" over one backend and checks that they agree on keys and see
// each other's rotations and erasures within one poll interval.
package keystoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testclock"
)

// Opener opens a store on the namespace ns: stores opened with the same ns share their keys (as
// the processes of one deployment do), stores of different ns share nothing. Each call is one
// "process"; the suite closes nothing, the opener registers its own cleanup.
type Opener func(t *testing.T, ns string) keyring.KeyStore

// Run runs the suite against the stores open returns.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		f    func(*testing.T, func(*testing.T) keyring.KeyStore)
	}{
		{"RoundTrip", testRoundTrip},
		{"ConcurrentCreateAgrees", testConcurrentCreate},
		{"Tombstone", testTombstone},
		{"Replace", testReplace},
		{"Changes", testChanges},
		{"RejectsInvalidApp", testInvalidApp},
		{"KeyringsAgree", testKeyringsAgree},
		{"RotationReachesEveryKeyring", testRotation},
		{"ErasureReachesEveryKeyring", testErasure},
		{"SharedSecretAgrees", testSharedSecret},
		{"WindowKeysDieWithTheirData", testWindows},
		{"OfflineAttackAfterTTL", testOfflineAttack},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := "t" + randHex(6)
			c.f(t, func(t *testing.T) keyring.KeyStore { return open(t, ns) })
		})
	}
}

var ctx = context.Background()

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var destroyAt = time.Unix(4_000_000_000, 0).UTC() // far enough that a native TTL never fires

func wrapped(app string, v int64, ct string) keyring.WrappedKey {
	return keyring.WrappedKey{App: app, Period: v, KeyID: "kid", Ciphertext: []byte(ct), DestroyAt: destroyAt}
}

func same(a, b keyring.WrappedKey) bool {
	return a.App == b.App && a.Period == b.Period && a.KeyID == b.KeyID && bytes.Equal(a.Ciphertext, b.Ciphertext) &&
		a.DestroyAt.Equal(b.DestroyAt) && a.Erased == b.Erased
}

func testRoundTrip(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	s := open(t)
	if _, err := s.Get(ctx, "a", 1); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Fatalf("Get of missing key = %v, want ErrKeyNotFound", err)
	}
	want := wrapped("a.b-c", -3, "ct-1")
	got, err := s.Create(ctx, want)
	if err != nil || !same(got, want) {
		t.Fatalf("Create = %+v, %v, want %+v", got, err, want)
	}
	if got, err := s.Get(ctx, "a.b-c", -3); err != nil || !same(got, want) {
		t.Errorf("Get = %+v, %v, want %+v", got, err, want)
	}
	// Put-if-absent: a second Create, even from another process, returns the first key.
	if got, err := open(t).Create(ctx, wrapped("a.b-c", -3, "ct-2")); err != nil || string(got.Ciphertext) != "ct-1" {
		t.Errorf("second Create = %q, %v, want the first key ct-1", got.Ciphertext, err)
	}
	big := keyring.KeyVersion(1<<39-1, keyring.MaxGeneration)
	if _, err := s.Create(ctx, wrapped("a", big, "ct-3")); err != nil {
		t.Fatal(err)
	}
	// Keys of one app differing only in case are different apps.
	if _, err := s.Create(ctx, wrapped("A", big, "ct-4")); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("List = %d keys, %v, want 3", len(all), err)
	}
	if got, err := s.Get(ctx, "A", big); err != nil || string(got.Ciphertext) != "ct-4" {
		t.Errorf("Get(A) = %q, %v, want ct-4", got.Ciphertext, err)
	}
	if err := s.Delete(ctx, "a.b-c", -3); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if err := s.Delete(ctx, "a.b-c", -3); err != nil {
		t.Errorf("Delete of missing key = %v, want nil", err)
	}
	if _, err := s.Get(ctx, "a.b-c", -3); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Errorf("Get after Delete = %v, want ErrKeyNotFound", err)
	}
	if all, err := s.List(ctx); err != nil || len(all) != 2 {
		t.Errorf("List after Delete = %d keys, %v, want 2", len(all), err)
	}
}

func testConcurrentCreate(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	const n = 12
	stores := make([]keyring.KeyStore, n)
	for i := range stores {
		stores[i] = open(t) // one store per "process"
	}
	ConcurrentCreate(t, n, func(i int) (keyring.WrappedKey, error) {
		return stores[i].Create(ctx, wrapped("app", 5, fmt.Sprintf("ct-%d", i)))
	})
	if all, err := stores[0].List(ctx); err != nil || len(all) != 1 {
		t.Errorf("List = %d keys, %v, want 1", len(all), err)
	}
}

// ConcurrentCreate calls create(0) … create(n-1) at once, as n processes creating the same key
// would, and fails t unless every call succeeded and all of them returned the same ciphertext:
// one writer wins and the others get its key. A backend's own test uses it for what the suite
// cannot do for every backend (the file store opens each store inside its goroutine).
func ConcurrentCreate(t *testing.T, n int, create func(i int) (keyring.WrappedKey, error)) {
	t.Helper()
	got := make([]keyring.WrappedKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = create(i) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Create #%d = %v", i, errs[i])
		}
		if !bytes.Equal(got[i].Ciphertext, got[0].Ciphertext) {
			t.Errorf("Create #%d stored %q, #0 stored %q: writers disagree", i, got[i].Ciphertext, got[0].Ciphertext)
		}
	}
}

func testTombstone(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	s := open(t)
	if _, err := s.Create(ctx, wrapped("app", 7, "ct")); err != nil {
		t.Fatal(err)
	}
	if err := s.Tombstone(ctx, "app", 7, destroyAt); err != nil {
		t.Fatalf("Tombstone = %v", err)
	}
	want := keyring.WrappedKey{App: "app", Period: 7, DestroyAt: destroyAt, Erased: true}
	if got, err := open(t).Get(ctx, "app", 7); err != nil || !same(got, want) {
		t.Errorf("Get of tombstone = %+v, %v, want %+v", got, err, want)
	}
	// No key comes back under an erased version.
	if got, err := open(t).Create(ctx, wrapped("app", 7, "ct-new")); err != nil || !got.Erased || len(got.Ciphertext) != 0 {
		t.Errorf("Create over a tombstone = %+v, %v, want the tombstone", got, err)
	}
	// A version never stored can be tombstoned too.
	if err := s.Tombstone(ctx, "app", 8, destroyAt); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx)
	if err != nil || len(all) != 2 || !all[0].Erased || !all[1].Erased {
		t.Errorf("List = %+v, %v, want two tombstones", all, err)
	}
	if err := s.Delete(ctx, "app", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "app", 7); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Errorf("Get of deleted tombstone = %v, want ErrKeyNotFound", err)
	}
}

func testReplace(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	s := open(t)
	old, err := s.Create(ctx, wrapped("app", 1, "old"))
	if err != nil {
		t.Fatal(err)
	}
	nw := old
	nw.Ciphertext, nw.KeyID = []byte("new"), "kid-2"
	if err := open(t).Replace(ctx, old, nw); err != nil {
		t.Fatalf("Replace = %v", err)
	}
	if got, err := s.Get(ctx, "app", 1); err != nil || !same(got, nw) {
		t.Errorf("Get after Replace = %+v, %v, want %+v", got, err, nw)
	}
	// Compare-and-swap: a writer holding the old wrapping loses.
	stale := nw
	stale.Ciphertext = []byte("other")
	if err := s.Replace(ctx, old, stale); !errors.Is(err, keyring.ErrKeyChanged) {
		t.Errorf("Replace of a changed key = %v, want ErrKeyChanged", err)
	}
	if err := s.Replace(ctx, wrapped("app", 2, "x"), wrapped("app", 2, "y")); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Errorf("Replace of a missing key = %v, want ErrKeyNotFound", err)
	}
	if _, err := s.Get(ctx, "app", 2); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Errorf("Replace of a missing key created it: Get = %v", err)
	}
	// Replace never brings an erased key back.
	if err := s.Tombstone(ctx, "app", 1, destroyAt); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, nw, stale); err == nil {
		t.Errorf("Replace of a tombstone = nil, want an error")
	}
	if got, _ := s.Get(ctx, "app", 1); !got.Erased {
		t.Errorf("after Replace of a tombstone Get = %+v, want the tombstone", got)
	}
	if err := s.Replace(ctx, wrapped("app", 3, "x"), wrapped("app", 4, "y")); err == nil {
		t.Errorf("Replace across versions = nil, want an error")
	}
	// A replacement is a wrapped key, never a tombstone (erasing is Tombstone's job).
	live, err := s.Create(ctx, wrapped("app", 5, "live"))
	if err != nil {
		t.Fatal(err)
	}
	erased := live
	erased.Ciphertext, erased.Erased = []byte("x"), true
	if err := s.Replace(ctx, live, erased); err == nil {
		t.Errorf("Replace with a tombstone = nil, want an error")
	}
	if got, err := s.Get(ctx, "app", 5); err != nil || !same(got, live) {
		t.Errorf("after Replace with a tombstone Get = %+v, %v, want %+v", got, err, live)
	}
}

func testChanges(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	s := open(t)
	n0, err := s.Changes(ctx)
	if err != nil {
		t.Fatalf("Changes = %v", err)
	}
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		other := open(t)
		wg.Go(func() { errs[i] = other.NoteChange(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("NoteChange = %v", err)
		}
	}
	if got, err := s.Changes(ctx); err != nil || got != n0+n {
		t.Errorf("Changes after %d concurrent NoteChange = %d, %v, want %d", n, got, err, n0+n)
	}
}

func testInvalidApp(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	s := open(t)
	for _, app := range []string{"", "../x", "a/b", "a:b", "a{b}", "a*"} {
		if _, err := s.Create(ctx, wrapped(app, 1, "c")); !errors.Is(err, keyring.ErrInvalidApp) {
			t.Errorf("Create(%q) = %v, want ErrInvalidApp", app, err)
		}
		if _, err := s.Get(ctx, app, 1); !errors.Is(err, keyring.ErrInvalidApp) {
			t.Errorf("Get(%q) = %v, want ErrInvalidApp", app, err)
		}
		if err := s.Tombstone(ctx, app, 1, destroyAt); !errors.Is(err, keyring.ErrInvalidApp) {
			t.Errorf("Tombstone(%q) = %v, want ErrInvalidApp", app, err)
		}
	}
}

// deployment is one KMS and one clock shared by keyrings over one store backend.
type deployment struct {
	t     *testing.T
	open  func(*testing.T) keyring.KeyStore
	kms   *kmslocal.Provider
	clk   *testclock.Clock
	mu    sync.Mutex // guards calls
	calls map[string]int
}

func newDeployment(t *testing.T, open func(*testing.T) keyring.KeyStore) *deployment {
	p, err := kmslocal.Open(filepath.Join(t.TempDir(), "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &deployment{t: t, open: open, kms: p, clk: testclock.New(deploymentStart(time.Now())), calls: map[string]int{}}
}

// deploymentStart is where a deployment's clock starts: 10:00 UTC of the day after now, so
// periods line up the same in every run, and the keys' destroy times lie ahead of the real clock,
// which a backend's native expiry (Redis EXAT, DynamoDB TTL) runs on. A fixed date became a time
// bomb once the real clock passed it: Redis gave every key a one-second life, and keys vanished
// before the offline attack read them.
func deploymentStart(now time.Time) time.Time {
	return now.UTC().Truncate(24 * time.Hour).Add(24*time.Hour + 10*time.Hour)
}

func (d *deployment) clock() time.Time { return d.clk.Now() }

func (d *deployment) advance(dt time.Duration) { d.clk.Advance(dt) }

// process returns the keyring of one more process of the deployment, on its own store connection.
func (d *deployment) process(mod ...func(*keyring.Config)) *keyring.Keyring {
	cfg := keyring.Config{
		KMS: d.kms, KeyID: kmslocal.DefaultKeyID, Store: d.open(d.t), Clock: d.clock,
		OnKMSCall: func(op string) { d.mu.Lock(); d.calls[op]++; d.mu.Unlock() },
	}
	for _, m := range mod {
		m(&cfg)
	}
	k, err := keyring.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { k.Close(context.Background()) })
	return k
}

func (d *deployment) seal(k *keyring.Keyring, app, value string) (*envelope.Record, envelope.Token) {
	d.t.Helper()
	key, err := k.SealingKey(ctx, app)
	if err != nil {
		d.t.Fatalf("SealingKey(%s) = %v", app, err)
	}
	var ref envelope.RefID
	_, _ = rand.Read(ref[:])
	h := envelope.Header{App: app, Ledger: "event", Ref: ref, Expiry: d.clock().Add(time.Hour).Truncate(time.Second)}
	rec, toks, err := envelope.SealWith(key, rand.Reader, h, []envelope.Field{{Path: "data.text", Value: []byte(`"` + value + `"`)}})
	if err != nil {
		d.t.Fatalf("SealWith = %v", err)
	}
	return rec, toks[0]
}

func (d *deployment) open1(k *keyring.Keyring, rec *envelope.Record, tok envelope.Token) (string, error) {
	key, err := k.OpeningKey(ctx, rec.App, rec.Period)
	if err != nil {
		return "", err
	}
	pt, err := envelope.OpenWith(key, rec, tok, d.clock())
	if len(pt) >= 2 {
		pt = pt[1 : len(pt)-1]
	}
	return string(pt), err
}

func testKeyringsAgree(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	d := newDeployment(t, open)
	procs := []*keyring.Keyring{d.process(), d.process(), d.process()}
	type sealed struct {
		rec *envelope.Record
		tok envelope.Token
		val string
	}
	// All three need the key at the same moment: one claims it, the others wait for it.
	all := make([]sealed, len(procs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, k := range procs {
		wg.Go(func() {
			<-start
			v := fmt.Sprintf("value %d", i)
			rec, tok := d.seal(k, "app-1", v)
			all[i] = sealed{rec, tok, v}
		})
	}
	close(start)
	wg.Wait()
	for i, s := range all {
		for j, k := range procs {
			if got, err := d.open1(k, s.rec, s.tok); err != nil || got != s.val {
				t.Errorf("token sealed by process %d opened by process %d = %q, %v, want %q", i, j, got, err, s.val)
			}
		}
	}
	if got := d.calls[keyring.OpGenerateDataKey]; got != 1 {
		t.Errorf("GenerateDataKey calls = %d over 3 processes asking at once, want 1 per (app, version)", got)
	}
	if infos, err := procs[0].Keys(ctx); err != nil || len(infos) != 1 || infos[0].KMSKeyID == "" || strings.HasPrefix(infos[0].KMSKeyID, "veil-pending") {
		t.Errorf("Keys = %+v, %v, want one key, no claim", infos, err)
	}
}

func testRotation(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	d := newDeployment(t, open)
	a, b := d.process(), d.process()
	rec0, _ := d.seal(b, "app-1", "before")
	v, err := a.Rotate(ctx, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, g := keyring.SplitVersion(v); g != 1 {
		t.Fatalf("Rotate = version %d (generation %d), want generation 1", v, g)
	}
	d.advance(keyring.DefaultPollInterval)
	rec1, tok1 := d.seal(b, "app-1", "after")
	if rec1.Period != v || rec0.Period == v {
		t.Errorf("after a rotation on another process and one poll interval, process b seals under %d, want %d (before: %d)", rec1.Period, v, rec0.Period)
	}
	if got, err := d.open1(a, rec1, tok1); err != nil || got != "after" {
		t.Errorf("process a opens b's token under the new generation = %q, %v", got, err)
	}
}

func testErasure(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	d := newDeployment(t, open)
	a, b := d.process(), d.process()
	rec, tok := d.seal(b, "app-1", "secret")
	recOther, tokOther := d.seal(b, "app-2", "kept")
	if _, err := d.open1(a, rec, tok); err != nil {
		t.Fatal(err)
	}
	n, err := a.EraseApp(ctx, "app-1")
	if err != nil || n != 1 {
		t.Fatalf("EraseApp = %d, %v, want 1 key", n, err)
	}
	if _, err := d.open1(a, rec, tok); !errors.Is(err, keyring.ErrKeyDestroyed) {
		t.Errorf("erasing process opens an erased token: %v, want ErrKeyDestroyed", err)
	}
	d.advance(keyring.DefaultPollInterval)
	if _, err := d.open1(b, rec, tok); !errors.Is(err, keyring.ErrKeyDestroyed) {
		t.Errorf("after one poll interval, another process opens an erased token: %v, want ErrKeyDestroyed", err)
	}
	if got, err := d.open1(b, recOther, tokOther); err != nil || got != "kept" {
		t.Errorf("another app after the erasure = %q, %v, want kept", got, err)
	}
	// New data of the app is sealed under a new version, never the erased one, and the
	// erased version stays destroyed for every process.
	rec2, tok2 := d.seal(b, "app-1", "fresh")
	if rec2.Period == rec.Period {
		t.Errorf("after the erasure process b seals under the erased version %d", rec.Period)
	}
	if got, err := d.open1(a, rec2, tok2); err != nil || got != "fresh" {
		t.Errorf("process a opens post-erasure data = %q, %v", got, err)
	}
	for i, k := range []*keyring.Keyring{a, b, d.process()} {
		if _, err := d.open1(k, rec, tok); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("process %d opens the erased token: %v, want ErrKeyDestroyed", i, err)
		}
	}
}

func testSharedSecret(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	d := newDeployment(t, open)
	procs := []*keyring.Keyring{d.process(), d.process(), d.process()}
	var first []byte
	for i, k := range procs {
		b, err := k.SharedSecret(ctx, "blob-links")
		if err != nil || len(b) != 32 {
			t.Fatalf("SharedSecret on process %d = %d bytes, %v", i, len(b), err)
		}
		if i == 0 {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Errorf("process %d got another shared secret than process 0", i)
		}
	}
	if got := d.calls[keyring.OpGenerateDataKey]; got != 1 {
		t.Errorf("GenerateDataKey calls = %d for one secret over 3 processes, want 1", got)
	}
	// An app of the same name is another thing: erasing it leaves the secret, and key listings
	// do not show the secret.
	d.seal(procs[0], "blob-links", "x")
	if _, err := procs[0].EraseApp(ctx, "blob-links"); err != nil {
		t.Fatal(err)
	}
	if b, err := procs[1].SharedSecret(ctx, "blob-links"); err != nil || !bytes.Equal(b, first) {
		t.Errorf("SharedSecret after erasing an app of the same name = %v, want the same secret", err)
	}
	infos, err := procs[0].Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ki := range infos {
		if ki.Version == keyring.SecretVersion {
			t.Errorf("Keys lists the shared secret: %+v", ki)
		}
	}
	if apps, _ := procs[0].Apps(ctx); len(apps) != 0 {
		t.Errorf("Apps = %v, want none (the app is erased, the secret is no app)", apps)
	}
	// The store id agrees across processes, and Rewrap leaves it (it wraps nothing).
	id0, err := procs[0].StoreID(ctx)
	if err != nil || len(id0) != 16 {
		t.Fatalf("StoreID = %q, %v", id0, err)
	}
	for i, k := range procs[1:] {
		if id, err := k.StoreID(ctx); err != nil || id != id0 {
			t.Errorf("StoreID on process %d = %q, %v, want %q", i+1, id, err, id0)
		}
	}
	if _, err := keyring.Rewrap(ctx, d.open(t), d.kms, d.kms, kmslocal.DefaultKeyID, d.clock()); err != nil {
		t.Errorf("Rewrap with a store id and a shared secret stored = %v", err)
	}
	if b, err := procs[2].SharedSecret(ctx, "blob-links"); err != nil || !bytes.Equal(b, first) {
		t.Errorf("SharedSecret after Rewrap = %v, want the same secret", err)
	}
}

// testWindows: with key windows, an entry is sealed under the key of its expiry window; every
// process agrees on it (one KMS call per window); the key is destroyed, in the store too, once its
// window has closed plus WindowGrace; rotation gives open windows a new generation and erasure
// destroys every window, both reaching another process within one poll interval.
func testWindows(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	d := newDeployment(t, open)
	win := func(c *keyring.Config) { c.Window = 15 * time.Minute }
	a, b := d.process(win), d.process(win)
	t0 := d.clock() // 10:00
	key := func(k *keyring.Keyring, app string, exp time.Time) *envelope.AppKey {
		t.Helper()
		ak, err := k.SealingKeyFor(ctx, app, exp)
		if err != nil {
			t.Fatalf("SealingKeyFor(%s, %s) = %v", app, exp.Format("15:04:05"), err)
		}
		return ak
	}
	kA := key(a, "app-1", t0.Add(5*time.Minute))               // window ends 10:15
	kA2 := key(b, "app-1", t0.Add(15*time.Minute))             // 10:15 itself: same window
	kB := key(b, "app-1", t0.Add(40*time.Minute+time.Second))  // ends 10:45
	kC := key(a, "app-1", t0.Add(24*time.Hour+30*time.Second)) // tomorrow 10:15
	if kA.Period != kA2.Period || kA.Period == kB.Period || kB.Period == kC.Period {
		t.Errorf("versions %d %d %d %d: want one per window", kA.Period, kA2.Period, kB.Period, kC.Period)
	}
	if end, ok := keyring.IsWindowVersion(kA.Period); !ok || !end.Equal(t0.Add(15*time.Minute)) {
		t.Errorf("window of the first key ends %v, %v; want 10:15", end, ok)
	}
	if got := d.calls[keyring.OpGenerateDataKey]; got != 3 {
		t.Errorf("GenerateDataKey calls = %d for 3 windows over 2 processes, want 3", got)
	}
	if k, err := b.OpeningKey(ctx, "app-1", kA.Period); err != nil || k.Period != kA.Period {
		t.Errorf("process b opens the window key of a: %v", err)
	}

	// Rotation on a: the open windows that have keys get a new generation, on b too.
	if _, err := a.Rotate(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	d.advance(keyring.DefaultPollInterval)
	if k := key(b, "app-1", t0.Add(40*time.Minute)); k.Period == kB.Period || keyring.PeriodOfVersion(k.Period) != keyring.PeriodOfVersion(kB.Period) {
		t.Errorf("after a rotation elsewhere b seals the 10:45 window under %d, want a new generation of it (was %d)", k.Period, kB.Period)
	}

	// The 10:15 key opens until 10:20 (grace), then nowhere, and the janitor removes it.
	d.advance(20*time.Minute - keyring.DefaultPollInterval - time.Second) // 10:19:59
	if _, err := b.OpeningKey(ctx, "app-1", kA.Period); err != nil {
		t.Errorf("window key before its destroy time: %v", err)
	}
	d.advance(time.Second) // 10:20:00
	for i, k := range []*keyring.Keyring{a, b, d.process(win)} {
		if _, err := k.OpeningKey(ctx, "app-1", kA.Period); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("process %d opens the 10:15 window key at 10:20: %v, want ErrKeyDestroyed", i, err)
		}
	}
	if _, err := a.DestroyExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t).Get(ctx, "app-1", kA.Period); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Errorf("the 10:15 window key is still in the key store after DestroyExpired: %v", err)
	}

	// Erasure on b reaches a: every window of the app is destroyed.
	if _, err := b.EraseApp(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	d.advance(keyring.DefaultPollInterval)
	for _, v := range []int64{kB.Period, kC.Period} {
		if _, err := a.OpeningKey(ctx, "app-1", v); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("after an erasure elsewhere, a opens window version %d: %v", v, err)
		}
	}
	if k := key(a, "app-1", t0.Add(24*time.Hour+30*time.Second)); k.Period == kC.Period {
		t.Errorf("after the erasure a seals under the erased version %d", k.Period)
	}
}

// testOfflineAttack is the attacker's view of key windows: every sealed record survives (a store
// row not yet deleted, a backup, a token in a topic), the attacker holds a snapshot of the key
// store and may call the KMS, and opens records with an opener that ignores expiry. With windows
// of 1 minute, a snapshot taken once an entry's expiry + window + grace has passed (and the
// janitor has run) opens nothing; one taken before the TTL opens everything (so the attack is
// real). With one key per 24 h period, the same attack still opens every entry long after its TTL:
// the measured recoverable lifetimes are logged.
func testOfflineAttack(t *testing.T, open func(*testing.T) keyring.KeyStore) {
	for _, mode := range []struct {
		name   string
		window time.Duration
	}{{"1m windows", time.Minute}, {"24h periods", 0}} {
		t.Run(mode.name, func(t *testing.T) {
			d := newDeployment(t, open)
			k := d.process(func(c *keyring.Config) { c.Window = mode.window })
			type sealed struct {
				rec *envelope.Record
				tok envelope.Token
			}
			var all []sealed
			// Entries of the 1 h and the 24 h ledgers, sealed over two minutes, with TTLs cut to
			// 2 and 5 minutes (the injected clock stands for a TTL of any length).
			for i := range 24 {
				ttl := 2 * time.Minute
				if i%2 == 1 {
					ttl = 5 * time.Minute
				}
				ak, err := k.SealingKeyFor(ctx, "app-1", d.clock().Add(ttl).Truncate(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				var ref envelope.RefID
				_, _ = rand.Read(ref[:])
				rec, toks, err := envelope.SealWith(ak, rand.Reader, envelope.Header{App: "app-1", Ledger: "event", Ref: ref, Expiry: d.clock().Add(ttl).Truncate(time.Second)},
					[]envelope.Field{{Path: "data.text", Value: []byte(fmt.Sprintf(`"secret %d"`, i))}})
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, sealed{rec, toks[0]})
				d.advance(5 * time.Second)
			}
			// attack opens every record it can with the key store as it is now and the KMS,
			// ignoring expiry (it opens "as of" a second before each record's expiry).
			attack := func() int {
				snapshot, err := open(t).List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				wrapped := map[int64]keyring.WrappedKey{}
				for _, wk := range snapshot {
					if wk.App == "app-1" && !wk.Erased && !wk.Pending() {
						wrapped[wk.Period] = wk
					}
				}
				n := 0
				for _, s := range all {
					wk, ok := wrapped[s.rec.Period]
					if !ok {
						continue
					}
					out, err := d.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wk.Ciphertext, EncryptionContext: keyring.EncryptionContext(wk.App, wk.Period)})
					if err != nil {
						continue
					}
					ak, err := envelope.NewAppKey(wk.App, wk.Period, out.Plaintext)
					clear(out.Plaintext)
					if err != nil {
						continue
					}
					if _, err := envelope.OpenWith(ak, s.rec, s.tok, s.rec.Expiry.Add(-time.Second)); err == nil {
						n++
					}
				}
				return n
			}
			if got := attack(); got != len(all) {
				t.Fatalf("before the TTL the offline opener recovered %d of %d values, want all (the attack must work)", got, len(all))
			}
			var lastExpiry time.Time
			for _, s := range all {
				if s.rec.Expiry.After(lastExpiry) {
					lastExpiry = s.rec.Expiry
				}
			}
			setClock := func(t0 time.Time) {
				d.mu.Lock()
				d.clk.Set(t0)
				d.mu.Unlock()
				if _, err := k.DestroyExpired(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if mode.window == 0 {
				// One key per 24 h period: a day after the TTL everything still opens offline.
				setClock(lastExpiry.Add(24 * time.Hour))
				got := attack()
				t.Logf("%s: 24 h after the last expiry the offline opener recovers %d of %d values (keys live until period end + 24 h + 5 min); KMS GenerateDataKey calls: %d",
					mode.name, got, len(all), d.calls[keyring.OpGenerateDataKey])
				if got != len(all) {
					t.Errorf("24 h periods: %d of %d recovered a day after the TTL; the comparison is wrong", got, len(all))
				}
				return
			}
			// Walk the clock past the last expiry 30 s at a time, running the janitor as a running
			// veil does, and note when the last value stops being recoverable.
			recoverable := time.Duration(-1)
			for step := time.Duration(0); step <= mode.window+keyring.WindowGrace+time.Minute; step += 30 * time.Second {
				setClock(lastExpiry.Add(step))
				if attack() == 0 {
					recoverable = step
					break
				}
			}
			t.Logf("%s: the last value became unrecoverable %v after its expiry (window + grace = %v); KMS GenerateDataKey calls for 24 entries: %d",
				mode.name, recoverable, mode.window+keyring.WindowGrace, d.calls[keyring.OpGenerateDataKey])
			if recoverable < 0 || recoverable > mode.window+keyring.WindowGrace {
				t.Errorf("values still recoverable %v after the last expiry, want none after window + grace", mode.window+keyring.WindowGrace+time.Minute)
			}
		})
	}
}
