package redisconn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	addr := testsvc.Redis(t)
	c, err := redisconn.Open(ctx, &redis.Options{Addr: addr})
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
	c, err := redisconn.Open(context.Background(), &redis.Options{Addr: dead, Password: pw, MaxRetries: -1})
	if err == nil || c != nil {
		t.Fatalf("Open(%s) = %v, %v; want an error", dead, c, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "connecting to redis at "+dead) || strings.Contains(msg, pw) {
		t.Errorf("error %q: want it to name %s and not the password", msg, dead)
	}
}
