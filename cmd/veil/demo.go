package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/pipeline/sample"
)

// demoApps are the apps the sample traffic uses; the demo accepts them whatever the config says.
var demoApps = []string{"app-1", "app-2"}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var n int
	var exit bool
	cfg, err := parseConfig("demo", args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&n, "entries", 500, "sample `entries` to publish across all ledgers")
		fs.BoolVar(&exit, "exit", false, "exit after showing the sample instead of running on")
	})
	if err != nil {
		return err
	}
	if cfg.Apps == nil {
		cfg.Apps = map[string]config.App{}
	}
	for _, a := range demoApps {
		if _, ok := cfg.Apps[a]; !ok {
			cfg.Apps[a] = config.App{}
		}
	}
	s, err := start(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer s.close(context.Background())
	s.printWhere(stdout)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.serve(runCtx) }()

	id, original, err := s.publishSample(ctx, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\npublished %d sample entries on every ledger; waiting for entry %s …\n", n, id)
	enc, red, err := s.await(ctx, id, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n── original (ledger.event, plaintext, kept in memory only) ──\n%s\n", indent(original))
	fmt.Fprintf(stdout, "\n── encrypted (encrypted.event: veil:v1: tokens, revealable until the TTL) ──\n%s\n", indent(enc))
	fmt.Fprintf(stdout, "\n── redacted (redacted.event: for analytics and everyone else) ──\n%s\n", indent(red))
	fmt.Fprintf(stdout, "\nWhere to look next:\n")
	fmt.Fprintf(stdout, "  consume redacted.* or encrypted.* from %s (any Kafka client, read_committed)\n", strings.Join(s.brokers, ","))
	fmt.Fprintf(stdout, "  bad input lands on veil.deadletter with a reason; metrics at http://%s/metrics\n", s.cfg.Listen.Metrics)
	fmt.Fprintf(stdout, "  the tokens reveal the original values until the event TTL (24 h) ends; after that only ★★★★★ remains\n")
	if exit {
		cancel()
		return <-done
	}
	fmt.Fprintf(stdout, "\nveil keeps running; Ctrl-C stops it.\n")
	return <-done
}

// publishSample publishes n sample entries (all ledgers) and returns the id and JSON of a
// sensitive say event among them.
func (s *service) publishSample(ctx context.Context, n int) (string, []byte, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.kopts...)...)
	if err != nil {
		return "", nil, fmt.Errorf("connecting producer: %w", err)
	}
	defer cl.Close()
	gen := sample.New(sample.Options{Seed: uint64(time.Now().UnixNano()), Apps: demoApps})
	var id string
	var original []byte
	recs := make([]*kgo.Record, 0, n)
	for range n {
		e := gen.Next()
		if id == "" && e.Entry.Type == "meya.text.event.say" && e.Entry.Thread.Mode != "bot" {
			id, original = e.ID, e.Value
		}
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return "", nil, fmt.Errorf("publishing sample traffic: %w", err)
	}
	if id == "" {
		return "", nil, errors.New("sample traffic held no sensitive say event; publish more entries")
	}
	return id, original, nil
}

// await reads encrypted.event and redacted.event until both views of entry id arrived.
func (s *service) await(ctx context.Context, id string, timeout time.Duration) (enc, red []byte, err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...),
		kgo.ConsumeTopics(broker.EncryptedTopic("event"), broker.RedactedTopic("event")),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, s.kopts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting consumer: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	needle := []byte(`"id":"` + id + `"`)
	for enc == nil || red == nil {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("waiting for entry %s: %w", id, ctx.Err())
		}
		f.EachRecord(func(r *kgo.Record) {
			if !bytes.Contains(r.Value, needle) {
				return
			}
			if strings.HasPrefix(r.Topic, broker.EncryptedPrefix) {
				enc = r.Value
			} else {
				red = r.Value
			}
		})
	}
	return enc, red, nil
}

func indent(b []byte) string {
	v := jsontext.Value(bytes.Clone(b))
	if err := v.Indent(jsontext.WithIndent("  ")); err != nil {
		return string(b)
	}
	return string(v)
}

var _ = json.Marshal
