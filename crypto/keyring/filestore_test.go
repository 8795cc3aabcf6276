package keyring_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/keystoretest"
	"github.com/veil-project/veil/internal/nametest"
)

func TestValidateApp(t *testing.T) {
	// 64, not MaxAppLen: the limit is pinned here, as key file names and store keys rely on it.
	nametest.RunCheck(t, 64, "ValidateApp", keyring.ValidateApp, keyring.ErrInvalidApp)
}

func newStore(t *testing.T) (*keyring.FileKeyStore, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := keyring.NewFileKeyStore(dir)
	if err != nil {
		t.Fatalf("NewFileKeyStore = %v", err)
	}
	return s, dir
}

func wrapped(app string, period int64, ct string) keyring.WrappedKey {
	return keyring.WrappedKey{App: app, Period: period, KeyID: "kid", Ciphertext: []byte(ct), DestroyAt: time.Unix(1_800_000_000, 0).UTC()}
}

// TestFileKeyStoreFiles: what only a file store can get wrong (the round trip, put-if-absent,
// Delete and app-id checks are the conformance suite's, which runs on the file store too): stray
// files are ignored by List, the directory is 0700 and key files 0600, no temp file stays.
func TestFileKeyStoreFiles(t *testing.T) {
	s, dir := newStore(t)
	for _, k := range []keyring.WrappedKey{wrapped("a.b-c", -3, "ct-1"), wrapped("a", 7, "ct-3")} {
		if _, err := s.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Tombstone(ctx, "a", 8, time.Unix(1_800_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad@x.kek"), []byte("x"), 0o600)
	all, err := s.List(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("List = %d keys, %v, want 3 (stray files ignored)", len(all), err)
	}

	di, _ := os.Stat(dir)
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("store dir mode = %#o, want 0700", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left behind", e.Name())
		}
		if !strings.HasSuffix(e.Name(), ".kek") || e.Name() == "bad@x.kek" {
			continue
		}
		fi, _ := e.Info()
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("key file %s mode = %#o, want 0600", e.Name(), got)
		}
	}
}

func TestFileKeyStoreConcurrentCreateAgrees(t *testing.T) {
	_, dir := newStore(t)
	keystoretest.ConcurrentCreate(t, 16, func(i int) (keyring.WrappedKey, error) {
		s, err := keyring.NewFileKeyStore(dir) // one store per "process", opened concurrently too
		if err != nil {
			return keyring.WrappedKey{}, err
		}
		return s.Create(ctx, wrapped("app", 5, fmt.Sprintf("ct-%d", i)))
	})
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("store dir holds %d files, want 1", len(entries))
	}
}

func TestFileKeyStoreRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"not json", "{"},
		{"other app", `{"v":1,"app":"b","period":1,"key_id":"k","ciphertext":"eA==","destroy_at":"2027-01-01T00:00:00Z"}`},
		{"other period", `{"v":1,"app":"a","period":2,"key_id":"k","ciphertext":"eA==","destroy_at":"2027-01-01T00:00:00Z"}`},
		{"other version", `{"v":2,"app":"a","period":1,"key_id":"k","ciphertext":"eA==","destroy_at":"2027-01-01T00:00:00Z"}`},
		{"no ciphertext", `{"v":1,"app":"a","period":1,"key_id":"k","destroy_at":"2027-01-01T00:00:00Z"}`},
		{"oversized", `{"v":1,"app":"a","period":1,"key_id":"` + strings.Repeat("k", 70_000) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := newStore(t)
			if err := os.WriteFile(filepath.Join(dir, "a@1.kek"), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "a", 1); err == nil || errors.Is(err, keyring.ErrKeyNotFound) {
				t.Errorf("Get of %s file = %v, want a decoding error", tt.name, err)
			}
			if _, err := s.List(ctx); err == nil {
				t.Errorf("List with a %s file = nil error, want error", tt.name)
			}
		})
	}
}
