package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/replay"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
)

// traffic produces n live event entries (alternating app-1 and app-2) and two bot entries already
// past their 1 h TTL, and returns the texts by entry id.
func traffic(e *env, n int) map[string]string {
	now := time.Now()
	texts := map[string]string{}
	var recs []*kgo.Record
	for i := range n {
		id := fmt.Sprintf("e%03d", i)
		app := []string{"app-1", "app-2"}[i%2]
		texts[id] = "secret-" + id
		recs = append(recs, entry(id, app, "event", now.Add(-time.Duration(n-i)*time.Second), texts[id]))
	}
	for i := range 2 {
		id := fmt.Sprintf("old%d", i)
		texts[id] = "stale-" + id
		recs = append(recs, entry(id, "app-1", "bot", now.Add(-90*time.Minute), texts[id]))
	}
	e.produce(recs...)
	return texts
}

func TestReplayIntoEachTarget(t *testing.T) {
	e := newEnv(t)
	const n = 20
	texts := traffic(e, n)
	e.processed()
	total := n + 2

	// encrypted: every entry once, live ones sealed and revealable, past-TTL ones redacted only.
	res, err := replay.Run(ctx, e.config(replay.TargetEncrypted))
	if err != nil {
		t.Fatalf("Run(encrypted) = %v", err)
	}
	if res.Read != int64(total) || res.Encrypted != int64(total) || res.Stored != n || res.Redacted != 0 {
		t.Errorf("Run(encrypted) = %+v, want %d read and encrypted, %d stored, 0 redacted", res, total, n)
	}
	enc := e.readAll(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"))
	if got := len(sourcesOf(t, enc)); got != total {
		t.Errorf("encrypted topics hold %d sources, want %d", got, total)
	}
	for _, r := range enc {
		got, _ := schemas.Decode(r.Value, schemas.Limits{})
		toks := tokensIn(t, r.Value)
		if strings.HasPrefix(got.ID, "old") {
			if len(toks) != 0 || !bytes.Contains(r.Value, []byte(envelope.Redacted)) {
				t.Errorf("past-TTL entry %s: encrypted view = %s, want ★★★★★ and no token", got.ID, r.Value)
			}
			continue
		}
		if len(toks) != 1 {
			t.Fatalf("entry %s: %d tokens, want 1", got.ID, len(toks))
		}
		v, st, err := e.opener.Open(ctx, toks[0])
		if err != nil || st != reveal.StatusOK || string(v) != `"`+texts[got.ID]+`"` {
			t.Errorf("entry %s: reveal = %s, %s, %v, want its text", got.ID, v, st, err)
		}
		// Expiry stays ts + TTL.
		want := got.TS.Add(24 * time.Hour).UTC().Format(time.RFC3339)
		if h := header(r, pipeline.HeaderExpiry); h != want {
			t.Errorf("entry %s: expiry %s, want ts + 24h = %s", got.ID, h, want)
		}
	}

	// A second run produces nothing and stores nothing.
	res, err = replay.Run(ctx, e.config(replay.TargetEncrypted))
	if err != nil || res.Encrypted != 0 || res.Stored != 0 || res.Present != int64(total) {
		t.Errorf("second Run(encrypted) = %+v, %v, want all %d present", res, err, total)
	}
	if got := len(e.readAll(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"))); got != total {
		t.Errorf("encrypted topics hold %d records after a second run, want %d", got, total)
	}

	// redacted: same counts, no token, no plaintext; twice is once.
	for run := range 2 {
		res, err = replay.Run(ctx, e.config(replay.TargetRedacted))
		want := int64(total)
		if run == 1 {
			want = 0
		}
		if err != nil || res.Redacted != want || res.Encrypted != 0 {
			t.Errorf("Run(redacted) #%d = %+v, %v, want %d redacted", run+1, res, err, want)
		}
	}
	red := e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
	if got := len(sourcesOf(t, red)); got != total {
		t.Errorf("redacted topics hold %d sources, want %d", got, total)
	}
	for _, r := range red {
		if bytes.Contains(r.Value, []byte("secret-")) || bytes.Contains(r.Value, []byte("stale-")) || len(tokensIn(t, r.Value)) > 0 {
			t.Errorf("redacted record leaks: %s", r.Value)
		}
	}

	// analytics: the redacted outputs are there; a stopped analytics group is moved back.
	var os kadm.Offsets
	ends, _ := e.adm.ListEndOffsets(ctx, broker.RedactedTopic("event"))
	ends.Each(func(o kadm.ListedOffset) { os.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	if _, err := e.adm.CommitOffsets(ctx, replay.DefaultAnalyticsGroup, os); err != nil {
		t.Fatal(err)
	}
	res, err = replay.Run(ctx, e.config(replay.TargetAnalytics))
	if err != nil || res.Redacted != 0 || len(res.Rewound) != 1 || res.Rewound[0] != replay.DefaultAnalyticsGroup {
		t.Errorf("Run(analytics) = %+v, %v, want nothing produced and the group moved back", res, err)
	}
	committed, _ := e.adm.FetchOffsetsForTopics(ctx, replay.DefaultAnalyticsGroup, broker.RedactedTopic("event"))
	committed.Each(func(o kadm.OffsetResponse) {
		if end, _ := ends.Lookup(o.Topic, o.Partition); end.Offset > 0 && o.At >= end.Offset {
			t.Errorf("analytics group on %s/%d at %d, want moved back before %d", o.Topic, o.Partition, o.At, end.Offset)
		}
	})

	// egress needs its groups; with one, it is the encrypted outputs (all present) plus the move.
	if _, err := replay.Run(ctx, e.config(replay.TargetEgress)); !errors.Is(err, replay.ErrBadArgs) {
		t.Errorf("Run(egress) without groups = %v, want ErrBadArgs", err)
	}
	cfg := e.config(replay.TargetEgress)
	cfg.EgressGroups = []string{"egress-x"}
	if res, err = replay.Run(ctx, cfg); err != nil || res.Encrypted != 0 || res.Present != int64(total) {
		t.Errorf("Run(egress) = %+v, %v, want all present", res, err)
	}
}

func TestReplayAfterLivePipelineProducesNothing(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10)
	p, err := pipeline.New(pipeline.Config{Brokers: e.addrs, Ledgers: []string{"event", "bot"}, Transformer: e.tr, Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for len(e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))) < 12 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	if err := p.Close(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	var out bytes.Buffer
	cfg := e.config(replay.TargetEncrypted, replay.TargetRedacted)
	cfg.Progress = &out
	res, err := replay.Run(ctx, cfg)
	if err != nil || res.Encrypted+res.Redacted != 0 || res.Present != 12 {
		t.Errorf("Run after the live pipeline = %+v, %v, want all 12 present", res, err)
	}
	if !strings.Contains(out.String(), "replay: 12/12 records") || !strings.Contains(out.String(), "12 already present") {
		t.Errorf("progress output = %q, want a final 12/12 line", out.String())
	}
}

func TestReplayAppFilterAndDryRun(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10)
	e.processed()
	cfg := e.config(replay.TargetEncrypted)
	cfg.App = "app-2"
	cfg.DryRun = true
	res, err := replay.Run(ctx, cfg)
	if err != nil || res.Encrypted != 5 || res.Filtered != 7 || res.Present != 0 || res.Skipped != 0 {
		t.Errorf("dry Run(app-2) = %+v, %v, want 5 encrypted, 7 of other apps", res, err)
	}
	if got := e.readAll(broker.EncryptedTopic("event")); len(got) != 0 {
		t.Errorf("dry run produced %d records", len(got))
	}
	cfg.DryRun = false
	if res, err = replay.Run(ctx, cfg); err != nil || res.Encrypted != 5 {
		t.Errorf("Run(app-2) = %+v, %v, want 5 encrypted", res, err)
	}
	for _, r := range e.readAll(broker.EncryptedTopic("event")) {
		if !bytes.Contains(r.Value, []byte(`"app-2"`)) {
			t.Errorf("app filter let through %s", r.Value)
		}
	}
	// Again: app-2's outputs are present, the records of other apps are not counted as present.
	if res, err = replay.Run(ctx, cfg); err != nil || res.Present != 5 || res.Filtered != 7 || res.Encrypted != 0 {
		t.Errorf("second Run(app-2) = %+v, %v, want 5 present, 7 of other apps", res, err)
	}
	// A dry run needs no store (the CLI's default targets include encrypted).
	cfg.DryRun, cfg.Store, cfg.App = true, nil, ""
	if res, err = replay.Run(ctx, cfg); err != nil || res.Encrypted != 7 || res.Present != 5 {
		t.Errorf("dry Run without a store = %+v, %v, want 7 would-be encrypted, 5 present", res, err)
	}
}

func TestReplayWindow(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Truncate(time.Second)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, entry(fmt.Sprint("w", i), "app-1", "event", now.Add(time.Duration(i-10)*time.Minute), "x"))
	}
	e.produce(recs...)
	e.processed()
	cfg := e.config(replay.TargetRedacted)
	cfg.From, cfg.To = now.Add(-7*time.Minute), now.Add(-4*time.Minute) // w3..w6
	res, err := replay.Run(ctx, cfg)
	if err != nil || res.Read != 4 || res.Redacted != 4 {
		t.Errorf("Run over 4 minutes = %+v, %v, want 4 read and redacted", res, err)
	}
}

// TestReplayRebuildsRedactedFromEncrypted removes the raw records (retention) and a lost
// redacted output: replay rebuilds it from the encrypted topic, with no key needed.
func TestReplayRebuildsRedactedFromEncrypted(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10)
	e.processed()
	if _, err := replay.Run(ctx, e.config(replay.TargetEncrypted)); err != nil {
		t.Fatal(err)
	}
	// The raw topics lose everything, as retention would.
	var os kadm.Offsets
	for _, l := range []string{"event", "bot"} {
		ends, _ := e.adm.ListEndOffsets(ctx, broker.RawTopic(l))
		ends.Each(func(o kadm.ListedOffset) { os.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	}
	if _, err := e.adm.DeleteRecords(ctx, os); err != nil {
		t.Fatal(err)
	}
	// Erase the store too: rebuilding must not need it.
	for _, app := range []string{"app-1", "app-2"} {
		e.store.DeleteApp(ctx, app)
	}

	for run := range 2 {
		res, err := replay.Run(ctx, e.config(replay.TargetRedacted))
		want := int64(12)
		if run == 1 {
			want = 0
		}
		if err != nil || res.Redacted != want || res.Rebuilt != want {
			t.Errorf("Run(redacted) #%d with raw gone = %+v, %v, want %d rebuilt", run+1, res, err, want)
		}
	}
	enc := e.readAll(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"))
	red := e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
	encSrc, redSrc := sourcesOf(t, enc), sourcesOf(t, red)
	if len(redSrc) != 12 {
		t.Errorf("redacted topics hold %d sources, want 12", len(redSrc))
	}
	for s := range encSrc {
		if !redSrc[s] {
			t.Errorf("no redacted output rebuilt for %s", s)
		}
	}
	for _, r := range red {
		if len(tokensIn(t, r.Value)) > 0 || bytes.Contains(r.Value, []byte("secret-")) || !bytes.Contains(r.Value, []byte(envelope.Redacted)) {
			t.Errorf("rebuilt redacted record = %s, want ★★★★★ and no token", r.Value)
		}
		if header(r, pipeline.HeaderSensitive) != "true" {
			t.Errorf("rebuilt record lost its headers: %v", r.Headers)
		}
	}
	// The encrypted target cannot be rebuilt without the raw data: nothing is read.
	if res, err := replay.Run(ctx, e.config(replay.TargetEncrypted)); err != nil || res.Read != 0 {
		t.Errorf("Run(encrypted) with raw gone = %+v, %v, want nothing read", res, err)
	}
}

func TestReplayCheckpointResume(t *testing.T) {
	e := newEnv(t)
	const n = 40
	traffic(e, n)
	e.processed()
	cp := filepath.Join(t.TempDir(), "replay.checkpoint")
	cfg := e.config(replay.TargetEncrypted, replay.TargetRedacted)
	cfg.Checkpoint = cp
	cfg.To = time.Time{} // --to left out: now, the first time
	cctx, cancel := context.WithCancel(ctx)
	cfg.OnRecord = func(p replay.Progress) {
		if p.Read == 25 {
			cancel()
		}
	}
	first, err := replay.Run(cctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Run = %+v, %v, want context.Canceled", first, err)
	}
	if _, err := os.Stat(cp); err != nil {
		t.Fatalf("no checkpoint after an interrupted run: %v", err)
	}
	if first.Read >= n+2 || first.Encrypted == 0 {
		t.Fatalf("interrupted Run = %+v, want a partial run that committed something", first)
	}

	cfg.OnRecord = nil
	time.Sleep(1100 * time.Millisecond) // "now" has moved on: the resumed run must use the checkpoint's --to
	second, err := replay.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("resumed Run = %v", err)
	}
	if second.Read >= n+2 {
		t.Errorf("resumed Run read %d records, want it to skip the checkpointed ones", second.Read)
	}
	if got := first.Encrypted + second.Encrypted; got != n+2 {
		t.Errorf("encrypted outputs over both runs = %d + %d, want %d", first.Encrypted, second.Encrypted, n+2)
	}
	for _, topics := range [][]string{
		{broker.EncryptedTopic("event"), broker.EncryptedTopic("bot")},
		{broker.RedactedTopic("event"), broker.RedactedTopic("bot")},
	} {
		if got := len(sourcesOf(t, e.readAll(topics...))); got != n+2 {
			t.Errorf("%v hold %d sources after resume, want %d", topics, got, n+2)
		}
	}
	// The --to a refusal prints (RFC 3339, to the second) is accepted too.
	saved, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ To time.Time }
	if err := json.Unmarshal(saved, &file); err != nil || file.To.IsZero() {
		t.Fatalf("checkpoint %s has no window end: %v", saved, err)
	}
	printed, err := replay.ParseTime("--to", file.To.UTC().Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	cfg.To = printed
	if third, err := replay.Run(ctx, cfg); err != nil || third.Encrypted+third.Redacted != 0 {
		t.Errorf("Run with the printed --to = %+v, %v, want accepted, nothing left", third, err)
	}
	// Another window, another target list or another app cannot reuse the file.
	for name, mod := range map[string]func(*replay.Config){
		"window":  func(c *replay.Config) { c.From = c.From.Add(-time.Hour) },
		"to":      func(c *replay.Config) { c.To = printed.Add(-time.Minute) },
		"targets": func(c *replay.Config) { c.Targets = []replay.Target{replay.TargetRedacted} },
		"app":     func(c *replay.Config) { c.App = "app-1" },
		"ledgers": func(c *replay.Config) { c.Ledgers = []string{"event"} },
	} {
		c := cfg
		mod(&c)
		if _, err := replay.Run(ctx, c); !errors.Is(err, replay.ErrBadArgs) || !strings.Contains(err.Error(), "same command") {
			t.Errorf("Run with a checkpoint of another %s = %v, want ErrBadArgs", name, err)
		}
	}
}

func TestReplayRate(t *testing.T) {
	e := newEnv(t)
	traffic(e, 8) // 10 records
	e.processed()
	cfg := e.config(replay.TargetRedacted)
	cfg.Rate = 20
	start := time.Now()
	if _, err := replay.Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("10 records at 20/s took %v, want at least 450ms", d)
	}
}

func TestBadArguments(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	tests := []struct {
		name string
		mod  func(*replay.Config)
	}{
		{"from after to", func(c *replay.Config) { c.From, c.To = now, now.Add(-time.Second) }},
		{"no from", func(c *replay.Config) { c.From = time.Time{} }},
		{"negative rate", func(c *replay.Config) { c.Rate = -1 }},
		{"no target", func(c *replay.Config) { c.Targets = nil }},
		{"unknown target", func(c *replay.Config) { c.Targets = []replay.Target{"parquet"} }},
		{"no ledger", func(c *replay.Config) { c.Ledgers = nil }},
		{"bad app", func(c *replay.Config) { c.App = "a/b" }},
		{"to in the future", func(c *replay.Config) { c.To = now.Add(time.Minute) }},
		{"from in the future", func(c *replay.Config) { c.From, c.To = now.Add(time.Minute), time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config(replay.TargetRedacted)
			tt.mod(&cfg)
			if _, err := replay.Run(ctx, cfg); !errors.Is(err, replay.ErrBadArgs) {
				t.Errorf("Run = %v, want ErrBadArgs", err)
			}
		})
	}
	if _, err := replay.ParseTargets("redacted,bogus"); !errors.Is(err, replay.ErrBadArgs) {
		t.Errorf("ParseTargets(redacted,bogus) = %v, want ErrBadArgs", err)
	}
	if got, err := replay.ParseTargets("all"); err != nil || len(got) != 4 {
		t.Errorf("ParseTargets(all) = %v, %v, want 4 targets", got, err)
	}
	if _, err := replay.ParseTime("--from", "yesterday"); !errors.Is(err, replay.ErrBadArgs) {
		t.Errorf("ParseTime(yesterday) = %v, want ErrBadArgs", err)
	}
	cfg := e.config(replay.TargetRedacted)
	cfg.Ledgers = []string{"nosuch"}
	if _, err := replay.Run(ctx, cfg); err == nil || !strings.Contains(err.Error(), "ledger.nosuch") {
		t.Errorf("Run on a missing topic = %v, want an error naming it", err)
	}
}
