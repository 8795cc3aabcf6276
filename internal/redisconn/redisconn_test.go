package redisconn_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	addr := testsvc.Redis(t)
	c, err := redisconn.Open(ctx, redisconn.Server{Addr: addr})
	if err != nil {
		t.Fatalf("Open(%s) = %v", addr, err)
	}
	defer c.Close()
	o := c.Options()
	if o.Protocol != 2 || !o.DisableIdentity {
		t.Errorf("client protocol %d, identity disabled %t; want RESP2 without identity", o.Protocol, o.DisableIdentity)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("SET on the opened client: %v", err)
	}
}

// Nothing listens: Open fails, names the address and never the password, and closes the client.
func TestOpenUnreachable(t *testing.T) {
	dead := testsvc.FreeAddr(t)
	const pw = "hunter2-secret"
	c, err := redisconn.Open(context.Background(), redisconn.Server{Addr: dead, Password: pw})
	if err == nil || c != nil {
		t.Fatalf("Open(%s) = %v, %v; want an error", dead, c, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "connecting to redis at "+dead) || strings.Contains(msg, pw) {
		t.Errorf("error %q: want it to name %s and not the password", msg, dead)
	}
}

// TestServerRedacts: every way a Server prints or logs shows the address and user and never the
// password; a Server without one does not claim one.
func TestServerRedacts(t *testing.T) {
	s := redisconn.Server{Addr: "r:6379", Username: "veil", Password: "hunter2-secret", DB: 3, TLS: &tls.Config{}}
	leakcheck.Printed(t, s, []string{s.Password}, "r:6379", "veil")
	if got, want := s.String(), "addr=r:6379 user=veil password=[redacted] db=3 tls=true"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (redisconn.Server{Addr: "r:6379"}).String(), "addr=r:6379 user= db=0 tls=false"; got != want {
		t.Errorf("String() without a password = %q, want %q", got, want)
	}
}
