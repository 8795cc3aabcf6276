package pipeline_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
