package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
)

// TestTopicRecreatedResumes: a raw topic deleted and created again (a new topic id, as after a
// restart of a broker that keeps no raw topics) does not wedge the processor: it reports the
// broker down, reconnects by itself and processes what arrives on the new topic.
func TestTopicRecreatedResumes(t *testing.T) {
	h := newHarness(t)
	rec := &recorder{}
	stop := h.run(pipeline.Config{Observer: rec})
	defer stop()
	recs, _ := testkit.SampleRecords(41, 40)
	h.produce(recs...)
	if got := h.consume(80, 30*time.Second, outputTopics()...); len(got) != 80 {
		t.Fatalf("before the topic is recreated: %d outputs, want 80", len(got))
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(h.addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	topic := broker.RawTopic("event")
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var more []*kgo.Record
	for _, r := range recs {
		if r.Topic == topic {
			more = append(more, &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value})
		}
	}
	h.produce(more...)
	want := 80 + 2*len(more)
	if got := h.consume(want, 60*time.Second, outputTopics()...); len(got) != want {
		t.Fatalf("after the topic was recreated: %d outputs, want %d", len(got), want)
	}
	if !rec.sawDown("broker") {
		t.Errorf("broker never reported down while the topic id was unknown")
	}
}
