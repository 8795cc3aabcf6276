package pipeline_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
)

// TestKafkaGoProducerInterop proves that entries published by a plain, non-transactional
// segmentio/kafka-go producer go through like any others.
func TestKafkaGoProducerInterop(t *testing.T) {
	h := newHarness(t)
	w := &kafkago.Writer{Addr: kafkago.TCP(h.addrs...), Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	const n = 60
	recs, canaries := testkit.SampleRecords(11, n)
	var msgs []kafkago.Message
	for _, r := range recs {
		msgs = append(msgs, kafkago.Message{Topic: r.Topic, Key: r.Key, Value: r.Value})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("kafka-go write: %v", err)
	}
	stop := h.run(pipeline.Config{})
	defer stop()
	h.outputs(n, 30*time.Second, canaries)
	if dl := h.consume(0, 200*time.Millisecond, broker.DeadLetterTopic); len(dl) != 0 {
		t.Fatalf("kafka-go entries dead-lettered: %d", len(dl))
	}
}
