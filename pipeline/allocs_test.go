package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testenv"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
)

// TestTransformAllocs pins the allocation budget of Transform (issue 15: at most 10 per entry).
// A sensitive say event: one string for the entry's own fields (schemas.Scanner), the decision's
// path list (ledgers.Decide), four in Seal (the DEK's AES block and GCM, record and tokens, the
// ciphertexts), one block for records, headers and store item, one buffer for the sealed record,
// both views and the header values. A non-sensitive one: the string, the block, the buffer.
func TestTransformAllocs(t *testing.T) {
	testenv.SkipAllocCounts(t)
	tr := benchTransformer(t)
	gen := sample.New(sample.Options{Seed: 2026, Now: time.Now})
	budget := map[bool]float64{true: 8, false: 3}
	seen := map[bool]bool{}
	for !seen[true] || !seen[false] {
		e := gen.Next()
		if e.Entry.Type != "meya.text.event.say" {
			continue
		}
		sensitive := ledgers.Decide(e.Entry, ledgers.DefaultAppSettings, nil).Sensitive
		if seen[sensitive] {
			continue
		}
		seen[sensitive] = true
		src := pipeline.Source{Topic: broker.RawTopic(e.Ledger), Offset: 1}
		got := testing.AllocsPerRun(200, func() {
			src.Offset++
			out, err := tr.Transform(context.Background(), src, e.Key, e.Value)
			if err != nil || out.DeadLetter != nil || out.Sensitive != sensitive {
				t.Fatalf("Transform = %v, dead letter %v, sensitive %v", err, out.DeadLetter != nil, out.Sensitive)
			}
		})
		if got > budget[sensitive] {
			t.Errorf("Transform(say, sensitive %v) = %v allocs, want at most %v", sensitive, got, budget[sensitive])
		}
	}
}
