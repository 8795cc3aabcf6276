package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// TestUnsealableAppDeadLettered: an app id that decodes but cannot be sealed must not stall the
// partition: it is dead-lettered like any other bad input.
func TestUnsealableAppDeadLettered(t *testing.T) {
	h := newHarness(t)
	tr := *h.tr
	tr.Apps = func(string) (ledgers.AppSettings, bool) { return ledgers.DefaultAppSettings, true }
	app := strings.Repeat("a", 100)
	v := `{"id":"e1","app_id":"` + app + `","ledger":"event","type":"meya.text.event.say","ts":"` +
		time.Now().UTC().Format(time.RFC3339) + `","thread":{"mode":"agent"},"data":{"text":"SECRET"}}`
	out, err := tr.Transform(context.Background(), pipeline.Source{Topic: "ledger.event"}, nil, []byte(v))
	if err != nil {
		t.Fatalf("Transform = %v, want a dead letter", err)
	}
	if out.DeadLetter == nil || out.Reason != schemas.ReasonInvalidField {
		t.Fatalf("Transform = reason %q, dead letter %v; want %q", out.Reason, out.DeadLetter != nil, schemas.ReasonInvalidField)
	}
	if strings.Contains(string(out.DeadLetter.Value), "SECRET") {
		t.Fatalf("dead letter leaks the value")
	}
}

// TestMetricLabelsFromKnownValues is issue 12 item 8: Output.Ledger and Output.Reason become
// Prometheus labels (cmd/veil's observer), so they must come from veil's own tables, never from
// the record: an unknown_ledger dead letter used to carry the producer's ledger string.
func TestMetricLabelsFromKnownValues(t *testing.T) {
	h := newHarness(t)
	known := map[string]bool{"": true}
	for _, l := range ledgers.All() {
		known[l.Name] = true
	}
	reasons := map[schemas.Reason]bool{}
	for _, r := range []schemas.Reason{
		schemas.ReasonMalformedJSON, schemas.ReasonTooLarge, schemas.ReasonTooDeep, schemas.ReasonInvalidUTF8,
		schemas.ReasonDuplicateKey, schemas.ReasonUnknownField, schemas.ReasonMissingField, schemas.ReasonInvalidField,
		schemas.ReasonUnknownLedger, schemas.ReasonTypeLedger, schemas.ReasonUnknownApp, schemas.ReasonForgedToken,
		schemas.ReasonTimestamp, schemas.ReasonUnprocessable,
	} {
		reasons[r] = true
	}
	const label = "label-chosen-by-producer"
	say := string(sayOn("e1", "SECRET"))
	tests := []struct {
		name, topic, value string
		ledger             string
	}{
		{"unknown ledger", "event", strings.Replace(say, `"ledger":"event"`, `"ledger":"`+label+`"`, 1), "event"},
		{"unknown ledger on an unknown topic", label, strings.Replace(say, `"ledger":"event"`, `"ledger":"`+label+`"`, 1), ""},
		{"known ledger on another topic", "bot", say, "bot"},
		{"malformed", "event", `{"ledger":"` + label + `"`, "event"},
		{"unknown app", "event", strings.Replace(say, `"app_id":"app-1"`, `"app_id":"`+label+`"`, 1), "event"},
		{"good", "event", say, "event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := broker.RawTopic(tt.topic)
			out, err := h.tr.Transform(context.Background(), pipeline.Source{Topic: topic}, nil, []byte(tt.value))
			if err != nil {
				t.Fatal(err)
			}
			if out.Ledger != tt.ledger || !known[out.Ledger] {
				t.Errorf("Output.Ledger = %q, want %q (the source topic's ledger, if known)", out.Ledger, tt.ledger)
			}
			if out.DeadLetter != nil && !reasons[out.Reason] {
				t.Errorf("Output.Reason = %q, not one of schemas' reasons", out.Reason)
			}
		})
	}
}

// TestOddUserTypeSealed is issue 12 item 5 end to end: in bot mode, a user type spelled in any
// way but exactly "user" or "bot" used to count as an ordinary user, and the say text reached
// redacted.event in plaintext. Now it is sealed (ledgers.Decide fails closed).
func TestOddUserTypeSealed(t *testing.T) {
	h := newHarness(t)
	for _, ut := range []string{"Agent", "AGENT", "agent ", "System", "customer"} {
		t.Run(ut, func(t *testing.T) {
			v := strings.NewReplacer(`"mode":"agent"`, `"mode":"bot"},"user":{"type":"`+ut+`"`).Replace(string(sayOn("e1", "SECRET-ODD-USER")))
			out, err := h.tr.Transform(context.Background(), pipeline.Source{Topic: broker.RawTopic("event")}, nil, []byte(v))
			if err != nil || out.DeadLetter != nil {
				t.Fatalf("Transform = dead letter %v (%s), %v; want both views", out.DeadLetter != nil, out.Reason, err)
			}
			for _, r := range []*kgo.Record{out.Encrypted, out.Redacted} {
				if strings.Contains(string(r.Value), "SECRET-ODD-USER") {
					t.Fatalf("%s holds the text in plaintext", r.Topic)
				}
			}
			if !out.Sensitive || out.Item == nil {
				t.Fatalf("entry not sealed: sensitive %v, item %v", out.Sensitive, out.Item != nil)
			}
		})
	}
	// The known ordinary user types in bot mode, or none, stay unflagged.
	for _, ut := range []string{"user", "bot", ""} {
		v := strings.Replace(string(sayOn("e1", "hello")), `"mode":"agent"}`, `"mode":"bot"},"user":{"type":"`+ut+`"}`, 1)
		v = strings.Replace(v, `"type":""`, `"id":"u-1"`, 1) // no user type
		out, err := h.tr.Transform(context.Background(), pipeline.Source{Topic: broker.RawTopic("event")}, nil, []byte(v))
		if err != nil || out.Sensitive || out.Item != nil {
			t.Fatalf("user type %s: sensitive %v, item %v, err %v; want neither", ut, out.Sensitive, out.Item != nil, err)
		}
	}
}

// countingStore counts Get calls; everything else is the real store.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, app, ref)
}

// TestTokenLookupsBounded: an entry of a type veil does not know has its whole data sealed, one
// field per top-level member; a hostile producer filling data with copies of a genuine token must
// not turn one entry into thousands of store round trips, nor into a dead letter that blames the
// app id when the members outnumber what one record holds.
func TestTokenLookupsBounded(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	out, err := h.tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: 7}, nil, sayOn("g", "hello"))
	if err != nil || out.Item == nil {
		t.Fatalf("sealing a genuine entry: %v", err)
	}
	if err := h.store.Put(ctx, []store.Item{*out.Item}); err != nil {
		t.Fatal(err)
	}
	e, err := schemas.Decode(out.Encrypted.Value, schemas.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := e.Data["text"].(string)
	cs := &countingStore{Store: h.store}
	tr := *h.tr
	tr.Store = cs
	entry := func(n int) []byte {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf(`"m%d":"%s"`, i, tok)
		}
		v := strings.Replace(string(sayOn("u", "x")), `"type":"meya.text.event.say"`, `"type":"x.unknown"`, 1)
		return []byte(strings.Replace(v, `"data":{"text":"x"}`, `"data":{`+strings.Join(members, ",")+`}`, 1))
	}
	out, err = tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: 8}, nil, entry(200))
	if err != nil || out.DeadLetter != nil {
		t.Fatalf("200 copied tokens: dead letter %v (%s), %v; want both views", out.DeadLetter != nil, out.Reason, err)
	}
	if n := cs.gets.Load(); n > schemas.MaxSensitivePaths {
		t.Fatalf("one entry made %d store lookups, want at most %d", n, schemas.MaxSensitivePaths)
	}
	// Past the lookups, tokens are sealed as values: more of them than one record holds.
	n := schemas.MaxSensitivePaths + envelope.MaxFields + 10
	out, err = tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: 9}, nil, entry(n))
	if err != nil {
		t.Fatal(err)
	}
	if out.DeadLetter == nil {
		t.Fatalf("%d members: no dead letter, want invalid_field data", n)
	}
	if d := parseDeadLetters(t, []*kgo.Record{out.DeadLetter})[0]; d.Reason != schemas.ReasonInvalidField || d.Field != "data" {
		t.Fatalf("%d members: dead letter %s %q, want invalid_field data", n, d.Reason, d.Field)
	}
}

// TestTokenAsRecordKeyRefused: the record key (the thread id) is copied to both views as it is,
// so a token there would reach redacted.* like a token in user.id: the record is refused.
func TestTokenAsRecordKeyRefused(t *testing.T) {
	h := newHarness(t)
	out, err := h.tr.Transform(context.Background(), pipeline.Source{Topic: broker.RawTopic("event")}, []byte("veil:v1:AAAA"), sayOn("e1", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if out.DeadLetter == nil || out.Reason != schemas.ReasonInvalidField {
		t.Fatalf("dead letter %v, reason %q; want invalid_field", out.DeadLetter != nil, out.Reason)
	}
	if d := parseDeadLetters(t, []*kgo.Record{out.DeadLetter})[0]; d.Field != "key" {
		t.Fatalf("field %q, want key", d.Field)
	}
	if out.DeadLetter.Key != nil {
		t.Fatalf("the dead letter carries the record key")
	}
}
