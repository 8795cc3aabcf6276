package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/internal/storetest"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/sinks/store"
)

func TestConformance(t *testing.T) {
	addr := testsvc.Redis(t)
	storetest.Run(t, func(t *testing.T, clock func() time.Time) store.Store {
		s, err := Open(t.Context(), Options{Server: redisconn.Server{Addr: addr}, Clock: clock})
		if err != nil {
			t.Fatalf("Open() = %v, want nil", err)
		}
		return s
	})
}

// TestLayout checks the stored form other tools and operators rely on: hash-tagged key, value
// prefixed with the expiry, and Redis's own expiry set to the item's.
func TestLayout(t *testing.T) {
	addr := testsvc.Redis(t)
	ctx := t.Context()
	s, err := Open(ctx, Options{Server: redisconn.Server{Addr: addr}})
	if err != nil {
		t.Fatalf("Open() = %v, want nil", err)
	}
	defer s.Close(context.Background())
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	it := store.Item{App: "app-42", Ref: [16]byte{0xab, 15: 0x01}, Expiry: exp, Value: []byte("sealed")}
	if err := s.Put(ctx, []store.Item{it}); err != nil {
		t.Fatalf("Put() = %v, want nil", err)
	}
	raw := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer raw.Close()
	const k = "veil:{app-42}:r:ab000000000000000000000000000001"
	v, err := raw.Get(ctx, k).Bytes()
	if err != nil {
		t.Fatalf("GET %s = %v, want the item", k, err)
	}
	want := fmt.Sprintf("%016x%x", exp.Unix(), "sealed")
	if got := fmt.Sprintf("%x", v); got != want {
		t.Fatalf("GET %s = %s, want %s", k, got, want)
	}
	at, err := raw.ExpireTime(ctx, k).Result()
	if err != nil || at != time.Duration(exp.Unix())*time.Second {
		t.Fatalf("EXPIRETIME %s = %v, %v, want %d s", k, at, err, exp.Unix())
	}

	// A value too short to hold an expiry is reported, not taken for an item.
	const bad = "veil:{app-42}:r:00000000000000000000000000000000"
	if err := raw.Set(ctx, bad, "x", time.Minute).Err(); err != nil {
		t.Fatalf("SET = %v", err)
	}
	if _, err := s.Get(ctx, "app-42", [16]byte{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Get(malformed) = %v, want ErrMalformed", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections.
	if s, err := Open(ctx, Options{Server: redisconn.Server{Addr: "127.0.0.1:1", Password: "hunter2"}}); err == nil {
		s.Close(ctx)
		t.Fatalf("Open(unreachable) = nil error, want an error")
	} else if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open() error %q contains the password", err)
	}
}

func TestOptionsRedactPassword(t *testing.T) {
	o := Options{Server: redisconn.Server{Addr: "r:6379", Username: "veil", Password: "hunter2"}}
	// Printed's %s is String, its slog text what LogValue logs.
	leakcheck.Printed(t, o, []string{"hunter2"}, "r:6379")
	if got, want := o.String(), "redis{addr=r:6379 user=veil password=[redacted] db=0 tls=false}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func BenchmarkPut(b *testing.B) {
	addr := testsvc.Redis(b)
	s, err := Open(b.Context(), Options{Server: redisconn.Server{Addr: addr}})
	if err != nil {
		b.Fatalf("Open() = %v", err)
	}
	defer s.Close(context.Background())
	storetest.Bench(b, s)
}
