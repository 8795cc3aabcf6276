package main

import (
	"context"

	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The producer snippets of docs/entries.md, verbatim; TestEntriesDocProducers runs them.

// produceFranzGo publishes one entry to its ledger topic, keyed by thread id, and waits for the ack.
func produceFranzGo(ctx context.Context, brokers []string, ledger, threadID string, entry []byte) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: "ledger." + ledger, Key: []byte(threadID), Value: entry}
	return cl.ProduceSync(ctx, rec).FirstErr()
}

// produceKafkaGo publishes one entry to its ledger topic, keyed by thread id (Hash keeps a thread on
// one partition), and waits for every in-sync replica.
func produceKafkaGo(ctx context.Context, brokers []string, ledger, threadID string, entry []byte) error {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "ledger." + ledger,
		Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	return w.WriteMessages(ctx, kafka.Message{Key: []byte(threadID), Value: entry})
}
