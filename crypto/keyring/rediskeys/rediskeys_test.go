package rediskeys_test

import (
	"context"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/keystoretest"
	"github.com/veil-project/veil/crypto/keyring/rediskeys"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestConformance(t *testing.T) {
	addr := testsvc.Redis(t)
	keystoretest.Run(t, func(t *testing.T, ns string) keyring.KeyStore {
		s, err := rediskeys.Open(context.Background(), rediskeys.Options{Addr: addr, Prefix: "veil:" + ns + ":"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
