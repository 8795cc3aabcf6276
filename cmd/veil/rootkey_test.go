package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-project/veil/crypto/kmslocal"

	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/testkit"
)

// syncBuffer is a log sink safe for the service's goroutines.
type syncBuffer = testkit.Buffer

// TestRootKeyOutsideDataDir: the local root key lives outside the data directory by default, so a
// copy of the data directory opens nothing; a root key an earlier version left in the data
// directory is moved out (logged) and still opens the app keys wrapped under it; two different
// keys refuse to start; the local KMS behind a non-loopback listener is warned about.
func TestRootKeyOutsideDataDir(t *testing.T) {
	addrs := externalBroker(t)
	startWith := func(t *testing.T, data, extra string) (*service, string, error) {
		t.Helper()
		if !strings.Contains(extra, "listen:") {
			extra += "listen: {metrics: \"\"}\n"
		}
		yaml := fmt.Sprintf("kafka:\n  brokers: [%s]\ndata_dir: %s\napps: {app-1: {}}\nanalytics: {enabled: false}\n%s", addrs[0], data, extra)
		path := writeConfig(t, t.TempDir(), yaml)
		cfg, err := parseConfig("run", []string{"-config", path}, os.Stderr, nil)
		if err != nil {
			t.Fatal(err)
		}
		var log syncBuffer
		s, err := start(context.Background(), cfg, &log)
		if err == nil {
			t.Cleanup(func() { s.close(context.Background()) })
		}
		return s, log.String(), err
	}
	// noRootKeyIn closes s (its stores flush what they hold) and fails if any file under dir
	// holds the root key's bytes.
	noRootKeyIn := func(t *testing.T, s *service, dir string, root []byte) {
		t.Helper()
		s.close(context.Background())
		if leakcheck.Dir(t, dir, "the root key's bytes", root) == 0 {
			t.Errorf("no files scanned under %s", dir)
		}
	}

	t.Run("fresh start", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		s, _, err := startWith(t, data, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.keys.SealingKey(t.Context(), "app-1"); err != nil {
			t.Fatal(err)
		}
		want := data + ".kms/root.key"
		if got := s.cfg.RootKeyPath(); got != want {
			t.Errorf("RootKeyPath() = %s, want %s", got, want)
		}
		root, err := os.ReadFile(want)
		if err != nil || len(root) != kmslocal.RootKeySize {
			t.Fatalf("root key at %s: %d bytes, %v", want, len(root), err)
		}
		if _, err := os.Stat(filepath.Join(data, "root.key")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("root.key in the data directory: Stat = %v, want not exist", err)
		}
		noRootKeyIn(t, s, data, root)
	})

	t.Run("legacy key moved and still opens", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		legacy := filepath.Join(data, "root.key")
		// An earlier version: the root key in the data directory, app keys wrapped under it.
		old, log, err := startWith(t, data, "kms: {local: {root_key_path: "+legacy+"}}\n")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "inside the data directory") {
			t.Errorf("no warning for a root key inside the data directory; log:\n%s", log)
		}
		k1, err := old.keys.SealingKey(t.Context(), "app-1")
		if err != nil {
			t.Fatal(err)
		}
		old.close(context.Background())
		before, _ := os.ReadFile(legacy)

		s, log, err := startWith(t, data, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "moved the local root key out of the data directory") || !strings.Contains(log, data+".kms") {
			t.Errorf("no log line for the move; log:\n%s", log)
		}
		if _, err := os.Stat(legacy); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("legacy root key still in the data directory: Stat = %v", err)
		}
		if after, _ := os.ReadFile(s.cfg.RootKeyPath()); !bytes.Equal(after, before) {
			t.Errorf("moved root key differs from the legacy one")
		}
		// The app key wrapped under the legacy root key unwraps under the moved one.
		k2, err := s.keys.SealingKey(t.Context(), "app-1")
		if err != nil {
			t.Fatalf("app key after the move: %v", err)
		}
		nonce := make([]byte, k1.AEAD.NonceSize())
		sealed := k1.AEAD.Seal(nil, nonce, []byte("wrapped before the move"), nil)
		if got, err := k2.AEAD.Open(nil, nonce, sealed, nil); err != nil || string(got) != "wrapped before the move" {
			t.Errorf("app key after the move is not the one wrapped before it: %v", err)
		}
		noRootKeyIn(t, s, data, before)
	})

	t.Run("two different keys refuse", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		if _, err := kmslocal.Open(filepath.Join(data, "root.key")); err != nil {
			t.Fatal(err)
		}
		if _, err := kmslocal.Open(data + ".kms/root.key"); err != nil {
			t.Fatal(err)
		}
		_, _, err := startWith(t, data, "")
		var r *refusedError
		if !errors.As(err, &r) || !errors.Is(r.error, kmslocal.ErrRootKeyConflict) {
			t.Errorf("start with two different root keys = %v, want refused (ErrRootKeyConflict)", err)
		}
	})

	t.Run("non-loopback listener warned", func(t *testing.T) {
		_, log, err := startWith(t, filepath.Join(t.TempDir(), "data"), "listen: {metrics: \"0.0.0.0:0\"}\n")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "the local KMS serves non-loopback listeners") || !strings.Contains(log, "listen.metrics=0.0.0.0:0") {
			t.Errorf("no warning for the local KMS behind 0.0.0.0; log:\n%s", log)
		}
		_, log, err = startWith(t, filepath.Join(t.TempDir(), "data"), "listen: {metrics: \"127.0.0.1:0\"}\n")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log, "non-loopback") {
			t.Errorf("warning on loopback listeners; log:\n%s", log)
		}
	})
}
