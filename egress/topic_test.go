package egress_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/egress"
	"github.com/veil-project/veil/reveal"
)

// TestIntegrationTopicBounded: a stage creates the topic of a decrypting integration with the
// retention of the longest TTL of its ledgers (it holds plaintext), so the retention guard finds
// nothing to flag; an explicit TopicTTL (ledger TTLs overridden in config) wins; the topic of an
// integration that only gets ★★★★★ keeps the cluster's defaults, like redacted.*.
func TestIntegrationTopicBounded(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		in      egress.Integration
		ttl     time.Duration // Config.TopicTTL
		wantRet string        // "" : not bounded
	}{
		{egress.Integration{Name: "desk", Kind: reveal.KindSupport, Ledgers: []string{"http", "event"}, Topic: "out.desk"}, 0, "86400000"},
		{egress.Integration{Name: "chat", Kind: reveal.KindMessaging, Ledgers: []string{"http", "ws"}, Topic: "out.chat"}, 0, "3600000"},
		{egress.Integration{Name: "bi", Kind: reveal.KindOther, Override: true, Ledgers: []string{"event"}, Topic: "out.bi"}, 2 * time.Hour, "7200000"},
		{egress.Integration{Name: "crm", Kind: reveal.KindOther, Ledgers: []string{"event"}, Topic: "out.crm"}, 0, ""},
	}
	for _, c := range cases {
		h.runStage(egress.Config{Integration: c.in, TransactionalID: "veil-test", TopicTTL: c.ttl})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range cases {
		// The stage creates its topic when it starts running.
		for ctx.Err() == nil {
			if tds, err := adm.ListTopics(ctx, c.in.Topic); err == nil && tds.Has(c.in.Topic) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, c.in.Topic)
		if err != nil || len(rcs) != 1 {
			t.Fatalf("describing %s: %v", c.in.Topic, err)
		}
		got := map[string]string{}
		for _, cf := range rcs[0].Configs {
			if cf.Value != nil {
				got[cf.Key] = *cf.Value
			}
		}
		if c.wantRet == "" {
			if got["retention.ms"] == "3600000" || got["retention.ms"] == "86400000" {
				t.Errorf("%s (redacted only) retention.ms = %s, want the cluster's default", c.in.Topic, got["retention.ms"])
			}
			continue
		}
		if got["retention.ms"] != c.wantRet {
			t.Errorf("%s retention.ms = %q, want %s (longest TTL of %v)", c.in.Topic, got["retention.ms"], c.wantRet, c.in.Ledgers)
		}
		ttl, _ := time.ParseDuration(c.wantRet + "ms")
		vs, err := broker.CheckTopicRetention(ctx, adm, []broker.TopicTTL{{Topic: c.in.Topic, TTL: ttl}})
		if err != nil || len(vs) != 0 {
			t.Errorf("retention guard on %s = %v, %v; want no violation", c.in.Topic, vs, err)
		}
	}
}
