package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/reveal"
)

// TestRunDeliversToIntegrations: `veil run` with two integrations configured delivers a sensitive
// entry decrypted to the support integration (audited) and redacted to the other one.
func TestRunDeliversToIntegrations(t *testing.T) {
	addrs := externalBroker(t)
	dir := t.TempDir()
	cfg := writeIntegrationsConfig(t, dir, addrs[0], "veil-it", `  desk: {kind: support, ledgers: [event], topic: out.desk}
  crm: {kind: other, ledgers: [event], topic: out.crm}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr testkit.Buffer // veil writes it while the test may read it
	done := runInProcess(ctx, cfg, nil, &stderr)

	produceSay(t, addrs, "t1", "e1", "SECRET-egress-1")

	for _, tt := range []struct{ topic, want string }{
		{"out.desk", `"text":"SECRET-egress-1"`},
		{"out.crm", `"text":"` + envelope.Redacted + `"`},
	} {
		out := consumeTopics(t, addrs, 1, 30*time.Second, tt.topic)
		if len(out) != 1 {
			t.Fatalf("%s: %d records, want 1; stderr:\n%s", tt.topic, len(out), stderr.String())
		}
		if v := string(out[0].Value); !strings.Contains(v, tt.want) || strings.Contains(v, envelope.TokenPrefix) {
			t.Errorf("%s: delivered %s, want it to hold %s and no token", tt.topic, v, tt.want)
		}
	}
	var found bool
	for _, r := range consumeTopics(t, addrs, 1, 10*time.Second, broker.AuditTopic) {
		if bytes.Contains(r.Value, []byte("SECRET")) {
			t.Fatalf("audit record holds the value")
		}
		var a reveal.AuditRecord
		if json.Unmarshal(r.Value, &a) == nil && a.Source == "egress:desk" && a.Status == "ok" && a.App == "app-1" {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit record of the desk integration's decrypt")
	}
	cancel()
	waitExit(t, done, 30*time.Second, exitOK, &stderr)
}

// TestRunStopsWhenAnEgressStageFails: an egress stage whose transactional producer is fenced (a
// second producer took its transactional id) fails fatally; veil run then stops every other
// component and exits 1 with the stage named in the log, instead of running on without the
// integration (before the run group it logged the error and ran on until SIGTERM).
func TestRunStopsWhenAnEgressStageFails(t *testing.T) {
	addrs := externalBroker(t)
	dir := t.TempDir()
	cfg := writeIntegrationsConfig(t, dir, addrs[0], "veil-fence", "  desk: {kind: other, ledgers: [event], topic: out.desk}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.Buffer
	done := runInProcess(ctx, cfg, nil, &logs)

	produce := func(id string) { t.Helper(); produceSay(t, addrs, "t1", id, "hello") }
	// The stage has its producer id once it delivered an entry: fence it only then.
	produce("e1")
	if out := consumeTopics(t, addrs, 1, 30*time.Second, "out.desk"); len(out) != 1 {
		t.Fatalf("out.desk: %d records, want 1; log:\n%s", len(out), logs.String())
	}
	fence, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID("veil-fence-egress-desk"), kgo.DefaultProduceTopic("out.desk"))
	if err != nil {
		t.Fatal(err)
	}
	defer fence.Close()
	if err := fence.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := fence.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := fence.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	produce("e2")
	// The stage failed: veil stops with exit 1 and its log names the stage.
	waitExit(t, done, 60*time.Second, exitFailure, &logs, `"component":"egress stage desk"`, "a component stopped; stopping veil")
}
