package pipeline_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
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
