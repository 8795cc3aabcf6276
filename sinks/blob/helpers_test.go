package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testclock"
	"github.com/veil-project/veil/sinks/store"
	"github.com/veil-project/veil/sinks/store/badgerstore"
)

// env is one real keyring (local KMS root, file key store), one Badger store and one Service,
// all on the same test clock. The clock starts at the wall clock so Badger's native TTL agrees.
type env struct {
	t       testing.TB
	clock   *testclock.Clock
	keys    *keyring.Keyring
	sealer  *envelope.Sealer
	store   store.Store
	svc     *Service
	objects Objects
}

func newEnv(t testing.TB, objects Objects, mod ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	c := testclock.New(time.Now().Truncate(time.Second))
	kms, err := kmslocal.Open(filepath.Join(dir, "root", "root.key"))
	if err != nil {
		t.Fatalf("kmslocal.Open = %v", err)
	}
	ks, err := keyring.NewFileKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatalf("NewFileKeyStore = %v", err)
	}
	kr, err := keyring.New(keyring.Config{KMS: kms, KeyID: kmslocal.DefaultKeyID, Store: ks, Clock: c.Now})
	if err != nil {
		t.Fatalf("keyring.New = %v", err)
	}
	t.Cleanup(func() { kr.Close(context.Background()) })
	st, err := badgerstore.Open(filepath.Join(dir, "store"), badgerstore.WithClock(c.Now))
	if err != nil {
		t.Fatalf("badgerstore.Open = %v", err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	if objects == nil {
		d, err := NewDir(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatalf("NewDir = %v", err)
		}
		objects = d
	}
	sealer := envelope.NewSealer(kr, envelope.WithClock(c.Now))
	cfg := Config{Objects: objects, Store: st, Sealer: sealer, ChunkSize: 1 << 10, Now: c.Now}
	for _, m := range mod {
		m(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	return &env{t: t, clock: c, keys: kr, sealer: sealer, store: st, svc: svc, objects: objects}
}

var refCounter struct {
	mu sync.Mutex
	n  byte
}

func newRef() envelope.RefID {
	refCounter.mu.Lock()
	defer refCounter.mu.Unlock()
	refCounter.n++
	return envelope.RefID{0xb1, refCounter.n, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, refCounter.n}
}

// seal seals media for app under a fresh ref, writes the store item and returns the token.
func (e *env) seal(app string, ttl time.Duration, media io.Reader) (string, envelope.RefID) {
	e.t.Helper()
	ref := newRef()
	tok, item, _, err := e.svc.Seal(e.t.Context(), app, "blob", ref, e.clock.Now().Add(ttl), media)
	if err != nil {
		e.t.Fatalf("Seal = %v", err)
	}
	if err := e.store.Put(e.t.Context(), []store.Item{item}); err != nil {
		e.t.Fatalf("store.Put = %v", err)
	}
	return tok.Encode(), ref
}

// open opens token and reads the whole medium.
func (e *env) open(token string) ([]byte, Status, error) {
	e.t.Helper()
	m, st, err := e.svc.Open(e.t.Context(), token)
	if err != nil || st != StatusOK {
		return nil, st, err
	}
	defer m.Close()
	b, err := io.ReadAll(m)
	return b, st, err
}

// checkExpired checks that token (what names it) opens as expired, without an error.
func (e *env) checkExpired(t testing.TB, what, token string) {
	t.Helper()
	if _, st, err := e.open(token); st != StatusExpired || err != nil {
		t.Errorf("Open(%s) = %v, %v; want expired, nil", what, st, err)
	}
}

// checkOpens checks that token (what names it) opens to want, without an error.
func (e *env) checkOpens(t testing.TB, what, token string, want []byte) {
	t.Helper()
	if got, st, err := e.open(token); st != StatusOK || err != nil || !bytes.Equal(got, want) {
		t.Errorf("Open(%s) = %d bytes, %v, %v; want its %d bytes, ok, nil", what, len(got), st, err, len(want))
	}
}

func sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func mustRead(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading = %v", err)
	}
	return b
}

var canary = []byte("CANARY-plaintext-9f2c1e-jane@example.com")

// media returns n bytes starting with the canary, so a leak of plaintext to disk is findable.
func media(n int) []byte {
	b := bytes.Repeat(canary, n/len(canary)+1)
	return b[:n]
}
