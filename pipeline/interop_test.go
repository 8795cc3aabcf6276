package pipeline_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
)

// TestKafkaGoProducerInterop proves that entries published by a plain, non-transactional
// segmentio/kafka-go producer go through like any others.
func TestKafkaGoProducerInterop(t *testing.T) {
	h := newHarness(t)
	gen := sample.New(sample.Options{Seed: 11, Canaries: true})
	w := &kafkago.Writer{Addr: kafkago.TCP(h.addrs...), Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	const n = 60
	var msgs []kafkago.Message
	var canaries []string
	for range n {
		e := gen.Next()
		canaries = append(canaries, e.Canaries...)
		msgs = append(msgs, kafkago.Message{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("kafka-go write: %v", err)
	}
	stop := h.run(pipeline.Config{})
	defer stop()
	out := h.consume(2*n, 30*time.Second, outputTopics()...)
	if len(out) != 2*n {
		t.Fatalf("outputs = %d, want %d", len(out), 2*n)
	}
	for _, r := range out {
		if m := testkit.ContainsAny(r.Value, canaries); m != "" {
			t.Fatalf("canary %s leaked into %s", m, r.Topic)
		}
	}
	if dl := h.consume(0, 200*time.Millisecond, broker.DeadLetterTopic); len(dl) != 0 {
		t.Fatalf("kafka-go entries dead-lettered: %d", len(dl))
	}
}
