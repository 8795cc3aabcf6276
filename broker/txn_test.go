package broker

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// crashCopy copies the data directory as a kill -9 would leave it at this instant: the keeper's
// writes are held while the files are copied, and what it buffered but did not write is lost.
func crashCopy(t *testing.T, e *Embedded) string {
	t.Helper()
	k := e.keep
	k.offMu.Lock()
	defer k.offMu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	to := t.TempDir()
	if err := os.CopyFS(to, os.DirFS(k.dir)); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestEmbeddedCrashMidTransactions runs a consume-transform-produce loop in transactions (input
// on a raw topic, outputs on two kept topics, offsets committed in the transaction) and takes
// crash copies of the data directory while it runs. A broker started on any copy holds, for the
// group's committed input offset n, the outputs of inputs 0..n-1 exactly once in each output
// topic, and nothing else: no transaction is half restored, none is lost, none repeats.
func TestEmbeddedCrashMidTransactions(t *testing.T) {
	ctx := t.Context()
	kms := testKMS(t, 3)
	e, err := startRaw(t, t.TempDir(), kms)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := rawClient(t, e, 1)
	// Compact the transaction log all the time: a crash copy must hold what it needs after any
	// compaction.
	e.keep.mu.Lock()
	e.keep.compactEvery = 3
	e.keep.mu.Unlock()
	const n = 300
	raw := RawTopic("event")
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: raw, Value: []byte("in-" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(e.Addrs()...), kgo.TransactionalID("veil-crash"),
		kgo.ConsumerGroup("veil"), kgo.ConsumeTopics(raw), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.FetchMaxPartitionBytes(200))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	var copies []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond): // leaves the offsets saver room to run
				copies = append(copies, crashCopy(t, e))
			}
		}
	}()
	done, txns := 0, 0
	for done < n {
		txns++
		done += transact(t, sess, 7, func(r *kgo.Record) {
			out := "out-" + strings.TrimPrefix(string(r.Value), "in-")
			for _, topic := range []string{EncryptedTopic("event"), RedactedTopic("event")} {
				sess.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(out)}, nil)
			}
		})
	}
	close(stop)
	wg.Wait()
	// Two saves of the offsets: the second compacts away the intents the first one covers.
	for range 2 {
		if err := e.keep.saveOffsets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	copies = append(copies, crashCopy(t, e))
	if len(copies) < 2 {
		t.Fatalf("only %d crash copies taken", len(copies))
	}
	if ins, _ := readIntents(copies[len(copies)-1]); len(ins) >= txns {
		t.Errorf("txns.log holds %d intents after %d transactions, want it compacted", len(ins), txns)
	}
	sess.Close()
	e.Close(ctx)

	for i, dir := range copies {
		if i%2 != 0 && i != len(copies)-1 {
			continue // a sample keeps the test fast
		}
		func() {
			e, err := startRaw(t, dir, kms)
			if err != nil {
				t.Fatalf("copy %d: %v", i, err)
			}
			defer e.Close(ctx)
			c2, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			offs, err := kadm.NewClient(c2).FetchOffsets(ctx, "veil")
			at := int64(0)
			if err == nil {
				if o, ok := offs.Lookup(raw, 0); ok {
					at = o.At
				}
			}
			for _, topic := range []string{EncryptedTopic("event"), RedactedTopic("event")} {
				got := map[string]int{}
				for _, v := range snapshotPartition(t, e.Addrs(), topic, 0).values {
					got[v]++
				}
				bad := 0
				for j := range int64(n) {
					want := 0
					if j < at {
						want = 1
					}
					if c := got[fmt.Sprintf("out-%d", j)]; c != want {
						if bad++; bad <= 3 {
							t.Errorf("copy %d (input offset %d): %s holds out-%d %d times, want %d", i, at, topic, j, c, want)
						}
					}
				}
			}
			if i == len(copies)-1 && at != n {
				t.Errorf("last copy: input offset %d, want %d", at, n)
			}
		}()
	}
}

// FuzzReadLog: any file content reads without panic into entries whose offsets only grow, and
// what it reads encodes back to a prefix-equivalent file that reads the same.
func FuzzReadLog(f *testing.F) {
	r := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Offset: 3, ProducerID: 9, ProducerEpoch: 2}
	f.Add(append(append(encodeGap(0, 3), encodeRecord(withTxnTag(r), 3)...), encodeMarker(4, 9, 2, true)...))
	f.Add(encodeMarker(0, 1, 0, false))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		path := t.TempDir() + "/p.log"
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ents, err := readLog(path)
		if err != nil {
			t.Fatal(err)
		}
		next := int64(0)
		var again []byte
		for _, e := range ents {
			if e.offset() < next || e.end() <= e.offset() {
				t.Fatalf("entry %d..%d after %d", e.offset(), e.end(), next)
			}
			next = e.end()
			again = append(again, e.encode()...)
		}
		if err := os.WriteFile(path, again, 0o600); err != nil {
			t.Fatal(err)
		}
		ents2, err := readLog(path)
		if err != nil || len(ents2) != len(ents) {
			t.Fatalf("re-encoded file reads %d entries (%v), want %d", len(ents2), err, len(ents))
		}
	})
}

// A record whose own last header has the reserved key comes back as it was, transactional or
// not, and is never taken for a transactional one.
func TestReservedHeaderRoundTrip(t *testing.T) {
	for _, hv := range [][]byte{nil, {}, make([]byte, 10), []byte("x")} {
		for _, txn := range []bool{false, true} {
			r := &kgo.Record{Value: []byte("v"), Offset: 5, ProducerID: 7, ProducerEpoch: 1,
				Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}, {Key: txnHeader, Value: hv}}}
			in := escapeTag(r)
			if txn {
				in = withTxnTag(in)
			}
			path := t.TempDir() + "/p.log"
			if err := os.WriteFile(path, encodeRecord(in, 5), 0o600); err != nil {
				t.Fatal(err)
			}
			ents, err := readLog(path)
			if err != nil || len(ents) != 1 {
				t.Fatalf("readLog = %v, %v", ents, err)
			}
			e := ents[0]
			if e.txn != txn || len(e.rec.Headers) != 2 || e.rec.Headers[1].Key != txnHeader || len(e.rec.Headers[1].Value) != len(hv) {
				t.Errorf("header value %q, txn %v: read back txn %v headers %q", hv, txn, e.txn, e.rec.Headers)
			}
		}
	}
}
