package pipeline_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
)

// sayOn is a good say entry with the given id (agent mode: its text is sealed).
func sayOn(id, text string) []byte {
	return []byte(`{"id":"` + id + `","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` +
		time.Now().UTC().Format(time.RFC3339) + `","thread":{"id":"t","mode":"agent"},"data":{"text":"` + text + `"}}`)
}

// goodOnEveryPartition returns n good entries for each partition of ledger.event (say events) and
// of ledger.bot (flow steps of app-2, another tenant).
func goodOnEveryPartition(prefix string, n int) []*kgo.Record {
	var recs []*kgo.Record
	for p := range int32(3) {
		for i := range n {
			id := fmt.Sprintf("%s-p%d-%d", prefix, p, i)
			recs = append(recs, &kgo.Record{Topic: broker.RawTopic("event"), Partition: p, Key: []byte("t"), Value: sayOn(id, "SECRET-"+id)})
			step := strings.NewReplacer(`"app_id":"app-1"`, `"app_id":"app-2"`, `"ledger":"event"`, `"ledger":"bot"`,
				`"meya.text.event.say"`, `"meya.flow.entry.step"`, `"text":`, `"data":`).Replace(string(sayOn("bot-"+id, "SECRET-bot-"+id)))
			recs = append(recs, &kgo.Record{Topic: broker.RawTopic("bot"), Partition: p, Key: []byte("t"), Value: []byte(step)})
		}
	}
	return recs
}

var goodTopics = []string{broker.EncryptedTopic("event"), broker.RedactedTopic("event"), broker.EncryptedTopic("bot"), broker.RedactedTopic("bot")}

// produceManual produces recs to the partitions they name, with the given extra client options.
func (h *harness) produceManual(opts []kgo.Opt, recs ...*kgo.Record) {
	h.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		h.t.Fatalf("producing: %v", err)
	}
}

type deadLetterJSON struct {
	Reason         schemas.Reason `json:"reason"`
	Field          string         `json:"field"`
	Source         string         `json:"source"`
	Size           int            `json:"size"`
	Payload        string         `json:"payload"`
	PayloadOmitted bool           `json:"payload_omitted"`
}

func parseDeadLetters(t *testing.T, recs []*kgo.Record) []deadLetterJSON {
	t.Helper()
	out := make([]deadLetterJSON, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r.Value, &out[i]); err != nil {
			t.Fatalf("dead letter is not JSON: %v", err)
		}
	}
	return out
}

// TestCompressedHugeRecordDoesNotStall is issue 12 item 1: an ~18 MiB record that zstd shrinks to a
// few KiB passes the broker's size limit (which applies to the compressed batch). It used to make
// the dead-letter seal exceed envelope.MaxValueSize, which Transform returned as a transient error:
// the batch was retried forever and no partition moved. Now it is dead-lettered once, without its
// bytes and with reason too_large, and every good entry behind it on every partition comes out.
func TestCompressedHugeRecordDoesNotStall(t *testing.T) {
	h := newHarness(t)
	huge := sayOn("huge", "SECRET-HUGE"+strings.Repeat("a", 18<<20))
	h.produceManual([]kgo.Opt{kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(32 << 20)},
		&kgo.Record{Topic: broker.RawTopic("event"), Partition: 0, Key: []byte("t"), Value: huge})
	good := goodOnEveryPartition("g", 4)
	h.produceManual(nil, good...)

	stop := h.run(pipeline.Config{})
	defer stop()
	outs := h.consume(2*len(good), 60*time.Second, goodTopics...)
	if len(outs) != 2*len(good) {
		t.Fatalf("good entries out = %d views, want %d: the huge record stalls its partition", len(outs), 2*len(good))
	}
	assertOnce(t, outs)
	dlRecs := h.consume(1, 10*time.Second, broker.DeadLetterTopic)
	for _, r := range append(dlRecs, outs...) {
		if bytes.Contains(r.Value, []byte("SECRET-HUGE")) {
			t.Fatalf("the huge record's text reached %s", r.Topic)
		}
	}
	dl := parseDeadLetters(t, dlRecs)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want exactly 1", len(dl))
	}
	if d := dl[0]; d.Reason != schemas.ReasonTooLarge || !d.PayloadOmitted || d.Payload != "" || d.Size != len(huge) ||
		d.Source != broker.RawTopic("event")+"/0/0" {
		t.Fatalf("dead letter = %+v; want too_large from %s/0/0 of size %d, payload omitted", d, broker.RawTopic("event"), len(huge))
	}
}

// flakyStage fails the records holding its markers: "BOOM" always (an unexpected error), "PANIC"
// always (a panic), and "FLAKY" transiently for its first flaky attempts.
type flakyStage struct {
	*pipeline.Transformer
	flaky    atomic.Int32
	flakySaw atomic.Int32
}

var errInjected = errors.New("injected failure")

func (f *flakyStage) Transform(ctx context.Context, src pipeline.Source, key, value []byte) (pipeline.Output, error) {
	switch {
	case bytes.Contains(value, []byte("BOOM")):
		return pipeline.Output{}, errInjected
	case bytes.Contains(value, []byte("PANIC")):
		var m map[string]int
		m["x"]++ // a runtime error, as a bug in a stage would raise
	case bytes.Contains(value, []byte("FLAKY")):
		f.flakySaw.Add(1)
		if f.flaky.Add(-1) >= 0 {
			return pipeline.Output{}, pipeline.Transient(errInjected)
		}
	}
	return f.Transformer.Transform(ctx, src, key, value)
}

// TestFailingRecordDeadLettered: a record that fails unexpectedly (an error or a panic) on every
// attempt is dead-lettered as unprocessable after Config.RecordAttempts attempts instead of holding
// its partition; a transient failure (an outage) is retried past that budget and never
// dead-lettered: its record comes out whole once the outage ends.
func TestFailingRecordDeadLettered(t *testing.T) {
	h := newHarness(t)
	st := &flakyStage{Transformer: h.tr}
	const attempts = 2
	st.flaky.Store(attempts + 2)
	recs := []*kgo.Record{
		{Topic: broker.RawTopic("event"), Partition: 0, Key: []byte("t"), Value: sayOn("boom", "SECRET-BOOM")},
		{Topic: broker.RawTopic("event"), Partition: 1, Key: []byte("t"), Value: sayOn("panic", "SECRET-PANIC")},
		{Topic: broker.RawTopic("event"), Partition: 2, Key: []byte("t"), Value: sayOn("flaky", "SECRET-FLAKY")},
	}
	good := goodOnEveryPartition("g", 3)
	h.produceManual(nil, append(recs, good...)...)

	stop := h.run(pipeline.Config{Transformer: st, RecordAttempts: attempts})
	defer stop()
	want := 2 * (len(good) + 1) // the good ones and the flaky one
	outs := h.consume(want, 60*time.Second, goodTopics...)
	if len(outs) != want {
		t.Fatalf("entries out = %d views, want %d", len(outs), want)
	}
	assertOnce(t, outs)
	if n := st.flakySaw.Load(); n <= attempts {
		t.Fatalf("the transiently failing record was tried %d times; want more than the %d attempts of the budget", n, attempts)
	}
	dl := parseDeadLetters(t, h.consume(2, 10*time.Second, broker.DeadLetterTopic))
	if len(dl) != 2 {
		t.Fatalf("dead letters = %d (%+v), want 2 (boom and panic)", len(dl), dl)
	}
	srcs := map[string]bool{}
	for _, d := range dl {
		if d.Reason != schemas.ReasonUnprocessable || d.Payload == "" {
			t.Errorf("dead letter = %+v, want reason %s with its payload", d, schemas.ReasonUnprocessable)
		}
		srcs[d.Source] = true
	}
	for _, s := range []string{"ledger.event/0/0", "ledger.event/1/0"} {
		if !srcs[s] {
			t.Errorf("no dead letter from %s (got %v)", s, srcs)
		}
	}
}

// TestDotAppIDRefused: with every app allowed (allow_unknown_apps), an app id of "." or ".." used
// to decode, then fail in the keyring on every retry (a stalled partition). The one name rule
// refuses it at decode. The dead-letter app is reserved: entries of a producer cannot be sealed
// among the dead letters.
func TestDotAppIDRefused(t *testing.T) {
	h := newHarness(t)
	tr := *h.tr
	tr.Apps = func(string) (ledgers.AppSettings, bool) { return ledgers.DefaultAppSettings, true }
	for _, app := range []string{".", "..", pipeline.DeadLetterApp} {
		v := bytes.Replace(sayOn("e1", "SECRET"), []byte(`"app_id":"app-1"`), []byte(`"app_id":"`+app+`"`), 1)
		out, err := tr.Transform(context.Background(), pipeline.Source{Topic: broker.RawTopic("event")}, nil, v)
		if err != nil {
			t.Fatalf("app_id %q: Transform = %v, want a dead letter", app, err)
		}
		if out.DeadLetter == nil || out.Reason != schemas.ReasonInvalidField {
			t.Fatalf("app_id %q: reason %q, dead letter %v; want %s", app, out.Reason, out.DeadLetter != nil, schemas.ReasonInvalidField)
		}
		if d := parseDeadLetters(t, []*kgo.Record{out.DeadLetter})[0]; d.Field != "app_id" {
			t.Fatalf("app_id %q: field %q, want app_id", app, d.Field)
		}
	}
}

// TestOutputTooLargeForTopicDoesNotStall: an operator who lets raw topics take larger records than
// the output topics (and raises limits.max_entry_bytes to match) used to stall every partition on
// the first such entry: its outputs were refused as too large on every attempt. Now the refusal is
// recognised and the record dead-lettered too_large; everything behind it flows.
func TestOutputTooLargeForTopicDoesNotStall(t *testing.T) {
	h := newHarness(t)
	adm := kadm.NewClient(mustClient(t, kgo.SeedBrokers(h.addrs...)))
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("8388608")}}, broker.RawTopic("event")); err != nil {
		t.Fatal(err)
	}
	tr := *h.tr
	tr.Limits = schemas.Limits{MaxBytes: 4 << 20}
	// Bot mode, ordinary user: nothing is sealed, both views are as large as the entry, and random
	// text does not compress under the output topics' 1 MiB.
	noise := make([]byte, 3<<20)
	rand.Read(noise)
	text := "SECRET-LONG" + base64.RawStdEncoding.EncodeToString(noise)[:2<<20]
	long := strings.Replace(string(sayOn("long", text)), `"mode":"agent"}`, `"mode":"bot"},"user":{"type":"user"}`, 1)
	h.produceManual([]kgo.Opt{kgo.ProducerBatchMaxBytes(8 << 20)},
		&kgo.Record{Topic: broker.RawTopic("event"), Partition: 2, Key: []byte("t"), Value: []byte(long)})
	good := goodOnEveryPartition("g", 2)
	h.produceManual(nil, good...)

	stop := h.run(pipeline.Config{Transformer: &tr})
	defer stop()
	outs := h.consume(2*len(good), 60*time.Second, goodTopics...)
	if len(outs) != 2*len(good) {
		t.Fatalf("good entries out = %d views, want %d: the entry too large for the output topics stalls the pipeline", len(outs), 2*len(good))
	}
	dl := parseDeadLetters(t, h.consume(1, 10*time.Second, broker.DeadLetterTopic))
	if len(dl) != 1 || dl[0].Reason != schemas.ReasonTooLarge || dl[0].Source != broker.RawTopic("event")+"/2/0" {
		t.Fatalf("dead letters = %+v; want one too_large from %s/2/0", dl, broker.RawTopic("event"))
	}
}
