package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/veil-project/veil/internal/testkit"
)

// TestRunBoundsIntegrationTopics: veil run creates the topic of a decrypting integration with the
// retention of the longest (effective) TTL of its ledgers, leaves a redacted-only integration's
// topic alone, and refuses to start (exit 4, naming the topic) when a decrypting integration's
// topic already exists with the cluster's default retention — the guard that raw topics have.
func TestRunBoundsIntegrationTopics(t *testing.T) {
	// A bare cluster (no topics): veil creates the raw topics with the shortened TTLs below.
	c := testkit.Kafka(t)
	addrs := c.ListenAddrs()
	cl := testkit.Client(t, c)
	adm := kadm.NewClient(cl)
	startWith := func(t *testing.T, integrations string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		yaml := fmt.Sprintf("kafka: {brokers: [%s]}\ndata_dir: %s\napps: {app-1: {}}\nanalytics: {enabled: false}\nlisten: {metrics: \"\"}\nledgers: {http: {ttl: 30m}, event: {ttl: 2h}}\nintegrations:\n%s",
			addrs[0], filepath.Join(dir, "data"), integrations)
		path := writeConfig(t, dir, yaml)
		var log bytes.Buffer
		err := startAndClose(t, path, &log)
		return log.String(), err
	}
	retention := func(t *testing.T, topic string) string {
		t.Helper()
		rcs, err := adm.DescribeTopicConfigs(t.Context(), topic)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("describing %s: %v", topic, err)
		}
		for _, c := range rcs[0].Configs {
			if c.Key == "retention.ms" && c.Value != nil {
				return *c.Value
			}
		}
		return ""
	}

	t.Run("created bounded", func(t *testing.T) {
		if _, err := startWith(t, "  desk: {kind: support, ledgers: [http, event], topic: out.desk}\n  crm: {kind: other, ledgers: [event], topic: out.crm}\n"); err != nil {
			t.Fatal(err)
		}
		if got := retention(t, "out.desk"); got != "7200000" {
			t.Errorf("out.desk retention.ms = %q, want 7200000 (event's 2h, the longest of its ledgers)", got)
		}
		if tds, _ := adm.ListTopics(t.Context(), "out.crm"); tds.Has("out.crm") {
			t.Errorf("veil run created the redacted-only integration's topic out.crm at start; its stage creates it with the cluster's defaults")
		}
	})
	t.Run("existing unbounded refused", func(t *testing.T) {
		if _, err := adm.CreateTopic(t.Context(), 1, -1, nil, "out.chat"); err != nil {
			t.Fatal(err)
		}
		log, err := startWith(t, "  chat: {kind: messaging, ledgers: [event], topic: out.chat}\n")
		var errOut bytes.Buffer
		if code := exitCode(err, &errOut); code != exitRefused || !strings.Contains(errOut.String()+log, "out.chat") {
			t.Errorf("start with out.chat on default retention = exit %d (%v), want %d naming out.chat\n%s", code, err, exitRefused, log)
		}
	})
}
