package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/schemas"
)

// BenchmarkTransform measures Transformer.Transform alone, one goroutine, no store (Transform
// returns the store item; writing it is the processor's job), on the sample entries make bench
// and bench/peers use: the realistic mix, and one sensitive and one non-sensitive say event. The
// allocation counts it reports are the guard issue 15 sets (≤ 10 allocs per entry is the goal).
func BenchmarkTransform(b *testing.B) {
	tr := benchTransformer(b)
	gen := sample.New(sample.Options{Seed: 2026, Now: time.Now})
	var mix []sample.Entry
	var sensitive, plain *sample.Entry
	for len(mix) < 2000 || sensitive == nil || plain == nil {
		e := gen.Next()
		if len(mix) < 2000 {
			mix = append(mix, e)
		}
		if e.Entry.Type == "meya.text.event.say" {
			d := ledgers.Decide(e.Entry, ledgers.DefaultAppSettings, nil)
			switch {
			case d.Sensitive && sensitive == nil:
				sensitive = &e
			case !d.Sensitive && plain == nil:
				plain = &e
			}
		}
	}
	ctx := context.Background()
	run := func(b *testing.B, entries []sample.Entry) {
		var bytes int64
		for _, e := range entries {
			bytes += int64(len(e.Value))
		}
		b.SetBytes(bytes / int64(len(entries)))
		b.ReportAllocs()
		topics := make([]string, len(entries)) // a consumed record's topic is not the transform's allocation
		for i, e := range entries {
			topics[i] = broker.RawTopic(e.Ledger)
		}
		i := 0
		for b.Loop() {
			e := &entries[i%len(entries)]
			out, err := tr.Transform(ctx, pipeline.Source{Topic: topics[i%len(entries)], Offset: int64(i)}, e.Key, e.Value)
			if err != nil || out.DeadLetter != nil {
				b.Fatalf("Transform = %v, dead letter %v (%s)", err, out.DeadLetter != nil, out.Reason)
			}
			i++
		}
	}
	b.Run("mix", func(b *testing.B) { run(b, mix) })
	b.Run("say-sensitive", func(b *testing.B) { run(b, []sample.Entry{*sensitive}) })
	b.Run("say-plain", func(b *testing.B) { run(b, []sample.Entry{*plain}) })
}

// benchTransformer is the production transform on the local KMS and a file key store, every app
// on the default settings.
func benchTransformer(b testing.TB) *pipeline.Transformer {
	b.Helper()
	kr, _ := testkit.LocalKeys(b, b.TempDir(), testkit.Keys{KeyID: kmslocal.DefaultKeyID})
	table := testkit.Ledgers(b, nil)
	return &pipeline.Transformer{Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: envelope.NewSealer(kr),
		Apps: func(string) (ledgers.AppSettings, bool) { return ledgers.DefaultAppSettings, true }}
}
