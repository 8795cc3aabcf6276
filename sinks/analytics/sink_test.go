package analytics_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/analytics"

	"github.com/veil-project/veil/internal/testkit"
)

var hour0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newLocal(t *testing.T) *analytics.LocalDir {
	t.Helper()
	w, err := analytics.NewLocalDir(filepath.Join(t.TempDir(), "analytics"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func names(files map[string][]analytics.Row) []string {
	var ns []string
	for n := range files {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Rows of several apps, ledgers and hours, flushed by the interval (the row limit is never
// reached), land once each in their app/ledger/date/hour directory with every column, sensitive
// values redacted, and every offset committed.
func TestSinkWritesPartitionedRowsOnInterval(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	want := make(map[string]*schemas.Entry)
	var recs []*kgo.Record
	n := 0
	for _, app := range []string{"app-1", "app-2", "app-3"} {
		for _, ledger := range []string{"event", "log"} {
			for h := range 3 {
				for i := range 4 {
					n++
					ts := hour0.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Minute + 123*time.Microsecond)
					r, e := entry(t, fmt.Sprintf("e-%03d", n), app, ledger, ts, n%2 == 0, int32(n%3))
					recs = append(recs, r)
					want[e.ID] = e
				}
			}
		}
	}
	c.produce(recs...)

	run := startSink(t, analytics.Config{Brokers: c.addrs, Writer: w, FlushInterval: 100 * time.Millisecond})
	waitFor(t, "every row written", func() bool { return run.sink.Stats().Rows >= uint64(len(recs)) })
	run.stopOK(t)

	files := readTree(t, w.Root())
	checkRows(t, files, want)
	if got := len(files); got != 3*2*3*3 { // app × ledger × hour × source partition
		t.Errorf("wrote %d files, want %d", got, 3*2*3*3)
	}
	for name := range files {
		if !strings.HasSuffix(name, ".parquet") || !strings.Contains(filepath.Base(name), "-o") {
			t.Errorf("file name %s is not p<partition>-o<first>-o<last>.parquet", name)
		}
	}
	for _, ledger := range []string{"event", "log"} {
		var total int64
		for p := range int32(3) {
			total += max(c.committed(analytics.DefaultGroup, broker.RedactedTopic(ledger), p), 0)
		}
		if total != int64(len(recs)/2) {
			t.Errorf("committed offsets of %s sum to %d, want %d", ledger, total, len(recs)/2)
		}
	}
	st := run.sink.Stats()
	if st.WriteErrors != 0 || st.RefusedTokens != 0 || st.Invalid != 0 || st.Bytes == 0 {
		t.Errorf("Stats() = %+v, want no errors and some bytes", st)
	}
	for _, f := range run.flushStats() {
		if f.Err != nil || f.Latency <= 0 {
			t.Errorf("flush %+v, want no error and a latency", f)
		}
	}
}

// A partition is flushed as soon as a file reaches MaxRows, and its offset is committed then;
// the remainder is flushed when the sink stops. A second run resumes from the committed offset,
// and a run from a rewound offset (a crash before commit) rewrites the same rows: same names are
// overwritten, overlapping files of the earlier run are replaced, and no row is duplicated.
func TestSinkRowLimitRestartAndRedelivery(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	topic := broker.RedactedTopic("event")
	want := make(map[string]*schemas.Entry)
	produce := func(from, to int) { c.produceEvents(t, from, to, func(i int) bool { return i%3 == 0 }, want) }
	cfg := analytics.Config{Brokers: c.addrs, Writer: w, Ledgers: []string{"event"}, MaxRows: 10, FlushInterval: time.Hour}
	dir := "app=app-1/ledger=event/date=2026-11-22/hour=10/"

	produce(0, 35)
	run := startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 30)
	if got, want := names(readTree(t, w.Root())), []string{dir + "p0-o0-o9.parquet", dir + "p0-o10-o19.parquet", dir + "p0-o20-o29.parquet"}; !slices.Equal(got, want) {
		t.Fatalf("files before stop = %v, want %v", got, want)
	}
	run.stopOK(t)
	if got := c.committed(analytics.DefaultGroup, topic, 0); got != 35 {
		t.Fatalf("committed after stop = %d, want 35", got)
	}
	for _, f := range run.flushStats() {
		if f.Rows > 10 {
			t.Errorf("flush of %d rows, want at most MaxRows 10", f.Rows)
		}
	}

	// Restart: only the new rows are read.
	produce(35, 45)
	run = startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 45)
	run.stopOK(t)
	if got := run.sink.Stats().Rows; got != 10 {
		t.Errorf("second run wrote %d rows, want 10", got)
	}
	files := readTree(t, w.Root())
	checkRows(t, files, want)
	first, err := os.Stat(filepath.Join(w.Root(), dir, "p0-o20-o29.parquet"))
	if err != nil {
		t.Fatal(err)
	}

	// Re-delivery from offset 20, with other batch boundaries than the first run's (20-29 as
	// before, then 30-39 and 40-44 where the first runs wrote 30-34 and 35-44).
	c.rewind(analytics.DefaultGroup, topic, 0, 20)
	time.Sleep(10 * time.Millisecond) // let the overwritten file's modification time differ
	run = startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 40)
	run.stopOK(t)
	if got := run.sink.Stats().Rows; got != 25 {
		t.Errorf("re-delivery run wrote %d rows, want 25", got)
	}
	files = readTree(t, w.Root())
	checkRows(t, files, want)
	wantNames := []string{dir + "p0-o0-o9.parquet", dir + "p0-o10-o19.parquet", dir + "p0-o20-o29.parquet", dir + "p0-o30-o39.parquet", dir + "p0-o40-o44.parquet"}
	if got := names(files); !slices.Equal(got, wantNames) {
		t.Errorf("files after re-delivery = %v, want %v", got, wantNames)
	}
	second, err := os.Stat(filepath.Join(w.Root(), dir, "p0-o20-o29.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(first, second) {
		t.Errorf("p0-o20-o29.parquet was not rewritten")
	}
	if got := c.committed(analytics.DefaultGroup, topic, 0); got != 45 {
		t.Errorf("committed after re-delivery = %d, want 45", got)
	}
}

// blockWrites makes the writer's directory unwritable and returns the function that undoes it.
// As root, permissions do not stop writes, so a regular file is put where the app directory goes.
func blockWrites(t *testing.T, root, app string) (unblock func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(root, 0o500); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.Chmod(root, 0o750); err != nil {
				t.Fatal(err)
			}
		}
	}
	blocker := filepath.Join(root, "app="+app)
	if err := os.WriteFile(blocker, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(blocker); err != nil {
			t.Fatal(err)
		}
	}
}

// A write error holds back the commit and is retried with backoff; once the directory is
// writable the sink catches up and commits, losing nothing.
func TestSinkWriteErrorHoldsCommit(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	topic := broker.RedactedTopic("event")
	unblock := blockWrites(t, w.Root(), "app-1")
	want := make(map[string]*schemas.Entry)
	var recs []*kgo.Record
	for i := range 5 {
		r, e := entry(t, fmt.Sprintf("e-%d", i), "app-1", "event", hour0, true, 1)
		recs = append(recs, r)
		want[e.ID] = e
	}
	c.produce(recs...)

	run := startSink(t, analytics.Config{
		Brokers: c.addrs, Writer: w, Ledgers: []string{"event"},
		FlushInterval: 50 * time.Millisecond, RetryBackoff: 50 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond,
	})
	waitFor(t, "three failed flushes", func() bool { return run.sink.Stats().WriteErrors >= 3 })
	if got := c.committed(analytics.DefaultGroup, topic, 1); got != -1 {
		t.Fatalf("committed while writes fail = %d, want nothing committed", got)
	}
	for _, f := range run.flushStats() {
		if f.Err == nil {
			t.Fatalf("flush %+v succeeded while writes fail", f)
		}
	}
	unblock()
	c.waitCommitted(t, topic, 1, 5)
	run.stopOK(t)
	checkRows(t, readTree(t, w.Root()), want)
	if st := run.sink.Stats(); st.Flushes != 1 || st.Rows != 5 {
		t.Errorf("Stats() = %+v, want 1 flush of 5 rows", st)
	}
}

// syncBuffer is a log destination safe for the sink's goroutine and the test.
type syncBuffer = testkit.Buffer

// A row that still holds a token is refused and logged by position and field, never by value;
// an undecodable record is skipped; both are committed past so they never stall the partition.
func TestSinkRefusesTokensAndSkipsInvalid(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	topic := broker.RedactedTopic("event")
	good, e := entry(t, "e-good", "app-1", "event", hour0, true, 2)
	tokenized := &schemas.Entry{ID: "e-token", AppID: "app-1", Ledger: "event", Type: "meya.text.event.say", TS: hour0,
		Data: map[string]any{"nested": []any{"ok", "veil:v1:c2VjcmV0LXRva2Vu"}}}
	b, err := tokenized.Encode()
	if err != nil {
		t.Fatal(err)
	}
	wrongLedger, _ := entry(t, "e-log", "app-1", "log", hour0, false, 2)
	wrongLedger.Topic = topic
	c.produce(
		&kgo.Record{Topic: topic, Partition: 2, Value: b},
		good,
		&kgo.Record{Topic: topic, Partition: 2, Value: []byte("not json")},
		wrongLedger,
	)
	var logs syncBuffer
	run := startSink(t, analytics.Config{
		Brokers: c.addrs, Writer: w, Ledgers: []string{"event"}, FlushInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	c.waitCommitted(t, topic, 2, 4)
	run.stopOK(t)
	checkRows(t, readTree(t, w.Root()), map[string]*schemas.Entry{e.ID: e})
	if st := run.sink.Stats(); st.RefusedTokens != 1 || st.Invalid != 2 || st.Rows != 1 {
		t.Errorf("Stats() = %+v, want 1 refused token, 2 invalid, 1 row", st)
	}
	out := logs.String()
	if strings.Contains(out, "veil:v1:") || strings.Contains(out, "c2VjcmV0") {
		t.Errorf("log holds the token: %s", out)
	}
	// The field is named as far as veil's own names go ("data"), never by a member name found
	// inside data, which could be data itself (schemas.ScanTokens).
	if !strings.Contains(out, "token in data\"") || strings.Contains(out, "nested") || !strings.Contains(out, "offset=0") {
		t.Errorf("log does not name the refused row's field and offset, or names a member of data: %s", out)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	w := newLocal(t)
	tests := []struct {
		name string
		cfg  analytics.Config
	}{
		{"no writer", analytics.Config{Brokers: []string{"127.0.0.1:1"}}},
		{"no brokers", analytics.Config{Writer: w}},
		{"unknown ledger", analytics.Config{Brokers: []string{"127.0.0.1:1"}, Writer: w, Ledgers: []string{"nope"}}},
		{"negative interval", analytics.Config{Brokers: []string{"127.0.0.1:1"}, Writer: w, FlushInterval: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := analytics.New(tt.cfg)
			if err == nil {
				s.Close(context.Background())
				t.Fatalf("New(%s) = nil error, want an error", tt.name)
			}
		})
	}
}

// Only committed transactions reach the files: the pipeline writes the redacted topics inside
// Kafka transactions, and an aborted one must not become analytics rows.
func TestSinkReadsCommittedTransactionsOnly(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	txn, err := kgo.NewClient(kgo.SeedBrokers(c.addrs...), kgo.TransactionalID("analytics-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	want := make(map[string]*schemas.Entry)
	for i, commit := range []bool{false, true, false, true} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			r, e := entry(t, fmt.Sprintf("e-%d-%d", i, j), "app-1", "event", hour0, j == 0, 0)
			if err := txn.ProduceSync(t.Context(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if commit {
				want[e.ID] = e
			}
		}
		if err := txn.EndTransaction(t.Context(), kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	run := startSink(t, analytics.Config{Brokers: c.addrs, Writer: w, Ledgers: []string{"event"}, FlushInterval: 50 * time.Millisecond})
	waitFor(t, "the committed rows written", func() bool { return run.sink.Stats().Rows >= 6 })
	run.stopOK(t)
	checkRows(t, readTree(t, w.Root()), want)
}

// When the final flush cannot complete within ShutdownTimeout, Run reports it and commits
// nothing: the rows are read again by the next run.
func TestSinkShutdownWithUnwritableDir(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	topic := broker.RedactedTopic("event")
	t.Cleanup(blockWrites(t, w.Root(), "app-1"))
	r, _ := entry(t, "e-1", "app-1", "event", hour0, true, 0)
	c.produce(r)
	run := startSink(t, analytics.Config{
		Brokers: c.addrs, Writer: w, Ledgers: []string{"event"}, FlushInterval: time.Hour,
		RetryBackoff: 20 * time.Millisecond, ShutdownTimeout: 200 * time.Millisecond,
	})
	waitFor(t, "the record consumed", func() bool { return run.sink.Stats().Records == 1 })
	err := run.stop(t)
	if err == nil {
		t.Fatal("Run = nil with an unwritable directory, want an error")
	}
	if strings.Contains(err.Error(), "★") || strings.Contains(err.Error(), "hello") {
		t.Errorf("Run error holds row content: %v", err)
	}
	if got := c.committed(analytics.DefaultGroup, topic, 0); got != -1 {
		t.Errorf("committed = %d after a failed final flush, want nothing", got)
	}
	if st := run.sink.Stats(); st.WriteErrors < 2 || st.Rows != 0 {
		t.Errorf("Stats() = %+v, want retried write errors and no rows", st)
	}
}

// TestSinkRewindIntoCommittedFileLosesNothing: when a partition's committed offset moves back
// into the middle of a committed file (a group rewound by hand, or a broker that renumbered its
// offsets), the overlapping committed file is kept: its rows below the new start are not read
// again, so removing it would lose them.
func TestSinkRewindIntoCommittedFileLosesNothing(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	topic := broker.RedactedTopic("event")
	want := make(map[string]*schemas.Entry)
	produce := func(from, to int) { c.produceEvents(t, from, to, func(int) bool { return false }, want) }
	cfg := analytics.Config{Brokers: c.addrs, Writer: w, Ledgers: []string{"event"}, MaxRows: 10, FlushInterval: 50 * time.Millisecond}
	produce(0, 10)
	run := startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 10)
	run.stopOK(t)
	c.rewind(analytics.DefaultGroup, topic, 0, 5)
	produce(10, 13)
	run = startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 13)
	run.stopOK(t)
	seen := make(map[string]bool)
	for _, rows := range readTree(t, w.Root()) {
		for _, row := range rows {
			seen[row.ID] = true
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("row %s lost after the rewind", id)
		}
	}
}
