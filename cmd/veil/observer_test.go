package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
)

// brokerReady reports the broker condition of o's readiness.
func brokerReady(o *observer) bool {
	_, failing := o.ready.Ready()
	for _, c := range failing {
		if c.Name == "broker" {
			return false
		}
	}
	return true
}

// TestWatchTracksBroker: with no records flowing, the watch loop alone turns the broker's
// readiness false when the broker goes away and true again when it is back on the same port.
func TestWatchTracksBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(c.ListenAddrs()[0])
	port, _ := strconv.Atoi(portStr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p, err := kmslocal.Open(t.TempDir() + "/root.key")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keyring.NewFileKeyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.New(keyring.Config{KMS: p, KeyID: kmslocal.DefaultKeyID, Store: ks})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close(context.Background())
	o := newObserver()
	o.Dependency("broker", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.watch(ctx, kadm.NewClient(cl), "g", keys, 200*time.Millisecond)

	wait := func(want bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); brokerReady(o) != want; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("broker readiness = %v, want %v", !want, want)
			}
		}
	}
	wait(true)
	c.Close()
	wait(false)
	c2, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	wait(true)
}
