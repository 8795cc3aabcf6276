package analytics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/sinks/analytics"
)

// TestSinkTopicRecreatedResumes: a redacted topic deleted and created again (a new topic id, as
// after a broker restart) does not wedge the sink: it reconnects by itself and writes what
// arrives on the new topic.
func TestSinkTopicRecreatedResumes(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	write := func(first, n int) {
		var recs []*kgo.Record
		for i := first; i < first+n; i++ {
			r, _ := entry(t, fmt.Sprintf("e-%03d", i), "app-1", "event", hour0.Add(time.Duration(i)*time.Second), false, int32(i%3))
			recs = append(recs, r)
		}
		// A fresh producer each time: one that knew the old topic id would refuse the new topic.
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
	write(0, 12)
	run := startSink(t, analytics.Config{Brokers: c.addrs, Writer: w, FlushInterval: 100 * time.Millisecond})
	waitFor(t, "the first rows written", func() bool { return run.sink.Stats().Rows >= 12 })

	ctx := context.Background()
	topic := broker.RedactedTopic("event")
	if _, err := c.adm.DeleteTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := c.adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	write(100, 12)
	// The engine waits consume.StaleTopicWait (3 s) of failed fetches, backing off, before it
	// reconnects, then joins the group again: 4–6 s on a quiet machine, so more than waitFor's 10 s
	// under a loaded test run.
	testkit.WaitFor(t, 30*time.Second, "rows of the recreated topic written", func() bool { return run.sink.Stats().Rows >= 24 })
	run.stopOK(t)
}
