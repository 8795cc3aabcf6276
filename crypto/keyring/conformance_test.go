package keyring_test

import (
	"path/filepath"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/keystoretest"
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
