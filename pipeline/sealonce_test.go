package pipeline_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/store"
)

var tokenRE = regexp.MustCompile(`veil:v1:[A-Za-z0-9_\-]+`)

// TestRetryAfterStoreWriteSealsUnderFreshRefs: an attempt that wrote the store and then died
// before its commit (a crash, an abort) leaves records under the derived refs of its entries. The
// store keeps a ref's first record, so the next attempt must not reuse those refs: every entry
// still comes out exactly once, and every committed token opens. Half the records are pre-sealed,
// so one batch mixes taken and free refs.
func TestRetryAfterStoreWriteSealsUnderFreshRefs(t *testing.T) {
	h := newHarness(t)
	const n = 150
	recs, _ := testkit.SampleRecords(71, n)
	h.produce(recs...) // ProduceSync sets each record's partition and offset
	ctx := context.Background()
	taken := 0
	for i, r := range recs {
		if i%2 == 1 {
			continue
		}
		out, err := h.tr.Transform(ctx, pipeline.Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}, r.Key, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		var items []store.Item
		if out.Item != nil {
			items = append(items, *out.Item)
		}
		items = append(items, out.Media...)
		if len(items) > 0 {
			if err := h.store.Put(ctx, items); err != nil {
				t.Fatal(err)
			}
			taken++
		}
	}
	if taken == 0 {
		t.Fatal("no sample record sealed anything: the test proves nothing")
	}
	stop := h.run(pipeline.Config{})
	defer stop()
	out := h.consume(2*n, 60*time.Second, outputTopics()...)
	if len(out) != 2*n {
		t.Fatalf("got %d outputs, want %d", len(out), 2*n)
	}
	assertOnce(t, out)
	opened := 0
	for _, r := range out {
		for _, tok := range tokenRE.FindAllString(string(r.Value), -1) {
			_, status, err := h.opener.Open(ctx, tok)
			if err != nil || status != reveal.StatusOK {
				t.Fatalf("%s %s: token opens %s, %v; want ok", r.Topic, headerOf(r, pipeline.HeaderSource), status, err)
			}
			opened++
		}
	}
	if opened < taken {
		t.Fatalf("opened %d tokens, want at least the %d of the pre-sealed entries", opened, taken)
	}
	t.Logf("%d entries, %d pre-sealed by an aborted attempt; %d outputs exactly once, %d tokens all ok", n, taken, len(out), opened)
}
