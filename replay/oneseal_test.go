package replay_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/replay"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/store"
)

// runPipeline runs the real processor (group veil) until the redacted topics of event and bot
// hold want records, then stops it.
func (e *env) runPipeline(want int) {
	e.t.Helper()
	p, err := pipeline.New(pipeline.Config{Brokers: e.addrs, Ledgers: []string{"event", "bot"}, Transformer: e.tr, Store: e.store})
	if err != nil {
		e.t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))) < want {
		if time.Now().After(deadline) {
			e.t.Fatalf("the pipeline did not produce %d redacted outputs in 30s", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		e.t.Fatal(err)
	}
	if err := p.Close(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// truncate deletes every record of topics, as retention or a lost topic would.
func (e *env) truncate(topics ...string) {
	e.t.Helper()
	ends, err := e.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		e.t.Fatal(err)
	}
	var os kadm.Offsets
	ends.Each(func(o kadm.ListedOffset) { os.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	if _, err := e.adm.DeleteRecords(ctx, os); err != nil {
		e.t.Fatal(err)
	}
}

// tokensOK opens every token and fails unless each is ok; it returns how many there were.
func (e *env) tokensOK(toks []string) int {
	e.t.Helper()
	for _, tok := range toks {
		if _, st, err := e.opener.Open(ctx, tok); err != nil || st != reveal.StatusOK {
			e.t.Errorf("token reveals %s, %v; want ok", st, err)
		}
	}
	return len(toks)
}

// TestReplayNeverReseals: the encrypted outputs the pipeline produced are lost; replaying the
// encrypted target must not seal their refs a second time (which would turn every token already
// handed out into garbage): the records that sealed something are counted as already sealed, and
// the tokens of the first seal still open.
func TestReplayNeverReseals(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10) // 10 live event entries, 2 bot entries past their TTL
	e.runPipeline(12)
	var toks []string
	for _, r := range e.readAll(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot")) {
		toks = append(toks, tokensIn(t, r.Value)...)
	}
	if len(toks) != 10 {
		t.Fatalf("the pipeline issued %d tokens, want 10", len(toks))
	}
	e.truncate(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"))

	res, err := replay.Run(ctx, e.config(replay.TargetEncrypted))
	if err != nil {
		t.Fatal(err)
	}
	if res.Sealed != 10 || res.Encrypted != 2 || res.Stored != 0 {
		t.Errorf("Run(encrypted) = %+v, want 10 already sealed, 2 encrypted (past TTL, nothing sealed), 0 stored", res)
	}
	if got := e.tokensOK(toks); got != 10 {
		t.Errorf("checked %d tokens, want 10", got)
	}
	// Only the two outputs that carry no token were produced again.
	enc := e.readAll(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"))
	if len(sourcesOf(t, enc)) != 2 {
		t.Errorf("encrypted topics hold %d outputs after the replay, want 2", len(enc))
	}
	for _, r := range enc {
		if len(tokensIn(t, r.Value)) != 0 {
			t.Errorf("replay produced a second token for %s", header(r, pipeline.HeaderSource))
		}
	}
}

// TestReplayLeavesUncommittedRecordsToPipeline is the second race of issue 18 on the library: the
// pipeline processed a first burst and stopped; a second burst arrived while it was down; the
// redacted outputs of the first burst were lost. Replay rebuilds the lost outputs of the first
// burst only and leaves the second to the pipeline, which produces it when it runs again: every
// source once on every output topic, every token ok.
func TestReplayLeavesUncommittedRecordsToPipeline(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10) // 12 records
	e.runPipeline(12)
	e.truncate(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
	now := time.Now()
	for i := range 8 {
		e.produce(entry(fmt.Sprintf("late%d", i), "app-1", "event", now, "late"))
	}

	var progress bytes.Buffer
	cfg := e.config(replay.TargetEncrypted, replay.TargetRedacted)
	cfg.Progress = &progress
	res, err := replay.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pending != 8 || res.Redacted != 12 || res.Encrypted != 0 || res.Read != 12 {
		t.Errorf("Run = %+v, want 12 read and redacted, 8 left to the pipeline", res)
	}

	e.runPipeline(12 + 8)
	enc := e.readAll(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"))
	red := e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
	if got := len(sourcesOf(t, enc)); got != 20 || len(enc) != 20 {
		t.Errorf("encrypted topics: %d records, %d sources; want 20 once each", len(enc), got)
	}
	if got := len(sourcesOf(t, red)); got != 20 || len(red) != 20 {
		t.Errorf("redacted topics: %d records, %d sources; want 20 once each", len(red), got)
	}
	var toks []string
	for _, r := range enc {
		toks = append(toks, tokensIn(t, r.Value)...)
	}
	if got := e.tokensOK(toks); got != 18 {
		t.Errorf("checked %d tokens, want 18", got)
	}
}

// TestReplayRebuildsAfterRawTopicsComeBackEmpty: a broker that keeps no raw records comes back
// with the raw topics empty at offset 0 (start offset 0, not above it). Replay must see that the
// raw window is gone, say so, and rebuild the lost redacted outputs from the encrypted topics; its
// progress total is the records it read, not the offsets of the encrypted topics (which hold
// transaction markers too).
func TestReplayRebuildsAfterRawTopicsComeBackEmpty(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10)
	e.runPipeline(12)
	e.truncate(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
	raw := []string{broker.RawTopic("event"), broker.RawTopic("bot")}
	if _, err := e.adm.DeleteTopics(ctx, raw...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := e.adm.CreateTopics(ctx, 2, 1, nil, raw...)
		if err == nil {
			err = resp.Error()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recreating the raw topics: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	starts, _ := e.adm.ListStartOffsets(ctx, raw...)
	starts.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Fatalf("recreated %s/%d starts at %d, want 0 (the case under test)", o.Topic, o.Partition, o.Offset)
		}
	})

	var progress bytes.Buffer
	cfg := e.config(replay.TargetRedacted)
	cfg.Progress = &progress
	res, err := replay.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rebuilt != 12 || res.Redacted != 12 || res.Read != 12 {
		t.Errorf("Run(redacted) = %+v, want 12 read and rebuilt from encrypted", res)
	}
	for _, s := range res.Sources {
		if s.Encrypted != broker.EncryptedTopic(s.Ledger) || !strings.Contains(s.Why, "holds no record") {
			t.Errorf("source of %s = %+v, want the encrypted topic, saying the raw one holds nothing", s.Ledger, s)
		}
	}
	out := progress.String()
	if !strings.Contains(out, "replay: event: reading ledger.event (partition 0 holds no record") {
		t.Errorf("progress = %q, want it to say which topics it read and why", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "replay: 12/12 records") || !strings.Contains(last, "ETA 0s") {
		t.Errorf("last progress line = %q, want 12/12 records, ETA 0s", last)
	}
	if got := len(sourcesOf(t, e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot")))); got != 12 {
		t.Errorf("redacted topics hold %d sources, want 12", got)
	}
	// The --app filter is applied before the check for present outputs: a second run with it
	// counts only that app's records as present.
	cfg.App, cfg.Progress = "app-2", nil
	if res, err = replay.Run(ctx, cfg); err != nil || res.Present != 5 || res.Filtered != 7 || res.Redacted != 0 {
		t.Errorf("Run(redacted, app-2) = %+v, %v, want 5 present, 7 of other apps", res, err)
	}
}

// TestReplayNeverResealsBlobMedia: the pipeline seals a blob entry's media under refs of their own
// (RefFor of "<id>#data.content"); an entry whose only sensitive value is its media has no row
// under its own ref. Replay (media sealed inline, no blob store) must still see it was sealed and
// not issue a second token for it.
func TestReplayNeverResealsBlobMedia(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	v := fmt.Sprintf(`{"id":"b1","app_id":"app-1","ledger":"blob","type":"meya.blob.entry","ts":%q,"thread":{"id":"t-b","mode":"agent"},"data":{"content":"aGVsbG8="}}`,
		now.UTC().Format(time.RFC3339))
	rec := &kgo.Record{Topic: broker.RawTopic("blob"), Key: []byte("t-b"), Value: []byte(v), Timestamp: now}
	e.produce(rec) // sets its partition and offset
	e.processed("blob")
	src := pipeline.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	// The row the pipeline's blob service wrote for the media (its value is not read here).
	media := store.Item{App: "app-1", Ref: pipeline.RefFor("app-1", "b1#data.content", src), Expiry: now.Add(time.Hour), Value: []byte("sealed media key")}
	if err := e.store.Put(ctx, []store.Item{media}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(replay.TargetEncrypted, replay.TargetRedacted)
	cfg.Ledgers = []string{"blob"}
	res, err := replay.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sealed != 1 || res.Encrypted != 0 || res.Stored != 0 || res.Redacted != 1 {
		t.Errorf("Run = %+v, want the entry already sealed (no encrypted output, no row) and its redacted output rebuilt", res)
	}
	if got := e.readAll(broker.EncryptedTopic("blob")); len(got) != 0 {
		t.Errorf("replay produced %d encrypted blob outputs, want 0", len(got))
	}
}
