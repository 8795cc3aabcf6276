package testkit

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline/sample"
)

// SampleRecords returns n raw records of sample traffic from seed (every ledger, apps app-1 and
// app-2), with canaries in every value that will be sealed, and those canaries.
func SampleRecords(seed uint64, n int) (recs []*kgo.Record, canaries []string) {
	gen := sample.New(sample.Options{Seed: seed, Canaries: true})
	for range n {
		e := gen.Next()
		canaries = append(canaries, e.Canaries...)
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	return recs, canaries
}
