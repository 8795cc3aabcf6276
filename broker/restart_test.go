package broker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionLog is what a consumer that keeps its offsets outside Kafka sees of one partition.
type partitionLog struct {
	values  map[int64]string // offset → value, read_committed
	start   int64            // log start offset
	end     int64            // high watermark
	lastOff int64            // last stable offset
}

func snapshotPartition(t *testing.T, addrs []string, topic string, p int32) partitionLog {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the last offset below the LSO may be a marker: read up to it
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	pl := partitionLog{values: make(map[int64]string)}
	starts, err := adm.ListStartOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	lsos, err := adm.ListCommittedOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := starts.Lookup(topic, p)
	e, _ := ends.Lookup(topic, p)
	l, _ := lsos.Lookup(topic, p)
	pl.start, pl.end, pl.lastOff = s.Offset, e.Offset, l.Offset
	// Read until the last offset below the LSO was seen (a record, a marker), not until a poll
	// comes back empty: under load an empty poll proves nothing.
	seen := pl.start - 1
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for seen < pl.lastOff-1 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			seen = max(seen, r.Offset)
			if !r.Attrs.IsControl() {
				pl.values[r.Offset] = string(r.Value)
			}
		})
	}
	if seen < pl.lastOff-1 {
		t.Fatalf("%s/%d: read up to %d of %d in 20 s", topic, p, seen, pl.lastOff)
	}
	return pl
}

// resumeFrom reads, from offset at, what a consumer that stored at as its next offset gets.
func resumeFrom(t *testing.T, addrs []string, topic string, p int32, at int64, want int) []string {
	t.Helper()
	return pollValues(t, want, kgo.SeedBrokers(addrs...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(at)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())) // an offset out of range would re-read all: visible
}

// waitKept waits until the keeper's file of topic/p reaches offset end.
func waitKept(t *testing.T, dir, topic string, p int32, end int64) {
	t.Helper()
	k := keeper{dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := readLog(k.recordPath(tp{topic, p}))
		if len(ents) > 0 && ents[len(ents)-1].end() >= end {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keeper did not write %s/%d up to %d in time", topic, p, end)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEmbeddedOffsetsStable restarts the broker between produces, gracefully and by a crash
// (the data directory copied while the broker runs), and checks that every record keeps its
// offset, that log start and end offsets are unchanged, that a consumer keeping its offsets
// outside Kafka resumes exactly, that group offsets come back untranslated, and that an
// integration topic keeps its offsets but never its (decrypted) values on disk.
func TestEmbeddedOffsetsStable(t *testing.T) {
	const (
		integration = "integrations.desk"
		canary      = "my email is jane.canary@example.com"
	)
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			e, cl, adm := startTest(t, dir)
			if err := EnsureTopics(ctx, adm, testLedgers[:1], 1); err != nil {
				t.Fatal(err)
			}
			if _, err := adm.CreateTopic(ctx, 1, -1, nil, integration); err != nil {
				t.Fatal(err)
			}
			// retention.ms 1h: records older than that are gone after the restart.
			if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: ptr("3600000")}}, AuditTopic); err != nil {
				t.Fatal(err)
			}
			enc := EncryptedTopic("event")
			round := 0
			// produce writes transactions (one aborted), plain records, integration deliveries
			// and audit records, some of them past retention.
			produce := func(addrs []string) {
				t.Helper()
				round++
				tx, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID(fmt.Sprintf("tx-%d", round)))
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Close()
				for i, commit := range []bool{true, false, true, true} {
					if err := tx.BeginTransaction(); err != nil {
						t.Fatal(err)
					}
					for j := range 3 {
						r := &kgo.Record{Topic: enc, Value: fmt.Appendf(nil, "r%d-t%d-%d-%v", round, i, j, commit)}
						if err := tx.ProduceSync(ctx, r).FirstErr(); err != nil {
							t.Fatal(err)
						}
					}
					if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
						t.Fatal(err)
					}
				}
				pl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
				if err != nil {
					t.Fatal(err)
				}
				defer pl.Close()
				old := time.Now().Add(-2 * time.Hour)
				for i := range 3 {
					rs := []*kgo.Record{
						{Topic: enc, Value: fmt.Appendf(nil, "r%d-plain-%d", round, i)},
						{Topic: integration, Value: fmt.Appendf(nil, "%s r%d-%d", canary, round, i)},
					}
					if round == 1 {
						rs = append(rs, &kgo.Record{Topic: AuditTopic, Value: fmt.Appendf(nil, "old-%d", i), Timestamp: old})
					} else {
						rs = append(rs, &kgo.Record{Topic: AuditTopic, Value: fmt.Appendf(nil, "r%d-audit-%d", round, i)})
					}
					if err := pl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
			}
			restart := func(e *Embedded, cl *kgo.Client) (*Embedded, *kgo.Client, *kadm.Client) {
				t.Helper()
				from := dir
				if crash {
					for _, topic := range []string{enc, integration, AuditTopic} {
						pi := e.Cluster().PartitionInfo(topic, 0)
						waitKept(t, dir, topic, 0, pi.HighWatermark)
					}
					waitFile(t, filepath.Join(dir, offsetsFile), "downstream")
					from = t.TempDir()
					if err := os.CopyFS(from, os.DirFS(dir)); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.Close(ctx); err != nil {
					t.Fatal(err)
				}
				cl.Close()
				dir = from
				return startTest(t, dir)
			}

			produce(e.Addrs())
			before := map[string]partitionLog{}
			for _, topic := range []string{enc, integration, AuditTopic} {
				before[topic] = snapshotPartition(t, e.Addrs(), topic, 0)
			}
			if len(before[enc].values) != 3*3+3 || before[enc].end <= int64(len(before[enc].values)) {
				t.Fatalf("before restart: %d values, end %d; want 12 values and gaps", len(before[enc].values), before[enc].end)
			}
			// A group committed in the middle of the topic, past a marker.
			groupAt := before[enc].end - 3
			if _, err := adm.CommitOffsets(ctx, "downstream", kadm.Offsets{enc: {0: {Topic: enc, Partition: 0, At: groupAt, LeaderEpoch: -1}}}); err != nil {
				t.Fatal(err)
			}

			e, cl, adm = restart(e, cl)
			for _, topic := range []string{enc, integration, AuditTopic} {
				after := snapshotPartition(t, e.Addrs(), topic, 0)
				b := before[topic]
				if after.end != b.end || after.lastOff != b.lastOff {
					t.Errorf("%s after restart: end %d, LSO %d; want %d, %d", topic, after.end, after.lastOff, b.end, b.lastOff)
				}
				switch topic {
				case integration:
					if len(after.values) != 0 || after.start != b.end {
						t.Errorf("%s after restart: %d values from %d; want none, log start %d", topic, len(after.values), after.start, b.end)
					}
				case AuditTopic:
					// The three records past retention are gone; their offsets are not reused.
					if after.start != 3 || len(after.values) != 0 {
						t.Errorf("%s after restart: start %d, values %v; want start 3, none", topic, after.start, after.values)
					}
				default:
					if after.start != b.start || !mapsEqual(after.values, b.values) {
						t.Errorf("%s after restart: start %d values %v; want start %d values %v", topic, after.start, after.values, b.start, b.values)
					}
				}
			}
			offs, err := adm.FetchOffsets(ctx, "downstream")
			if err != nil {
				t.Fatal(err)
			}
			if o, _ := offs.Lookup(enc, 0); o.At != groupAt {
				t.Errorf("group offset after restart = %d, want %d unchanged", o.At, groupAt)
			}

			// A consumer that stored the end offset resumes with exactly the new records.
			stored := before[enc].end
			produce(e.Addrs())
			want := []string{}
			for i, commit := range []bool{true, false, true, true} {
				for j := range 3 {
					if commit {
						want = append(want, fmt.Sprintf("r2-t%d-%d-true", i, j))
					}
				}
			}
			for i := range 3 {
				want = append(want, fmt.Sprintf("r2-plain-%d", i))
			}
			if got := resumeFrom(t, e.Addrs(), enc, 0, stored, len(want)); !slices.Equal(got, want) {
				t.Errorf("resumed from %d after restart: %v, want %v", stored, got, want)
			}
			mid := snapshotPartition(t, e.Addrs(), enc, 0)
			midInt := snapshotPartition(t, e.Addrs(), integration, 0)

			// A second restart keeps the offsets of both runs.
			e, cl, _ = restart(e, cl)
			after := snapshotPartition(t, e.Addrs(), enc, 0)
			if after.end != mid.end || !mapsEqual(after.values, mid.values) {
				t.Errorf("after second restart: end %d values %v; want end %d values %v", after.end, after.values, mid.end, mid.values)
			}
			if got := snapshotPartition(t, e.Addrs(), integration, 0); len(got.values) != 0 || got.end != midInt.end {
				t.Errorf("integration topic after second restart: %v up to %d, want nothing kept, end %d", got.values, got.end, midInt.end)
			}
			if err := e.Close(ctx); err != nil {
				t.Fatal(err)
			}
			assertNotOnDisk(t, dir, "jane.canary")
		})
	}
}

func mapsEqual(a, b map[int64]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func waitFile(t *testing.T, path, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(substr)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held %q", path, substr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
