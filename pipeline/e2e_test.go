package pipeline_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
)

// TestEndToEnd runs sample traffic on every ledger through the pipeline and checks every output
// entry field by field: sealed paths are tokens that open to the original value in the encrypted
// view and ★★★★★ in the redacted view; everything else is unchanged; no canary leaks.
func TestEndToEnd(t *testing.T) {
	h := newHarness(t)
	gen := sample.New(sample.Options{Seed: 7, Canaries: true})
	const n = 400
	byID := map[string]sample.Entry{}
	var canaries []string
	var recs []*kgo.Record
	seenLedger := map[string]bool{}
	for range n {
		e := gen.Next()
		byID[e.ID] = e
		canaries = append(canaries, e.Canaries...)
		seenLedger[e.Ledger] = true
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	if len(seenLedger) != len(ledgers.All()) {
		t.Fatalf("sample covers %d ledgers, want %d", len(seenLedger), len(ledgers.All()))
	}
	h.produce(recs...)
	stop := h.run(pipeline.Config{})
	defer stop()

	seen := map[string]int{}
	var sensitive, tokensOpened int
	for _, r := range h.outputs(n, 60*time.Second, canaries) {
		got := decodeOutput(t, r)
		seen[r.Topic+"|"+got.ID]++
		src, ok := byID[got.ID]
		if !ok {
			t.Fatalf("output %s names unknown entry %s", r.Topic, got.ID)
		}
		if string(r.Key) != string(src.Key) {
			t.Errorf("%s: key = %q, want %q", got.ID, r.Key, src.Key)
		}
		orig, err := schemas.Decode(src.Value, schemas.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		d := ledgers.Decide(orig, ledgers.DefaultAppSettings, schemas.DefaultRegistry())
		paths := expand(t, orig, d.Paths)
		encrypted := strings.HasPrefix(r.Topic, broker.EncryptedPrefix)
		if d.Sensitive && encrypted {
			sensitive++
		}
		for _, p := range paths {
			want, _ := orig.Get(p)
			v, ok := got.Get(p)
			if !ok {
				t.Fatalf("%s %s: sealed path %s missing", r.Topic, got.ID, p)
			}
			s, _ := v.(string)
			if !encrypted {
				if s != envelope.Redacted {
					t.Errorf("%s %s: %s = %v, want %s", r.Topic, got.ID, p, v, envelope.Redacted)
				}
				continue
			}
			plain, status, err := h.opener.Open(context.Background(), s)
			if err != nil || status != reveal.StatusOK {
				t.Fatalf("%s %s: opening %s: status %s, err %v", r.Topic, got.ID, p, status, err)
			}
			var back any
			if err := json.Unmarshal(plain, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, want) {
				t.Errorf("%s %s: %s opens to a different value", r.Topic, got.ID, p)
			}
			tokensOpened++
		}
		// Everything but the sealed paths is unchanged.
		for _, p := range paths {
			orig.Set(p, "X")
			got.Set(p, "X")
		}
		orig.Sensitive, got.Sensitive = nil, nil
		a, _ := orig.Encode()
		b, _ := got.Encode()
		if string(a) != string(b) {
			t.Errorf("%s %s: unsealed content changed:\n got %s\nwant %s", r.Topic, got.ID, b, a)
		}
		if got := string(headerOf(r, pipeline.HeaderSensitive)); got != fmt.Sprint(d.Sensitive || len(paths) > 0) {
			t.Errorf("%s %s: header %s = %s, want %v", r.Topic, orig.ID, pipeline.HeaderSensitive, got, d.Sensitive)
		}
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s seen %d times, want once", k, c)
		}
	}
	if sensitive < n/4 || sensitive > 3*n/4 {
		t.Errorf("sensitive entries = %d of %d, want about half", sensitive, n)
	}
	t.Logf("%d entries, %d sensitive, %d tokens opened, %d canaries checked", n, sensitive, tokensOpened, len(canaries))
}

func expand(t *testing.T, e *schemas.Entry, paths []string) []schemas.Path {
	var out []schemas.Path
	for _, s := range paths {
		if s == "data" {
			all, _ := e.DataPaths()
			out = append(out, all...)
			continue
		}
		p, err := schemas.ParsePath(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Get(p); ok {
			out = append(out, p)
		}
	}
	return out
}

func headerOf(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// TestBadInputDeadLettered sends hostile records between good ones: each bad one lands on the
// dead-letter topic with its reason and its payload sealed, and the good ones still flow.
func TestBadInputDeadLettered(t *testing.T) {
	h := newHarness(t)
	now := time.Now().UTC().Format(time.RFC3339)
	good := func(id string) string {
		return `{"id":"` + id + `","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + now + `","thread":{"id":"t","mode":"agent"},"data":{"text":"SECRET-good-` + id + `"}}`
	}
	cases := []struct {
		name, topic, value string
		reason             schemas.Reason
	}{
		{"broken json", "event", `{"id":"x","data":{"text":"SECRET-1"`, schemas.ReasonMalformedJSON},
		{"unknown app", "event", strings.Replace(good("u1"), "app-1", "app-zzz", 1), schemas.ReasonUnknownApp},
		{"ledger mismatch", "http", good("m1"), schemas.ReasonInvalidField},
		{"type on wrong ledger", "bot", strings.Replace(good("w1"), `"ledger":"event"`, `"ledger":"bot"`, 1), schemas.ReasonTypeLedger},
		{"future ts", "event", strings.Replace(good("f1"), now, "2999-01-01T00:00:00Z", 1), schemas.ReasonTimestamp},
		{"forged token", "event", strings.Replace(good("t1"), `"SECRET-good-t1"`, `"veil:v1:AAAA SECRET-2"`, 1), schemas.ReasonForgedToken},
		{"invalid utf8", "event", strings.Replace(good("i1"), "SECRET-good-i1", "SECRET-3\xff", 1), schemas.ReasonInvalidUTF8},
		{"too deep", "event", strings.Replace(good("d1"), `"SECRET-good-d1"`, strings.Repeat("[", 100)+`"SECRET-4"`+strings.Repeat("]", 100), 1), schemas.ReasonTooDeep},
	}
	var recs []*kgo.Record
	for i, c := range cases {
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic(c.topic), Key: []byte("t"), Value: []byte(c.value)},
			&kgo.Record{Topic: broker.RawTopic("event"), Key: []byte("t"), Value: []byte(good(fmt.Sprint("g", i)))})
	}
	h.produce(recs...)
	stop := h.run(pipeline.Config{})
	defer stop()
	dl := h.consume(len(cases), 30*time.Second, broker.DeadLetterTopic)
	outs := h.consume(2*len(cases), 30*time.Second, broker.EncryptedTopic("event"), broker.RedactedTopic("event"))
	if len(outs) != 2*len(cases) {
		t.Errorf("good entries out = %d, want %d", len(outs), 2*len(cases))
	}
	if len(dl) != len(cases) {
		t.Fatalf("dead letters = %d, want %d", len(dl), len(cases))
	}
	got := map[string]bool{}
	for _, r := range dl {
		if strings.Contains(string(r.Value), "SECRET") {
			t.Fatalf("dead letter leaks plaintext: %s", r.Value)
		}
		var rec struct {
			Reason  schemas.Reason `json:"reason"`
			Source  string         `json:"source"`
			Payload string         `json:"payload"`
		}
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			t.Fatal(err)
		}
		got[string(rec.Reason)+"@"+strings.SplitN(rec.Source, "/", 2)[0]] = true
		v, status, err := h.opener.Open(context.Background(), rec.Payload)
		if err != nil || status != reveal.StatusOK || len(v) == 0 {
			t.Errorf("dead-letter payload of %s does not reopen: %s %v", rec.Reason, status, err)
		}
	}
	for _, c := range cases {
		if !got[string(c.reason)+"@"+broker.RawTopic(c.topic)] {
			t.Errorf("%s: no dead letter with reason %s from %s (got %v)", c.name, c.reason, c.topic, got)
		}
	}
}
