package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testkit"
)

func TestForeignKeyStores(t *testing.T) {
	m := func(ids ...string) []kadm.DescribedGroupMember {
		var out []kadm.DescribedGroupMember
		for _, id := range ids {
			out = append(out, kadm.DescribedGroupMember{ClientID: id})
		}
		return out
	}
	tests := []struct {
		name    string
		members []kadm.DescribedGroupMember
		want    int
	}{
		{"alone", m("veil/ks-aa"), 0},
		{"same store", m("veil/ks-aa", "veil/ks-aa"), 0},
		{"other store", m("veil/ks-aa", "veil/ks-bb"), 1},
		{"two others, one id", m("veil/ks-bb", "veil/ks-bb", "veil/ks-aa"), 1},
		{"not veil", m("veil/ks-aa", "kgo", "veil"), 0},
		{"odd casing is another store", m("VEIL/ks-aa", "veil/ks-AA"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := foreignKeyStores(tt.members, "aa"); len(got) != tt.want {
				t.Errorf("foreignKeyStores = %v, want %d", got, tt.want)
			}
		})
	}
}

// TestRefusesToSealBesideAnotherKeyStore: a process with a file key store sees a second member of
// its consumer group advertising another key store: it refuses to seal (readiness, metric) until
// that member leaves.
func TestRefusesToSealBesideAnotherKeyStore(t *testing.T) {
	c := testkit.Kafka(t, kfake.SeedTopics(3, "ledger.event"))
	newKeys := func() *keyring.Keyring {
		dir := t.TempDir()
		p, err := kmslocal.Open(filepath.Join(dir, "root.key"))
		if err != nil {
			t.Fatal(err)
		}
		ks, err := keyring.NewFileKeyStore(filepath.Join(dir, "keys"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := keyring.New(keyring.Config{KMS: p, KeyID: kmslocal.DefaultKeyID, Store: ks})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close(context.Background()) })
		return k
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mine, other := newKeys(), newKeys()
	myID, err := keyStoreID(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	otherID, _ := keyStoreID(ctx, other)
	if myID == otherID {
		t.Fatalf("two file key stores share the id %s", myID)
	}
	member := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ClientID(keyStoreClientPrefix+id),
			kgo.ConsumerGroup("veil"), kgo.ConsumeTopics("ledger.event"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for ctx.Err() == nil {
				if cl.PollFetches(ctx).IsClientClosed() {
					return
				}
			}
		}()
		return cl
	}
	me := member(myID)
	defer me.Close()

	cfg := config.Default()
	s := &service{cfg: cfg, log: newLogger(io.Discard, "error"), keys: mine, obs: newObserver()}
	adm, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	go s.watchKeyStores(ctx, kadm.NewClient(adm), "veil", myID, 100*time.Millisecond)

	sealing := func() error { _, err := mine.SealingKey(ctx, "app-1"); return err }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("readiness with one key store", func() bool { return conditionOK(s.obs, "keystore") })
	if err := sealing(); err != nil {
		t.Fatalf("SealingKey alone in the group = %v", err)
	}

	stranger := member(otherID)
	waitFor("sealing refused", func() bool { return errors.Is(sealing(), keyring.ErrSealingRefused) })
	if conditionOK(s.obs, "keystore") {
		t.Errorf("readiness keystore = ok while sealing is refused")
	}
	if err := sealing(); !keyring.IsTransient(err) {
		t.Errorf("refused SealingKey = %v, want a transient error (hold, never dead-letter)", err)
	}
	stranger.Close()
	waitFor("sealing allowed after the other member left", func() bool { return sealing() == nil })
	if !conditionOK(s.obs, "keystore") {
		t.Errorf("readiness keystore not ok after the other member left")
	}
}

func conditionOK(o *observer, name string) bool {
	_, failing := o.ready.Ready()
	for _, c := range failing {
		if c.Name == name {
			return false
		}
	}
	return true
}
