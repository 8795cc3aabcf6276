package replay_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/replay"
)

// TestReplayOnEmbeddedBroker replays across a restart of the embedded broker. With a KMS it keeps
// the raw topics (sealed), their offsets and the pipeline group's offsets: replay reads the raw
// topics. Without one the raw topics come back empty: replay sees that from what they hold, says
// so, and reads the encrypted topics instead (as it does for raw records past their TTL, which the
// broker drops). Either way every redacted output is there once.
func TestReplayOnEmbeddedBroker(t *testing.T) {
	for _, keep := range []bool{true, false} {
		name := "raw kept"
		if !keep {
			name = "raw in memory only"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var lt []broker.LedgerTTL
			for _, l := range ledgers.All() {
				lt = append(lt, broker.LedgerTTL{Name: l.Name, TTL: l.TTL})
			}
			var e *env
			start := func() *broker.Embedded {
				cfg := broker.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "broker"), Partitions: 2,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ledgers: lt}
				if keep && e != nil {
					cfg.KMS, cfg.KeyID = e.kms, "local"
				}
				b, err := broker.StartEmbedded(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), lt, 2); err != nil {
					t.Fatal(err)
				}
				return b
			}
			// The env (keys, store) needs no broker to exist yet: point it at the first one.
			first := start()
			e = newEnvOn(t, first.Addrs(), filepath.Join(dir, "env"))
			if keep {
				// Restart at once with the KMS, so the raw records are kept from the start.
				first.Close(ctx)
				first = start()
				e.reconnect(first.Addrs())
			}
			traffic(e, 10)
			e.runPipeline(12)
			if err := first.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			second := start()
			defer second.Close(context.Background())
			e.reconnect(second.Addrs())

			cfg := e.config(replay.TargetRedacted)
			cfg.Brokers = second.Addrs()
			res, err := replay.Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			red := e.readAll(broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
			if got := len(sourcesOf(t, red)); got != 12 || len(red) != 12 {
				t.Errorf("redacted topics: %d records, %d sources; want 12 once each", len(red), got)
			}
			if res.Present+res.Redacted != 12 || res.Pending != 0 {
				t.Errorf("Run = %+v, want each of the 12 records present or rebuilt, none pending", res)
			}
			for _, s := range res.Sources {
				switch {
				// The bot entries are 90 minutes old: past their 1 h TTL, the broker drops their raw
				// records on restart, kept or not.
				case keep && s.Ledger == "event" && s.Encrypted != "":
					t.Errorf("%s: read %s although the raw topic was kept: %s", s.Ledger, s.Encrypted, s.Why)
				case !keep && (s.Encrypted != broker.EncryptedTopic(s.Ledger) || !strings.Contains(s.Why, "holds no record")):
					t.Errorf("%s: source %+v, want the encrypted topic, saying the raw one holds nothing", s.Ledger, s)
				}
			}
			t.Logf("%s: %+v", name, res)
		})
	}
}

// reconnect points the env's clients at another broker address.
func (e *env) reconnect(addrs []string) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	e.addrs, e.cl, e.adm = addrs, cl, kadm.NewClient(cl)
}
