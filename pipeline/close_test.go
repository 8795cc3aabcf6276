package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
)

// Close stops a running processor: Run has returned (nil) by the time Close does, what was
// committed before stays, Close is idempotent, and a Run after it returns at once.
func TestCloseStopsRunningProcessor(t *testing.T) {
	h := newHarness(t)
	var names []string
	for _, l := range ledgers.All() {
		names = append(names, l.Name)
	}
	p, err := pipeline.New(pipeline.Config{Brokers: h.addrs, Ledgers: names, Transformer: h.tr, Store: h.store})
	if err != nil {
		t.Fatal(err)
	}
	done := testkit.Start(p)
	recs, _ := testkit.SampleRecords(7, 20)
	h.produce(recs...)
	if got := h.consume(40, 30*time.Second, outputTopics()...); len(got) != 40 {
		t.Fatalf("%d outputs, want 40", len(got))
	}
	testkit.CheckClose(t, p, done, nil)
	if err := p.Run(context.Background()); err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
	if got := h.consume(40, 5*time.Second, outputTopics()...); len(got) != 40 {
		t.Errorf("after Close: %d outputs, want the 40 committed before", len(got))
	}
}
