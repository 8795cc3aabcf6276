package keyring_test

import (
	"path/filepath"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/keystoretest"
)

func TestFileKeyStoreConformance(t *testing.T) {
	root := t.TempDir()
	keystoretest.Run(t, func(t *testing.T, ns string) keyring.KeyStore {
		s, err := keyring.NewFileKeyStore(filepath.Join(root, ns))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestStoreIDNeedsNoKMSAndTellsStoresApart: two file key stores (two data dirs) have different
// ids, and the id is read with the KMS down.
func TestStoreIDNeedsNoKMSAndTellsStoresApart(t *testing.T) {
	ids := map[string]bool{}
	for range 2 {
		s, err := keyring.NewFileKeyStore(filepath.Join(t.TempDir(), "keys"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := keyring.New(keyring.Config{KMS: downKMS{}, KeyID: "k", Store: s})
		if err != nil {
			t.Fatal(err)
		}
		id, err := k.StoreID(ctx)
		if err != nil {
			t.Fatalf("StoreID with the KMS down = %v", err)
		}
		again, _ := k.StoreID(ctx)
		if again != id {
			t.Errorf("StoreID changed: %s then %s", id, again)
		}
		ids[id] = true
	}
	if len(ids) != 2 {
		t.Errorf("two file key stores share an id")
	}
}

type downKMS struct{ keyring.KMS }
