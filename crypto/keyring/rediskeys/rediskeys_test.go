package rediskeys_test

import (
	"context"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/rediskeys"
	"github.com/veil-project/veil/internal/keystoretest"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestConformance(t *testing.T) {
	addr := testsvc.Redis(t)
	keystoretest.Run(t, func(t *testing.T, ns string) keyring.KeyStore {
		s, err := rediskeys.Open(context.Background(), rediskeys.Options{Addr: addr, Prefix: "veil:" + ns + ":"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	})
}

// TestCloseTwice: a second Close returns the first one's result (nil), not go-redis's "client
// is closed".
func TestCloseTwice(t *testing.T) {
	s, err := rediskeys.Open(context.Background(), rediskeys.Options{Addr: testsvc.Redis(t), Prefix: "veil:close:"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close #%d = %v, want nil", i+1, err)
		}
	}
}
