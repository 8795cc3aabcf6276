package broker

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/internal/leakcheck"
)

func TestTopicNames(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"raw", RawTopic("event"), "ledger.event"},
		{"encrypted", EncryptedTopic("http"), "encrypted.http"},
		{"redacted", RedactedTopic("blob"), "redacted.blob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("topic = %q, want %q", tt.got, tt.want)
			}
			if l, ok := LedgerOf(tt.got); !ok || tt.got[len(tt.got)-len(l):] != l {
				t.Errorf("LedgerOf(%q) = %q, %v", tt.got, l, ok)
			}
		})
	}
	if !IsRaw("ledger.x") || IsRaw("encrypted.x") || IsRaw(DeadLetterTopic) {
		t.Error("IsRaw misclassifies")
	}
	if _, ok := LedgerOf(AuditTopic); ok {
		t.Errorf("LedgerOf(%q) ok, want not a ledger topic", AuditTopic)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startTest(t *testing.T, dir string) (*Embedded, *kgo.Client, *kadm.Client) {
	t.Helper()
	ctx := t.Context()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(), SyncInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return e, cl, kadm.NewClient(cl)
}

var testLedgers = []LedgerTTL{{"event", 24 * time.Hour}, {"http", time.Hour}, {"bot", 3 * time.Second}}

func TestEnsureTopicsAndRetention(t *testing.T) {
	_, _, adm := startTest(t, "")
	ctx := t.Context()
	for i := range 2 { // idempotent
		if err := EnsureTopics(ctx, adm, testLedgers, 2); err != nil {
			t.Fatalf("EnsureTopics (call %d): %v", i+1, err)
		}
	}
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range Topics(testLedgers) {
		td, ok := tds[topic]
		if !ok {
			t.Errorf("topic %s missing after EnsureTopics", topic)
			continue
		}
		if got := len(td.Partitions); got != 2 {
			t.Errorf("topic %s has %d partitions, want 2", topic, got)
		}
	}
	rc, err := adm.DescribeTopicConfigs(ctx, RawTopic("bot"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc[0].Configs {
		if c.Key == "retention.ms" && (c.Value == nil || *c.Value != "3000") {
			t.Errorf("ledger.bot retention.ms = %v, want 3000", c.Value)
		}
	}
	vs, err := CheckRetention(ctx, adm, testLedgers)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 {
		t.Errorf("CheckRetention after EnsureTopics = %v, want none", vs)
	}
}

func TestCheckRetentionViolations(t *testing.T) {
	_, _, adm := startTest(t, "")
	ctx := t.Context()
	create := func(topic string, cfg map[string]*string) {
		t.Helper()
		if _, err := adm.CreateTopic(ctx, 1, -1, cfg, topic); err != nil {
			t.Fatal(err)
		}
	}
	create(RawTopic("event"), map[string]*string{"retention.ms": ptr("172800000")}) // 48h > 24h
	create(RawTopic("http"), map[string]*string{"retention.ms": ptr("-1"), "segment.ms": ptr("1000")})
	create(RawTopic("bot"), map[string]*string{"retention.ms": ptr("1000"), "cleanup.policy": ptr("compact"), "segment.ms": ptr("1000")})
	ledgers := append(slices.Clone(testLedgers), LedgerTTL{"log", time.Hour})
	vs, err := CheckRetention(ctx, adm, ledgers)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ topic, setting string }
	got := make(map[key]bool)
	for _, v := range vs {
		got[key{v.Topic, v.Setting}] = true
		if v.String() == "" {
			t.Errorf("Violation.String() empty for %+v", v)
		}
	}
	want := []key{
		{"ledger.event", "retention.ms"}, // too long
		{"ledger.event", "segment.ms"},   // kfake default 7 days
		{"ledger.http", "retention.ms"},  // infinite
		{"ledger.bot", "cleanup.policy"}, // compaction only
		{"ledger.log", ""},               // missing
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("CheckRetention: no violation for %v; got %v", w, vs)
		}
	}
	if len(vs) != len(want) {
		t.Errorf("CheckRetention returned %d violations, want %d: %v", len(vs), len(want), vs)
	}
	// EnsureTopics leaves existing topics alone (already-exists is fine).
	if err := EnsureTopics(ctx, adm, ledgers, 1); err != nil {
		t.Fatalf("EnsureTopics over existing topics: %v", err)
	}
	if err := EnsureTopics(ctx, adm, []LedgerTTL{{"x", 0}}, 1); err == nil {
		t.Error("EnsureTopics with a zero TTL succeeded, want an error")
	}
}

// TestTransactions runs the pipeline's shape: a GroupTransactSession consumes a raw topic and
// produces to an output topic; a read_committed consumer sees committed records exactly once
// and none of an aborted transaction.
func TestTransactions(t *testing.T) {
	e, cl, adm := startTest(t, "")
	ctx := t.Context()
	if err := EnsureTopics(ctx, adm, testLedgers[:1], 1); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: RawTopic("event"), Value: fmt.Appendf(nil, "in-%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(e.Addrs()...),
		kgo.TransactionalID("veil-test"),
		kgo.ConsumerGroup("veil"),
		kgo.ConsumeTopics(RawTopic("event")),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	// One aborted transaction first: its records must never be visible.
	if err := sess.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := sess.ProduceSync(ctx, &kgo.Record{Topic: EncryptedTopic("event"), Value: []byte("aborted")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.End(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}

	seen := 0
	for seen < n {
		seen += transact(t, sess, 0, func(r *kgo.Record) {
			out := &kgo.Record{Topic: EncryptedTopic("event"), Value: bytes.Replace(r.Value, []byte("in"), []byte("out"), 1)}
			sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("producing: %v", err)
				}
			})
		})
	}

	got := readAll(t, e.Addrs(), EncryptedTopic("event"), n)
	for i := range n {
		if want := fmt.Sprintf("out-%d", i); !slices.Contains(got, want) {
			t.Errorf("read_committed output lacks %q", want)
		}
	}
	if slices.Contains(got, "aborted") || len(got) != n {
		t.Errorf("read_committed output = %d records (%v), want exactly the %d committed", len(got), got, n)
	}
	offs, err := adm.FetchOffsets(ctx, "veil")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup(RawTopic("event"), 0); o.At != n {
		t.Errorf("committed offset = %d, want %d", o.At, n)
	}
}

// transact runs one transaction of sess, as the pipeline does: it polls (at most limit records, no
// limit when limit <= 0; 10 s at the most), begins, calls each for every record polled and commits.
// Any error, or a transaction that did not commit, fails t. It returns the number of records.
func transact(t *testing.T, sess *kgo.GroupTransactSession, limit int, each func(*kgo.Record)) int {
	t.Helper()
	ctx := t.Context()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	fs := sess.PollRecords(pctx, limit)
	cancel()
	if err := fs.Err0(); err != nil {
		t.Fatalf("polling: %v", err)
	}
	if err := sess.Begin(); err != nil {
		t.Fatal(err)
	}
	n := 0
	fs.EachRecord(func(r *kgo.Record) {
		each(r)
		n++
	})
	if committed, err := sess.End(ctx, kgo.TryCommit); err != nil || !committed {
		t.Fatalf("End = %v, %v; want committed", committed, err)
	}
	return n
}

// readAll reads want records (read_committed) from topic and waits briefly for extras.
func readAll(t *testing.T, addrs []string, topic string, want int) []string {
	t.Helper()
	return pollValues(t, want, kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
}

// pollValues consumes with opts until it has want record values (10 s at most), then polls
// 300 ms more so that extra records show too.
func pollValues(t *testing.T, want int, opts ...kgo.Opt) []string {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		wait := time.Until(deadline)
		if len(got) >= want {
			wait = 300 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		if len(got) >= want && fs.NumRecords() == 0 {
			break
		}
	}
	return got
}

// TestEmbeddedRestart checks what survives a restart: topics (raw ones with their retention),
// committed records of non-raw topics with keys, headers and timestamps, group offsets on them,
// and that no raw record ever reaches the data directory.
func TestEmbeddedRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	const canary = "CANARY-raw-plaintext-7f3a"
	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)

	e, cl, adm := startTest(t, dir)
	if err := EnsureTopics(ctx, adm, testLedgers, 1); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: RawTopic("event"), Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Transactional output with an aborted transaction in between, so offsets have gaps.
	tx, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.TransactionalID("t1"))
	if err != nil {
		t.Fatal(err)
	}
	produceTx := func(commit bool, vals ...string) {
		t.Helper()
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			r := &kgo.Record{Topic: EncryptedTopic("event"), Key: []byte("thread-" + v), Value: []byte(v), Timestamp: ts,
				Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(v)}}}
			if err := tx.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	produceTx(true, "a", "b")
	produceTx(false, "x")
	produceTx(true, "c", "d")
	tx.Close()

	// A downstream group consumed a, b, c: its next offset is d's.
	d := readOffsets(t, e.Addrs(), EncryptedTopic("event"))
	if _, err := adm.CommitOffsets(ctx, "downstream", kadm.OffsetsFromRecords(kgo.Record{Topic: EncryptedTopic("event"), Partition: 0, Offset: d["d"] - 1})); err != nil {
		t.Fatal(err)
	}
	// The raw topic's group offset is not kept.
	if _, err := adm.CommitOffsets(ctx, "veil", kadm.OffsetsFromRecords(kgo.Record{Topic: RawTopic("event"), Offset: 0})); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	cl.Close()

	assertNotOnDisk(t, dir, canary)

	e2, _, adm2 := startTest(t, dir)
	got := readAll(t, e2.Addrs(), EncryptedTopic("event"), 4)
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("after restart encrypted.event = %v, want %v", got, want)
	}
	recs := readRecordsFrom(t, e2.Addrs(), EncryptedTopic("event"))
	for _, r := range recs {
		if string(r.Key) != "thread-"+string(r.Value) || len(r.Headers) != 1 || !r.Timestamp.Equal(ts) {
			t.Errorf("restored record %q: key %q headers %v ts %v, want the originals", r.Value, r.Key, r.Headers, r.Timestamp)
		}
	}
	// The group resumes at d.
	offs, err := adm2.FetchOffsets(ctx, "downstream")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := offs.Lookup(EncryptedTopic("event"), 0)
	if o.At != recs[3].Offset {
		t.Errorf("downstream offset after restart = %d, want %d (record d)", o.At, recs[3].Offset)
	}
	if tds, err := adm2.ListTopics(ctx); err != nil {
		t.Fatal(err)
	} else if td, ok := tds[RawTopic("event")]; ok && td.Err == nil {
		t.Error("raw topic restored before EnsureTopics, want it left to EnsureTopics")
	} else if !tds.Has(EncryptedTopic("event")) {
		t.Error("encrypted topic not restored")
	}
	// A shorter TTL configured since the last run applies to the recreated raw topic.
	shorter := slices.Clone(testLedgers)
	shorter[0].TTL = time.Hour
	if err := EnsureTopics(ctx, adm2, shorter, 1); err != nil {
		t.Fatal(err)
	}
	raw, err := adm2.ListEndOffsets(ctx, RawTopic("event"))
	if err != nil {
		t.Fatal(err)
	}
	if lo, _ := raw.Lookup(RawTopic("event"), 0); lo.Offset != 0 {
		t.Errorf("raw topic end offset after restart = %d, want 0 (raw records are never kept)", lo.Offset)
	}
	vs, err := CheckRetention(ctx, adm2, shorter)
	if err != nil || len(vs) != 0 {
		t.Errorf("CheckRetention after restart = %v, %v; want raw topics recreated with the current TTL", vs, err)
	}
	if vo, err := adm2.FetchOffsets(ctx, "veil"); err == nil {
		if o, ok := vo.Lookup(RawTopic("event"), 0); ok && o.At >= 0 {
			t.Errorf("raw-topic group offset restored as %d, want none", o.At)
		}
	}
	// A second restart keeps everything (offsets were renumbered and rewritten consistently).
	if err := e2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e3, _, adm3 := startTest(t, dir)
	if got := readAll(t, e3.Addrs(), EncryptedTopic("event"), 4); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("after second restart encrypted.event = %v", got)
	}
	offs, _ = adm3.FetchOffsets(ctx, "downstream")
	if o2, _ := offs.Lookup(EncryptedTopic("event"), 0); o2.At != o.At {
		t.Errorf("downstream offset after second restart = %d, want %d", o2.At, o.At)
	}
}

func readRecordsFrom(t *testing.T, addrs []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return out
		}
		out = append(out, fs.Records()...)
	}
}

func readOffsets(t *testing.T, addrs []string, topic string) map[string]int64 {
	out := make(map[string]int64)
	for _, r := range readRecordsFrom(t, addrs, topic) {
		out[string(r.Value)] = r.Offset
	}
	return out
}

func assertNotOnDisk(t *testing.T, dir, marker string) {
	t.Helper()
	files := leakcheck.Walk(t, dir, func(path string, d fs.DirEntry, b []byte) {
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("raw plaintext found on disk in %s", path)
		}
		if info, _ := d.Info(); info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group/other access", path, info.Mode().Perm())
		}
	})
	if files == 0 {
		t.Error("data directory is empty after Close, want kept state")
	}
}

func TestReadRecordsTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	r1 := &kgo.Record{Key: []byte("k"), Value: []byte("v1"), Timestamp: time.UnixMilli(1)}
	r2 := &kgo.Record{Value: []byte("v2"), Timestamp: time.UnixMilli(2), Headers: []kgo.RecordHeader{{Key: "a", Value: nil}}}
	full := append(encodeRecord(r1, 5), encodeRecord(r2, 9)...)
	for cut := 0; cut <= len(full); cut++ {
		if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readRecords(path)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		switch {
		case cut == len(full):
			want = 2
		case cut >= len(encodeRecord(r1, 5)):
			want = 1
		}
		if len(got) != want {
			t.Fatalf("readRecords(first %d bytes) = %d records, want %d", cut, len(got), want)
		}
		if want == 2 && (got[1].Offset != 9 || string(got[1].Value) != "v2" || got[1].Key != nil || len(got[1].Headers) != 1 || got[0].Offset != 5 || string(got[0].Key) != "k") {
			t.Errorf("readRecords round trip = %+v %+v", got[0], got[1])
		}
	}
	if _, err := readRecords(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("readRecords(missing) = %v, want nil", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(&kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "h"}}}, 3)[8:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := decodeRecord(b)
		if !ok {
			return
		}
		again := encodeRecord(r, r.Offset)[8:]
		if !bytes.Equal(again, b) {
			t.Errorf("decode/encode round trip differs")
		}
	})
}

// TestEmbeddedCrashCopy simulates a kill -9: the data directory is copied while the broker runs
// (nothing written at Close), and a broker started on the copy has the committed records and the
// group offsets written so far.
func TestEmbeddedCrashCopy(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	_, cl, adm := startTest(t, dir)
	if err := EnsureTopics(ctx, adm, testLedgers[:1], 1); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"r0", "r1", "r2"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: RedactedTopic("event"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adm.CommitOffsets(ctx, "analytics", kadm.OffsetsFromRecords(kgo.Record{Topic: RedactedTopic("event"), Offset: 1})); err != nil {
		t.Fatal(err)
	}
	// Wait until the keeper has written the records and the offsets.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, offsetsFile))
		topics, _ := os.ReadFile(filepath.Join(dir, topicsFile))
		recs, _ := readRecords(filepath.Join(dir, recordsDir, RedactedTopic("event")+"-0.log"))
		// All three files are written on their own schedules; under load the topic list can lag.
		if bytes.Contains(b, []byte("analytics")) && bytes.Contains(topics, []byte(RedactedTopic("event"))) && len(recs) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keeper did not write state in time: offsets %s, %d records", b, len(recs))
		}
		time.Sleep(50 * time.Millisecond)
	}
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}

	e2, _, adm2 := startTest(t, crashed)
	if got := readAll(t, e2.Addrs(), RedactedTopic("event"), 3); !slices.Equal(got, []string{"r0", "r1", "r2"}) {
		t.Errorf("after crash restore redacted.event = %v", got)
	}
	offs, err := adm2.FetchOffsets(ctx, "analytics")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup(RedactedTopic("event"), 0); o.At != 2 {
		t.Errorf("analytics offset after crash restore = %d, want 2", o.At)
	}
}
