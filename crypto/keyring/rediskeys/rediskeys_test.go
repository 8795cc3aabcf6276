package rediskeys_test

import (
	"context"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/rediskeys"
	"github.com/veil-project/veil/internal/keystoretest"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestConformance(t *testing.T) {
	addr := testsvc.Redis(t)
	keystoretest.Run(t, func(t *testing.T, ns string) keyring.KeyStore {
		s, err := rediskeys.Open(context.Background(), rediskeys.Options{Server: redisconn.Server{Addr: addr}, Prefix: "veil:" + ns + ":"})
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
	s, err := rediskeys.Open(context.Background(), rediskeys.Options{Server: redisconn.Server{Addr: testsvc.Redis(t)}, Prefix: "veil:close:"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close #%d = %v, want nil", i+1, err)
		}
	}
}

// TestOptionsRedactPassword: the options print and log the server (without its password) and
// the prefix.
func TestOptionsRedactPassword(t *testing.T) {
	o := rediskeys.Options{Server: redisconn.Server{Addr: "r:6379", Username: "veil", Password: "hunter2"}, Prefix: "veil:k:"}
	leakcheck.Printed(t, o, []string{"hunter2"}, "r:6379", "veil:k:")
	if got, want := o.String(), "rediskeys{addr=r:6379 user=veil password=[redacted] db=0 tls=false prefix=veil:k:}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
