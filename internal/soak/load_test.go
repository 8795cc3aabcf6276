package soak

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline/sample"
)

// load is the mixed input: sample traffic with canaries and malformed entries, each malformed
// one carrying a canary of its own.
type load struct {
	recs      []*kgo.Record
	valid     map[string]bool // ids of the well-formed entries
	malformed int
	canaries  int
}

// badKinds are the malformed shapes sprinkled into the load; %[1]s is the canary, %[2]s the id,
// %[3]s a timestamp.
var badKinds = []string{
	// truncated JSON
	`{"id":"%[2]s","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"%[3]s","thread":{"id":"t-1","mode":"bot"},"data":{"text":"%[1]s secret`,
	// unknown app
	`{"id":"%[2]s","app_id":"app-unknown","ledger":"event","type":"meya.text.event.say","ts":"%[3]s","thread":{"id":"t-1","mode":"bot"},"data":{"text":"%[1]s"}}`,
	// wrong type for thread
	`{"id":"%[2]s","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"%[3]s","thread":7,"data":{"text":"%[1]s"}}`,
	// duplicate key
	`{"id":"%[2]s","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"%[3]s","thread":{"id":"t-1","mode":"bot"},"data":{"text":"%[1]s","text":"x"}}`,
	// invalid UTF-8
	"{\"id\":\"%[2]s\",\"app_id\":\"app-1\",\"ledger\":\"event\",\"type\":\"meya.text.event.say\",\"ts\":\"%[3]s\",\"thread\":{\"id\":\"t-1\",\"mode\":\"bot\"},\"data\":{\"text\":\"%[1]s \xff\xfe\"}}",
	// far future
	`{"id":"%[2]s","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"2999-01-01T00:00:00Z","thread":{"id":"t-1","mode":"bot"},"data":{"text":"%[1]s"}}`,
	// not an object
	`["%[1]s","%[2]s"]`,
	// ledger mismatch with the topic
	`{"id":"%[2]s","app_id":"app-1","ledger":"nope","type":"meya.text.event.say","ts":"%[3]s","thread":{"id":"t-1","mode":"bot"},"data":{"text":"%[1]s"}}`,
}

// newLoad generates n entries; every badEvery-th is malformed.
func newLoad(seed uint64, n, badEvery int) *load {
	gen := sample.New(sample.Options{Seed: seed, Canaries: true})
	l := &load{valid: map[string]bool{}}
	ts := time.Now().UTC().Format(time.RFC3339)
	for i := range n {
		if badEvery > 0 && i%badEvery == badEvery-1 {
			id := fmt.Sprintf("bad-%d", i)
			canary := fmt.Sprintf("%sbad-%d", sample.CanaryPrefix, i)
			v := fmt.Sprintf(badKinds[l.malformed%len(badKinds)], canary, id, ts)
			l.recs = append(l.recs, &kgo.Record{Topic: broker.RawTopic("event"), Key: []byte("t-1"), Value: []byte(v)})
			l.malformed++
			l.canaries++
			continue
		}
		e := gen.Next()
		l.valid[e.ID] = true
		l.canaries += len(e.Canaries)
		l.recs = append(l.recs, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	return l
}
