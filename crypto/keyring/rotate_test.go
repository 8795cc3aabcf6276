package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
)

func TestKeyVersion(t *testing.T) {
	tests := []struct {
		name   string
		period int64
		gen    int
		want   int64
	}{
		{"generation 0 is the period", p0, 0, p0},
		{"generation 1", p0, 1, 1<<40 + p0},
		{"negative period", -5, 0, -5},
		{"negative period, generation 3", -5, 3, 3<<40 - 5},
		{"max generation", 0, keyring.MaxGeneration, int64(keyring.MaxGeneration) << 40},
		{"lowest period", -1 << 39, 2, 2<<40 - 1<<39},
		{"highest period", 1<<39 - 1, 7, 7<<40 + 1<<39 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := keyring.KeyVersion(tt.period, tt.gen)
			if v != tt.want {
				t.Errorf("KeyVersion(%d, %d) = %d, want %d", tt.period, tt.gen, v, tt.want)
			}
			if p, g := keyring.SplitVersion(v); p != tt.period || g != tt.gen {
				t.Errorf("SplitVersion(%d) = %d, %d, want %d, %d", v, p, g, tt.period, tt.gen)
			}
		})
	}
	for _, bad := range []struct {
		p int64
		g int
	}{{0, -1}, {0, keyring.MaxGeneration + 1}, {1 << 39, 0}, {-1<<39 - 1, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("KeyVersion(%d, %d) did not panic", bad.p, bad.g)
				}
			}()
			keyring.KeyVersion(bad.p, bad.g)
		}()
	}
}

func TestRotateNow(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	other := e.keyring() // another process sharing the key store
	rec0, tok0 := seal(t, k, "app-1", e.clock.Now(), `"before"`)
	if _, err := other.SealingKey(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}

	v, err := k.Rotate(ctx, "app-1")
	if err != nil {
		t.Fatalf("Rotate = %v", err)
	}
	if want := keyring.KeyVersion(p0, 1); v != want {
		t.Fatalf("Rotate = version %d, want %d", v, want)
	}
	key, err := k.SealingKey(ctx, "app-1")
	if err != nil || key.Period != v {
		t.Fatalf("SealingKey after Rotate = %v, %v, want version %d", key, err, v)
	}
	rec1, tok1 := seal(t, k, "app-1", e.clock.Now(), `"after"`)
	if rec1.Period != v {
		t.Errorf("record sealed after Rotate carries version %d, want %d", rec1.Period, v)
	}
	if rec1.Period == rec0.Period {
		t.Errorf("new data sealed under the old key")
	}

	// The other process keeps its cached key until its refresh interval passes, then converges.
	if key, _ := other.SealingKey(ctx, "app-1"); key.Period != p0 {
		t.Errorf("other SealingKey right after Rotate = version %d, want %d (cached)", key.Period, p0)
	}
	e.clock.Advance(keyring.DefaultRefreshInterval)
	if key, err := other.SealingKey(ctx, "app-1"); err != nil || key.Period != v {
		t.Errorf("other SealingKey after the refresh interval = %v, %v, want version %d", key, err, v)
	}

	// Old and new data open everywhere, from cache and from the store.
	for i, kr := range []*keyring.Keyring{k, other, e.keyring()} {
		if got, err := open(kr, rec0, tok0, e.clock.Now()); err != nil || got != `"before"` {
			t.Errorf("keyring %d: open pre-rotation record = %q, %v", i, got, err)
		}
		if got, err := open(kr, rec1, tok1, e.clock.Now()); err != nil || got != `"after"` {
			t.Errorf("keyring %d: open post-rotation record = %q, %v", i, got, err)
		}
	}

	// A second rotation makes generation 2; a fresh process starts sealing with it at once.
	v2, err := other.Rotate(ctx, "app-1")
	if err != nil || v2 != keyring.KeyVersion(p0, 2) {
		t.Fatalf("second Rotate = %d, %v, want version %d", v2, err, keyring.KeyVersion(p0, 2))
	}
	if key, err := e.keyring().SealingKey(ctx, "app-1"); err != nil || key.Period != v2 {
		t.Errorf("fresh keyring SealingKey = %v, %v, want version %d", key, err, v2)
	}

	infos, err := k.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, ki := range infos {
		states = append(states, string(ki.State))
		if ki.Period != p0 || !ki.PeriodStart.Equal(keyring.PeriodStart(p0)) || !ki.DestroyAt.Equal(k.DestroyAt(p0)) {
			t.Errorf("Keys() row %+v: wrong period, start or destroy time", ki)
		}
	}
	if got, want := strings.Join(states, ","), "retired-still-opening,retired-still-opening,active"; got != want {
		t.Errorf("Keys() states = %s, want %s", got, want)
	}

	// The next day generation 0 of the new period seals; rotated keys die with their period.
	e.clock.Advance(keyring.PeriodLength)
	if key, err := k.SealingKey(ctx, "app-1"); err != nil || key.Period != p0+1 {
		t.Errorf("SealingKey next day = %v, %v, want version %d", key, err, p0+1)
	}
	e.clock.Set(k.DestroyAt(p0))
	for _, r := range []*struct{ v int64 }{{p0}, {v}, {v2}} {
		if _, err := k.OpeningKey(ctx, "app-1", r.v); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("OpeningKey(version %d) at DestroyAt = %v, want ErrKeyDestroyed", r.v, err)
		}
	}
	infos, _ = k.Keys(ctx)
	pending := 0
	for _, ki := range infos {
		if ki.State == keyring.StateDestroyPending {
			pending++
		}
	}
	if pending != 3 {
		t.Errorf("Keys() at DestroyAt: %d destroyed-pending, want 3", pending)
	}
	if n, err := k.DestroyExpired(ctx); err != nil || n != 3 {
		t.Errorf("DestroyExpired = %d, %v, want 3", n, err)
	}
	if apps, _ := k.Apps(ctx); len(apps) != 1 || apps[0] != "app-1" {
		t.Errorf("Apps() = %v, want [app-1]", apps)
	}
}

func TestRotateWithoutKeyMakesGenerationZero(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	v, err := k.Rotate(ctx, "app-1")
	if err != nil || v != p0 {
		t.Errorf("Rotate with no key yet = %d, %v, want %d", v, err, p0)
	}
	if _, err := k.Rotate(ctx, "../x"); !errors.Is(err, keyring.ErrInvalidApp) {
		t.Errorf("Rotate(../x) = %v, want ErrInvalidApp", err)
	}
}

func TestEraseSeenByOtherProcess(t *testing.T) {
	e := newEnv(t)
	k, other := e.keyring(), e.keyring()
	old, err := other.SealingKey(ctx, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	kek, _ := other.CachedKEK("app-1", old.Period)
	if _, err := k.EraseApp(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(keyring.DefaultRefreshInterval)
	key, err := other.SealingKey(ctx, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if key == old {
		t.Errorf("other process still seals under the erased key after its refresh interval")
	}
	if !allZero(kek) {
		t.Errorf("other process kept the erased KEK in memory")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestEraseRemovesLeftoverCopies(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	seal(t, k, "app-1", e.clock.Now(), `"x"`)
	seal(t, k, "app-2", e.clock.Now(), `"y"`)
	// A process died between writing its temp file and removing it.
	files, _ := filepath.Glob(filepath.Join(e.dir, "app-1@*.kek"))
	if len(files) != 1 {
		t.Fatalf("key files of app-1 = %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(e.dir, ".tmp-crashed")
	if err := os.WriteFile(leftover, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := k.EraseApp(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(e.dir)
	for _, n := range names {
		if strings.HasPrefix(n.Name(), ".tmp-") {
			t.Errorf("after EraseApp the key store still holds %s", n.Name())
		}
	}
	// What stays of app-1 is its tombstone: no wrapped key.
	if tb, err := os.ReadFile(files[0]); err != nil || bytes.Contains(tb, []byte("ciphertext")) || !bytes.Contains(tb, []byte(`"erased":true`)) {
		t.Errorf("after EraseApp %s = %s, %v, want a tombstone without ciphertext", files[0], tb, err)
	}
	if got := keyFiles(t, e.dir); len(got) != 2 {
		t.Errorf("key store holds %v after erasing app-1, want app-2's key and app-1's tombstone", got)
	}

	// A stale temp file of any app goes when the store is opened.
	stale := filepath.Join(e.dir, ".tmp-stale")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	e.store()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file survived opening the store: %v", err)
	}
}

func TestRewrap(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	rec0, tok0 := seal(t, k, "app-1", e.clock.Now(), `"a"`)
	if _, err := k.Rotate(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	rec1, tok1 := seal(t, k, "app-1", e.clock.Now(), `"b"`)
	recB, tokB := seal(t, k, "app-2", e.clock.Now(), `"c"`)
	before, _ := e.store().List(ctx)

	newRootPath := filepath.Join(t.TempDir(), "new.key")
	newRoot, err := kmslocal.Open(newRootPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := keyring.Rewrap(ctx, e.store(), e.kms, newRoot, "new-root", e.clock.Now())
	if err != nil || res != (keyring.RewrapResult{Rewrapped: 3}) {
		t.Fatalf("Rewrap = %+v, %v, want 3 rewrapped", res, err)
	}
	after, _ := e.store().List(ctx)
	if len(after) != len(before) {
		t.Fatalf("store holds %d keys after Rewrap, want %d", len(after), len(before))
	}
	for _, wk := range after {
		if wk.KeyID != "new-root" {
			t.Errorf("key of %s version %d wrapped under %q, want new-root", wk.App, wk.Period, wk.KeyID)
		}
	}
	if names := keyFiles(t, e.dir); len(names) != 3 {
		t.Errorf("key store holds %v after Rewrap, want 3 files (no backups, no temps)", names)
	}

	// Running it again (as after an interruption) finds every key already rewrapped.
	if res, err := keyring.Rewrap(ctx, e.store(), e.kms, newRoot, "new-root", e.clock.Now()); err != nil || res.Already != 3 || res.Rewrapped != 0 {
		t.Errorf("second Rewrap = %+v, %v, want 3 already", res, err)
	}

	// The old root is gone; a keyring on the new root opens everything sealed before.
	os.RemoveAll(filepath.Dir(e.dir) + "/root")
	reopened, err := kmslocal.Open(newRootPath)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := keyring.New(keyring.Config{KMS: reopened, KeyID: "new-root", Store: e.store(), Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close(context.Background())
	for _, r := range []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"gen 0", func() (string, error) { return open(k2, rec0, tok0, e.clock.Now()) }, `"a"`},
		{"gen 1", func() (string, error) { return open(k2, rec1, tok1, e.clock.Now()) }, `"b"`},
		{"app-2", func() (string, error) { return open(k2, recB, tokB, e.clock.Now()) }, `"c"`},
	} {
		if got, err := r.got(); err != nil || got != r.want {
			t.Errorf("%s: open after Rewrap = %q, %v, want %s", r.name, got, err, r.want)
		}
	}
	// The old root cannot open the rewrapped keys.
	if _, err := e.keyring().OpeningKey(ctx, "app-2", recB.Period); err == nil {
		t.Errorf("a keyring on the old root unwrapped a rewrapped key")
	}
}

func TestRewrapSkipsDestroyed(t *testing.T) {
	e := newEnv(t)
	k := e.keyring()
	seal(t, k, "app-1", e.clock.Now(), `"a"`)
	newRoot, _ := kmslocal.Open(filepath.Join(t.TempDir(), "new.key"))
	if res, err := keyring.Rewrap(ctx, e.store(), e.kms, newRoot, "n", k.DestroyAt(p0)); err != nil || res.Skipped != 1 {
		t.Errorf("Rewrap at DestroyAt = %+v, %v, want 1 skipped", res, err)
	}
}

// keyFiles lists the files of a key store directory but its change counter.
func keyFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != ".changes" {
			out = append(out, e.Name())
		}
	}
	return out
}
