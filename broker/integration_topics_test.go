package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIntegrationTopicRetention: the topic of an integration that receives decrypted entries is
// bounded by the longest TTL of its ledgers: created with that retention (segments of a quarter),
// and the retention guard flags one created with the cluster's defaults (7 days on kfake, like a
// real cluster) or an unbounded retention, as it flags raw topics.
func TestIntegrationTopicRetention(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := t.Context()

	desk, err := IntegrationTopicTTL("out.desk", []string{"http", "event"}, testLedgers)
	if err != nil || desk.TTL != 24*time.Hour || desk.Ledger != "event" {
		t.Fatalf("IntegrationTopicTTL(http, event) = %+v, %v; want 24h from event", desk, err)
	}
	if _, err := IntegrationTopicTTL("out.x", []string{"nope"}, testLedgers); err == nil {
		t.Errorf("IntegrationTopicTTL(unknown ledger) = nil error")
	}
	short, _ := IntegrationTopicTTL("out.short", []string{"http"}, testLedgers)

	// Created by veil: bounded, and the guard agrees.
	for range 2 { // idempotent
		if err := EnsureBoundedTopics(ctx, adm, []TopicTTL{desk, short}, 2); err != nil {
			t.Fatal(err)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, desk.Topic, short.Topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		desk.Topic:  {"retention.ms": "86400000", "segment.ms": "21600000", "cleanup.policy": "delete"},
		short.Topic: {"retention.ms": "3600000", "segment.ms": "900000", "cleanup.policy": "delete"},
	}
	for _, rc := range rcs {
		for _, cf := range rc.Configs {
			if w, ok := want[rc.Name][cf.Key]; ok && (cf.Value == nil || *cf.Value != w) {
				t.Errorf("%s %s = %v, want %s", rc.Name, cf.Key, cf.Value, w)
			}
		}
	}
	if vs, err := CheckTopicRetention(ctx, adm, []TopicTTL{desk, short}); err != nil || len(vs) != 0 {
		t.Errorf("CheckTopicRetention on topics veil created = %v, %v; want none", vs, err)
	}

	// Created by someone else with the cluster's defaults, or kept forever: flagged.
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "out.defaults"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"retention.ms": ptr("-1"), "segment.ms": ptr("1000")}, "out.forever"); err != nil {
		t.Fatal(err)
	}
	defaults, forever, missing := desk, short, desk
	defaults.Topic, forever.Topic, missing.Topic = "out.defaults", "out.forever", "out.missing"
	vs, err := CheckTopicRetention(ctx, adm, []TopicTTL{defaults, forever, missing})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ topic, setting string }
	got := map[key]bool{}
	for _, v := range vs {
		got[key{v.Topic, v.Setting}] = true
	}
	for _, w := range []key{{"out.defaults", "retention.ms"}, {"out.defaults", "segment.ms"}, {"out.forever", "retention.ms"}, {"out.missing", ""}} {
		if !got[w] {
			t.Errorf("CheckTopicRetention: no violation for %v; got %v", w, vs)
		}
	}
	if err := EnsureBoundedTopics(ctx, adm, []TopicTTL{{Topic: "out.zero"}}, 1); err == nil {
		t.Errorf("EnsureBoundedTopics with no TTL = nil error")
	}
}
