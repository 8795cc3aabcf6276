// Package testkit is the setup veil's tests share: a kfake cluster with veil's topics and a
// client of it, a local key stack (local KMS root key, file key store, keyring), a Badger store,
// the two on one clock with a sealer (NewSealing), a sealed value stored as the pipeline stores it
// (SealStored), the ledger table, sample traffic with canaries (SampleRecords) and the canary
// check (ContainsAny), every value of a decoded JSON document (JSONValues), read_committed
// produce/consume helpers, a settable clock, a locked log buffer, polling (WaitFor) and the
// lifecycle of a component (Start, CheckClose, Background). It is for tests only: no non-test file imports it
// (TestOnlyTestsImport enforces it). It imports the packages it sets up, so only external test
// packages (package x_test) of those packages can use it.
package testkit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/sinks/store/badgerstore"
)

// AllTopics are the raw, encrypted and redacted topics of every ledger, the dead-letter topic and
// the audit topic.
func AllTopics() []string {
	var ts []string
	for _, l := range ledgers.All() {
		ts = append(ts, broker.RawTopic(l.Name), broker.EncryptedTopic(l.Name), broker.RedactedTopic(l.Name))
	}
	return append(ts, broker.DeadLetterTopic, broker.AuditTopic)
}

// OutputTopics are the encrypted and redacted topics of every ledger.
func OutputTopics() []string {
	var ts []string
	for _, l := range ledgers.All() {
		ts = append(ts, broker.EncryptedTopic(l.Name), broker.RedactedTopic(l.Name))
	}
	return ts
}

// Kafka starts a one-broker kfake cluster with opts (for example kfake.SeedTopics), closed when
// the test ends.
func Kafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Client returns a client seeded with c's brokers, with opts, closed when the test ends.
func Client(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Keys configures LocalKeys; the zero value is the local KMS under key id "local" and time.Now.
type Keys struct {
	KMS   keyring.KMS      // wraps the data keys; nil: the local KMS with its root key in dir/root.key
	KeyID string           // the KMS key id; "" with KMS nil: "local"
	Clock func() time.Time // the keyring's clock; nil: time.Now
}

// LocalKeys opens a keyring on a file key store in dir/keys, closed when the test ends. local is
// the local KMS it opened, nil when cfg.KMS was given.
func LocalKeys(t testing.TB, dir string, cfg Keys) (kr *keyring.Keyring, local *kmslocal.Provider) {
	t.Helper()
	if cfg.KMS == nil {
		p, err := kmslocal.Open(filepath.Join(dir, "root.key"))
		if err != nil {
			t.Fatal(err)
		}
		local, cfg.KMS = p, p
		if cfg.KeyID == "" {
			cfg.KeyID = "local"
		}
	}
	ks, err := keyring.NewFileKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err = keyring.New(keyring.Config{KMS: cfg.KMS, KeyID: cfg.KeyID, Store: ks, Clock: cfg.Clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close(context.Background()) })
	return kr, local
}

// Badger opens a Badger store in dir/store, closed when the test ends.
func Badger(t testing.TB, dir string, opts ...badgerstore.Option) *badgerstore.Store {
	t.Helper()
	st, err := badgerstore.Open(filepath.Join(dir, "store"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// Ledgers returns the ledger table with the TTL overrides (nil: the default TTLs) and fails the
// test if ledgers.NewTable refuses them.
func Ledgers(t testing.TB, overrides map[string]time.Duration) *ledgers.Table {
	t.Helper()
	table, err := ledgers.NewTable(overrides)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

// WaitFor polls cond every 20 ms until it holds, and fails the test naming what it waited for
// once d has passed.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Produce writes recs synchronously with a fresh client and fails the test on any error.
func Produce(t testing.TB, addrs []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// Reader returns a read_committed consumer of topics from their start (what a downstream reader
// sees: no record of an aborted or open transaction), with opts; the caller closes it.
func Reader(t testing.TB, addrs, topics []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Consume reads topics from the start with read_committed until want records arrived or timeout
// passed, then polls once more for up to grace to catch records beyond want (duplicates).
func Consume(t testing.TB, addrs []string, want int, timeout, grace time.Duration, topics ...string) []*kgo.Record {
	t.Helper()
	cl := Reader(t, addrs, topics)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	gctx, gcancel := context.WithTimeout(context.Background(), grace)
	defer gcancel()
	return append(out, cl.PollFetches(gctx).Records()...)
}

// ContainsAny returns the first of markers (canaries, plaintext values) found in b, or "".
func ContainsAny(b []byte, markers []string) string {
	for _, m := range markers {
		if bytes.Contains(b, []byte(m)) {
			return m
		}
	}
	return ""
}

// Header returns the value of the record's header key, nil when it has none.
func Header(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// Clock is a settable clock a test shares between the keyring, the sealer, the store and the
// servers: Now is the wall clock moved by every Advance so far. The zero value is the wall clock.
type Clock struct{ off atomic.Int64 }

// Now returns the time with every Advance applied.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// Warnings returns up to n WARN or ERROR lines of the slog JSON log at path (veil's warnings carry
// no values), joined by newlines; "" when the file cannot be read.
func Warnings(path string, n int) string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// Buffer is a bytes.Buffer safe for concurrent use: a log destination that the component's
// goroutines write while the test reads it. It is testsvc's, which keeps its servers' output in
// one.
type Buffer = testsvc.Buffer
