// Package fuzz_test holds the fuzz target of the whole transform, apart from pipeline's own tests: a
// fuzz binary instruments every package it links for coverage, and each execution walks all of
// those counters, so linking the pipeline's end-to-end harness (kfake clients, Badger, kafka-go,
// their protobuf and OpenTelemetry dependencies) made every execution several times slower. Here
// the target links only what Transform itself needs.
package fuzz_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
)

// fuzzMarker is what FuzzTransform looks for: when an input carries it, a dead letter made of
// that input must not.
const fuzzMarker = "FUZZ-MARK-9c1d4e"

// FuzzTransform runs arbitrary bytes through Transformer.Transform with real keys (local KMS, file
// key store, the envelope sealer), on a fixed clock so every input is processed the same way each
// time. Whatever the input: no panic; no error (errors are for transient failures, and nothing
// here fails transiently), so bad input can never stall a partition by being retried forever;
// exactly one of a dead letter or the two views; a dead letter never holds the input's marker,
// and its payload reopens to exactly the input.
func FuzzTransform(f *testing.F) {
	r := newRig(f)
	tr, sealer, now, topics := r.tr, r.sealer, r.now, r.topics
	ts := now.Format(time.RFC3339)
	// One short entry per registry type on each of its ledgers, every sensitive field present:
	// small seeds, because the fuzzer minimizes each new input it finds, at a cost quadratic in
	// its length, and reports no executions meanwhile (2 KiB sample entries stalled it for most
	// of a short run).
	reg := schemas.DefaultRegistry()
	for _, typ := range reg.Types() {
		info, _ := reg.Lookup(typ)
		for _, l := range info.Ledgers {
			data := make([]string, len(info.Fields))
			for j, p := range info.Fields {
				data[j] = `"` + strings.TrimPrefix(p, "data.") + `":"v` + fmt.Sprint(j) + `"`
			}
			e := `{"id":"e-1","app_id":"app-1","ledger":"` + l + `","type":"` + typ + `","ts":"` + ts +
				`","thread":{"mode":"agent"},"data":{` + strings.Join(data, ",") + `}}`
			for i, tp := range topics {
				if tp == broker.RawTopic(l) {
					f.Add([]byte(e), uint8(i))
				}
			}
		}
	}
	say := `{"id":"e-1","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts +
		`","thread":{"id":"t-1","mode":"agent"},"data":{"text":"` + fuzzMarker + `"}}`
	for _, s := range []string{
		say,
		strings.Replace(say, `"text":"`, `"text":"\u00e9`, 1),
		strings.Replace(say, `"ledger":"event"`, `"ledger":"nope"`, 1),
		strings.Replace(say, `"app_id":"app-1"`, `"app_id":"app-9"`, 1),
		strings.Replace(say, `"data":`, `"sensitive_paths":["data.x.0"],"data":`, 1),
		strings.Replace(say, `"data":{`, `"data":{"x":["veil:v1:AAAA"],`, 1),
		strings.Replace(say, `"text":"`, `"text":"\xff`, 1),
		strings.Replace(say, ts, "2099-01-01T00:00:00Z", 1),
		say[:len(say)-3],
		say + say,
		`[` + say + `]`,
		`{"data":` + strings.Repeat("[", 40) + `"` + fuzzMarker + `"` + strings.Repeat("]", 40) + `}`,
		`{"id":"` + fuzzMarker + `","id":"x"}`,
		"",
		"null",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}

	f.Fuzz(func(t *testing.T, value []byte, topic uint8) {
		ctx := context.Background()
		src := pipeline.Source{Topic: topics[int(topic)%len(topics)], Partition: 1, Offset: 42}
		out, err := tr.Transform(ctx, src, []byte("k"), value)
		if err != nil {
			t.Fatalf("Transform returned an error (retried forever as transient): %v", err)
		}
		if (out.DeadLetter == nil) == (out.Encrypted == nil || out.Redacted == nil) {
			t.Fatalf("outputs: dead letter %v, encrypted %v, redacted %v; want a dead letter or both views",
				out.DeadLetter != nil, out.Encrypted != nil, out.Redacted != nil)
		}
		if out.DeadLetter == nil {
			if out.Reason != "" {
				t.Fatalf("reason %s without a dead letter", out.Reason)
			}
			return
		}
		dl := out.DeadLetter
		if out.Reason == "" || string(headerOf(dl, pipeline.HeaderReason)) != string(out.Reason) {
			t.Fatalf("dead letter without its reason")
		}
		if bytes.Contains(value, []byte(fuzzMarker)) {
			if bytes.Contains(dl.Value, []byte(fuzzMarker)) || bytes.Contains(dl.Key, []byte(fuzzMarker)) {
				t.Fatalf("dead letter holds the input's marker")
			}
			for _, h := range dl.Headers {
				if bytes.Contains(h.Value, []byte(fuzzMarker)) {
					t.Fatalf("dead-letter header %s holds the input's marker", h.Key)
				}
			}
		}
		var rec struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(dl.Value, &rec); err != nil {
			t.Fatalf("dead letter is not JSON: %v", err)
		}
		if out.Item == nil {
			t.Fatalf("dead letter without its sealed payload")
		}
		// Opened straight from the item (what the store would hand back), so that no store's
		// background work makes coverage differ between runs of one input.
		tok, err := envelope.ParseToken(rec.Payload)
		if err != nil {
			t.Fatalf("payload is not a token: %v", err)
		}
		var sealedRec envelope.Record
		if err := sealedRec.UnmarshalBinary(out.Item.Value); err != nil {
			t.Fatalf("sealed payload record does not parse: %v", err)
		}
		v, err := sealer.Open(ctx, &sealedRec, tok)
		if err != nil {
			t.Fatalf("payload does not reopen: %v", err)
		}
		var b64 string
		if err := json.Unmarshal(v, &b64); err != nil {
			t.Fatalf("payload is not a JSON string: %v", err)
		}
		if back, err := base64.StdEncoding.DecodeString(b64); err != nil || !bytes.Equal(back, value) {
			t.Fatalf("payload opens to other bytes than the input")
		}
	})
}

func headerOf(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}
