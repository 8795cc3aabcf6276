package analytics_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/analytics"
)

// TestSinkAcrossEmbeddedRestarts runs the sink against the embedded broker and restarts the
// broker between runs, gracefully and by a crash (its data directory copied while it runs): the
// Parquet files hold every record of redacted.event exactly once, and none that a graceful
// restart kept is lost. Transactions (with an aborted one) put markers between the records, which
// a broker that renumbered offsets on restart turned into lost rows (the sink's file names and
// its overlap removal rest on offsets).
func TestSinkAcrossEmbeddedRestarts(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		w := newLocal(t)
		sinkAcrossRestarts(t, w, func() map[string][]analytics.Row { return readTree(t, w.Root()) })
	})
	t.Run("s3", func(t *testing.T) {
		const bucket, prefix = "analytics", "rows"
		cl := startVersity(t, bucket)
		w, err := analytics.NewS3(cl, bucket, prefix)
		if err != nil {
			t.Fatal(err)
		}
		sinkAcrossRestarts(t, w, func() map[string][]analytics.Row { return readBucket(t, cl, bucket, prefix+"/") })
	})
}

func sinkAcrossRestarts(t *testing.T, w analytics.Writer, read func() map[string][]analytics.Row) {
	ctx := context.Background()
	dir := t.TempDir()
	topic := broker.RedactedTopic("event")
	start := func() *broker.Embedded {
		t.Helper()
		e, err := broker.StartEmbedded(ctx, broker.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir,
			Logger: slog.New(slog.DiscardHandler), SyncInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(ctx) })
		return e
	}
	e := start()
	{
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), []broker.LedgerTTL{{Name: "event", TTL: 24 * time.Hour}}, 3); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	produced := 0
	produce := func(round int) {
		t.Helper()
		tx, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.TransactionalID(fmt.Sprintf("pipeline-%d", round)),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		for txn := range 6 {
			commit := txn != 2
			if err := tx.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for i := range 9 {
				r, _ := entry(t, fmt.Sprintf("e-r%d-t%d-%d", round, txn, i), "app-1", "event",
					hour0.Add(time.Duration(round*100+txn*10+i)*time.Second), i%2 == 0, int32(i%3))
				if err := tx.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
				t.Fatal(err)
			}
			if commit {
				produced += 9
			}
		}
	}
	// runSink runs the sink until it has committed every partition up to its last stable offset
	// (less the commit marker that ends each partition).
	runSink := func() {
		t.Helper()
		run := startSink(t, analytics.Config{Brokers: e.Addrs(), Writer: w, Ledgers: []string{"event"}, FlushInterval: 50 * time.Millisecond})
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		waitFor(t, "the sink committed everything", func() bool {
			lsos, err := adm.ListCommittedOffsets(ctx, topic)
			if err != nil {
				return false
			}
			offs, err := adm.FetchOffsets(ctx, analytics.DefaultGroup)
			if err != nil {
				return false
			}
			done := true
			lsos.Each(func(l kadm.ListedOffset) {
				if o, ok := offs.Lookup(topic, l.Partition); l.Offset > 0 && (!ok || o.At < l.Offset-1) {
					done = false
				}
			})
			return done
		})
		run.stopOK(t)
	}

	for round, crash := range []bool{false, true, false} {
		produce(round)
		runSink()
		if crash {
			// Let the keeper catch up with part of the state, then copy the directory as a
			// crash would leave it.
			time.Sleep(150 * time.Millisecond)
			copied := t.TempDir()
			if err := os.CopyFS(copied, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			e.Close(ctx)
			dir = copied
		} else if err := e.Close(ctx); err != nil {
			t.Fatal(err)
		}
		e = start()
	}
	produce(9)
	runSink()

	// Every record of redacted.event, as the broker holds it now, is a row exactly once.
	cl := testkit.Reader(t, e.Addrs(), []string{topic},
		kgo.KeepControlRecords()) // the last offset below the LSO may be a marker: read up to it
	defer cl.Close()
	lsos, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := make(map[int32]int64) // partition → last offset still to read
	lsos.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset - 1
		}
	})
	ids := make(map[string]bool)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	for len(left) > 0 && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			if r.Offset >= left[r.Partition] {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			en, err := schemas.Decode(r.Value, schemas.Limits{})
			if err != nil {
				t.Fatalf("decoding %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			if ids[en.ID] {
				t.Errorf("entry %s is twice in %s", en.ID, topic)
			}
			ids[en.ID] = true
		})
	}
	if len(left) > 0 {
		t.Fatalf("%s not read to its end in 20 s: %v left", topic, left)
	}
	files := read()
	seen := make(map[string]int)
	for _, rows := range files {
		for _, row := range rows {
			seen[row.ID]++
		}
	}
	for id, n := range seen {
		if !ids[id] {
			t.Errorf("row %s is not in %s", id, topic)
		}
		if n != 1 {
			t.Errorf("row %s written %d times, want once", id, n)
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("%d distinct rows in Parquet, %d records in %s; want one row per record", len(seen), len(ids), topic)
	}
	// Graceful restarts keep everything; the crash may lose at most the last moment's records.
	if len(seen) < produced-9*6 || len(seen) > produced {
		t.Errorf("%d rows after restarts, want about the %d committed entries", len(seen), produced)
	}
	t.Logf("%d committed entries produced, %d records kept, %d rows", produced, len(ids), len(seen))
}
