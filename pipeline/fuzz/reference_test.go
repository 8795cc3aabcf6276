package fuzz_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/internal/reference"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// rig is a transformer with real keys (local KMS, file key store, the envelope sealer) on a fixed
// clock, so that every input is processed the same way each time.
type rig struct {
	tr     *pipeline.Transformer
	sealer *envelope.Sealer
	now    time.Time
	topics []string // "" and every raw topic
}

func newRig(tb testing.TB) *rig {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	kr, _ := testkit.LocalKeys(tb, tb.TempDir(), testkit.Keys{KeyID: kmslocal.DefaultKeyID, Clock: clock})
	sealer := envelope.NewSealer(kr, envelope.WithClock(clock))
	table := testkit.Ledgers(tb, nil)
	apps := map[string]ledgers.AppSettings{
		"app-1": ledgers.DefaultAppSettings,
		"app-2": {Transcript: false, Transport: false},
	}
	r := &rig{sealer: sealer, now: now, topics: []string{""}}
	r.tr = &pipeline.Transformer{
		Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: sealer, Clock: clock,
		Apps: func(app string) (ledgers.AppSettings, bool) { s, ok := apps[app]; return s, ok },
	}
	for _, l := range ledgers.All() {
		r.topics = append(r.topics, broker.RawTopic(l.Name))
	}
	return r
}

// checkMatchesReference runs one record through Transformer.Transform and through the decoding
// transform it replaced (pipeline/internal/reference), and fails unless they agree: the same
// verdict (both views, or a dead letter with the same reason and field); the same ledger,
// sensitivity, topics, keys and headers; the same sealed paths, each opening to the same JSON
// value; encrypted views equal once every token of the entry's record is replaced by what it
// opens to; redacted views equal as JSON, and byte for byte in everything but data (the new
// transform copies data's text instead of re-encoding it, see pipeline/splice.go).
func checkMatchesReference(t *testing.T, r *rig, src pipeline.Source, key, value []byte) (reason schemas.Reason) {
	t.Helper()
	ctx := context.Background()
	got, err := r.tr.Transform(ctx, src, key, value)
	if err != nil {
		t.Fatalf("Transform(%q) error: %v", value, err)
	}
	want, err := reference.Transform(ctx, r.tr, src, key, value)
	if err != nil {
		t.Fatalf("reference(%q) error: %v", value, err)
	}
	if want.Reason != "" {
		if got.DeadLetter == nil {
			t.Fatalf("Transform(%q) accepted what the reference dead-letters (%s %s)", value, want.Reason, want.Field)
		}
		var dl struct {
			Reason schemas.Reason `json:"reason"`
			Field  string         `json:"field"`
		}
		if err := json.Unmarshal(got.DeadLetter.Value, &dl); err != nil {
			t.Fatal(err)
		}
		if got.Reason != want.Reason || dl.Reason != want.Reason || dl.Field != want.Field {
			t.Fatalf("Transform(%q) dead letter %s %s (out %s), reference %s %s", value, dl.Reason, dl.Field, got.Reason, want.Reason, want.Field)
		}
		return want.Reason
	}
	if got.DeadLetter != nil {
		t.Fatalf("Transform(%q) dead-letters (%s) what the reference accepts", value, got.Reason)
	}
	if got.Ledger != want.Ledger || got.Sensitive != want.Sensitive || (got.Item == nil) != (want.Item == nil) {
		t.Fatalf("Transform(%q) ledger/sensitive/item = %s/%v/%v, reference %s/%v/%v", value,
			got.Ledger, got.Sensitive, got.Item != nil, want.Ledger, want.Sensitive, want.Item != nil)
	}
	for _, pair := range [][2]*kgo.Record{{got.Encrypted, want.Encrypted}, {got.Redacted, want.Redacted}} {
		g, w := pair[0], pair[1]
		if g.Topic != w.Topic || !bytes.Equal(g.Key, w.Key) || !sameHeaders(g.Headers, w.Headers) {
			t.Fatalf("Transform(%q) record %s %q %v, reference %s %q %v", value, g.Topic, g.Key, g.Headers, w.Topic, w.Key, w.Headers)
		}
	}
	gotRec, wantRec := r.record(t, got.Item), r.record(t, want.Item)
	if got.Item != nil {
		if got.Item.App != want.Item.App || got.Item.Ref != want.Item.Ref || !got.Item.Expiry.Equal(want.Item.Expiry) {
			t.Fatalf("Transform(%q) item %s/%s/%v, reference %s/%s/%v", value, got.Item.App, got.Item.Ref, got.Item.Expiry,
				want.Item.App, want.Item.Ref, want.Item.Expiry)
		}
		if gp, wp := sealedPaths(gotRec), sealedPaths(wantRec); !slices.Equal(gp, wp) {
			t.Fatalf("Transform(%q) sealed %q, reference %q", value, gp, wp)
		}
	}
	if g, w := r.plain(t, got.Encrypted.Value, gotRec), r.plain(t, want.Encrypted.Value, wantRec); !reflect.DeepEqual(g, w) {
		t.Fatalf("Transform(%q) encrypted view opens to\n%v\nreference\n%v", value, g, w)
	}
	if g, w := parse(t, got.Redacted.Value), parse(t, want.Redacted.Value); !reflect.DeepEqual(g, w) {
		t.Fatalf("Transform(%q) redacted view\n%s\nreference\n%s", value, got.Redacted.Value, want.Redacted.Value)
	}
	for _, pair := range [][2][]byte{{got.Redacted.Value, want.Redacted.Value}, {got.Encrypted.Value, want.Encrypted.Value}} {
		if g, w := head(pair[0]), head(pair[1]); !bytes.Equal(g, w) {
			t.Fatalf("Transform(%q) view outside data\n%s\nreference\n%s", value, g, w)
		}
	}
	if got.Sensitive {
		return "sensitive"
	}
	return "plain"
}

// head is a view without data: Encode writes data last, and `,"data":` cannot occur in a string
// before it (its quotes would be escaped).
func head(v []byte) []byte {
	if i := bytes.Index(v, []byte(`,"data":`)); i >= 0 {
		return v[:i]
	}
	return v
}

func sameHeaders(a, b []kgo.RecordHeader) bool {
	return slices.EqualFunc(a, b, func(x, y kgo.RecordHeader) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) })
}

func (r *rig) record(t *testing.T, item *store.Item) *envelope.Record {
	t.Helper()
	if item == nil {
		return nil
	}
	var rec envelope.Record
	if err := rec.UnmarshalBinary(item.Value); err != nil {
		t.Fatalf("sealed record does not parse: %v", err)
	}
	return &rec
}

func sealedPaths(rec *envelope.Record) []string {
	var out []string
	if rec != nil {
		for _, f := range rec.Fields {
			out = append(out, f.Path)
		}
	}
	slices.Sort(out)
	return out
}

func parse(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("view %q is not JSON: %v", b, err)
	}
	return v
}

// plain parses a view and replaces every token of rec by the JSON value it opens to.
func (r *rig) plain(t *testing.T, view []byte, rec *envelope.Record) any {
	t.Helper()
	v := parse(t, view)
	if rec == nil {
		return v
	}
	var open func(v any) any
	open = func(v any) any {
		switch x := v.(type) {
		case string:
			tok, err := envelope.ParseToken(x)
			if err != nil || tok.Ref != rec.Ref {
				return v
			}
			b, err := r.sealer.Open(context.Background(), rec, tok)
			if err != nil {
				t.Fatalf("token in the view does not open: %v", err)
			}
			var back any
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("sealed value %q is not JSON: %v", b, err)
			}
			return back
		case map[string]any:
			for k, e := range x {
				x[k] = open(e)
			}
		case []any:
			for i, e := range x {
				x[i] = open(e)
			}
		}
		return v
	}
	return open(v)
}

// hostile are the inputs the differential test always runs (and seeds the fuzzer with): odd
// JSON, odd casing, tokens in odd places, paths that lead nowhere, whole-data entries.
func hostile(r *rig, tok string) []string {
	ts := r.now.Format(time.RFC3339)
	old := r.now.Add(-2 * time.Hour).Format(time.RFC3339) // past the 1 h ledgers' TTL
	say := `{"id":"e-1","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts +
		`","thread":{"id":"t-1","mode":"agent"},"data":{"text":"hello"}}`
	bot := strings.Replace(say, `"mode":"agent"`, `"mode":"bot"`, 1)
	rep := func(s, old, new string) string { return strings.Replace(s, old, new, 1) }
	return []string{
		// The inputs of the fast path's comparison test (pipeline/fast_test.go, removed with it).
		`{"id":"e1","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"agent"},"data":{ "text" : "hi \"you\" ★", "z":1.50, "n":[1, {"a": 2}] }}`,
		`{"id":"e2","app_id":"app-1","ledger":"event","type":"meya.button.event.click","ts":"` + ts + `","thread":{"mode":"agent"},"data":{"data":{"b":1,"a":[true,null]},"text":"x"},"sensitive_paths":["data.extra.0"]}`,
		`{"id":"e3","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"bot"},"data":{"text":"not sensitive"}}`,
		`{"id":"e4","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"bot"},"sensitive":false,"sensitive_paths":["data.list.1"],"data":{"list":["a","b","c"],"text":"t"}}`,
		`{"id":"e5","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"agent"}}`,
		`{"id":"e6","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"agent"},"data":{}}`,
		say,
		bot,
		rep(bot, `"thread":`, `"user":{"type":"user"},"thread":`),
		rep(bot, `"thread":`, `"user":{"type":"Agent"},"thread":`),
		rep(bot, `"thread":`, `"user":{"type":"SYSTEM"},"thread":`),
		rep(say, `"mode":"agent"`, `"mode":"BOT"`),
		rep(say, `"mode":"agent"`, `"mode":"Bot "`),
		rep(say, `"mode":"agent"`, `"mode":"b\u006ft"`),
		rep(say, `"text":"hello"`, `"text":"hi \"you\" ★ \u00e9 \/"`),
		rep(say, `"text":"hello"`, `"text" : "spaced" , "z" : 1.50, "n":[1, {"a": 2}], "e":1E2, "neg":-0`),
		rep(say, `"text":"hello"`, `"text":12`),
		rep(say, `"text":"hello"`, `"text":"12"`),
		rep(say, `"text":"hello"`, `"text":{"b":[1,2,{"c":null}],"a":"x"}`),
		rep(say, `"text":"hello"`, `"text":null`),
		rep(say, `"text":"hello"`, `"text":true,"other":false`),
		rep(say, `"text":"hello"`, `"text":"`+strings.Repeat("x", 20<<10)+`"`),
		rep(say, `"text":"hello"`, `"text":"`+strings.Repeat("y", 1<<20)+`"`), // beyond the 1 MiB limit
		rep(say, `"text":"hello"`, `"text":"hello","text":"again"`),
		rep(say, `"text":"hello"`, `"text":"hello","te\u0078t":"again"`),
		rep(say, `"data":`, `"d\u0061ta":`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"\u0074ext":"escaped name"}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{ }`),
		rep(say, `"data":{"text":"hello"}`, `"data":null`),
		rep(say, `,"data":{"text":"hello"}`, ``),
		rep(say, `"data":{"text":"hello"}`, `"data":[]`),
		rep(say, `"data":{"text":"hello"}`, `"data":"x"`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"text":"x","n":1e400}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"text":"x","n":1e-400}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"text":"x","n":123456789012345678901234567890}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"text":`+strings.Repeat("[", 29)+strings.Repeat("]", 29)+`}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"text":`+strings.Repeat("[", 30)+strings.Repeat("]", 30)+`}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"text":`+strings.Repeat("[", 31)+strings.Repeat("]", 31)+`}`),
		rep(say, `"data":{"text":"hello"}`, `"data":{"x":`+strings.Repeat(`{"a":`, 20)+`"deep"`+strings.Repeat("}", 20)+`}`),
		rep(say, `"text":"hello"`, "\"text\":\"\xff\""),
		rep(say, `"text":"hello"`, `"text":"\ud800"`),
		rep(say, `"text":"hello"`, `"text":"\ud83d\ude00"`),
		rep(say, `"text":"hello"`, "\"text\":\"a\u2028b<&>\""),
		// Tokens in odd places.
		rep(say, `"text":"hello"`, `"text":"`+tok+`"`),
		rep(bot, `"text":"hello"`, `"text":"`+tok+`"`),
		rep(say, `"text":"hello"`, `"text":"hello","other":"`+tok+`"`),
		rep(say, `"text":"hello"`, `"text":"hello","list":["a",{"b":"`+tok+`"}]`),
		rep(say, `"text":"hello"`, `"text":"\u0076eil:v1:`+tok[len("veil:v1:"):]+`"`),
		rep(say, `"text":"hello"`, `"text":"hello","other":"\u0076eil:v1:`+tok[len("veil:v1:"):]+`"`),
		rep(say, `"text":"hello"`, `"text":"veil:v1:forged"`),
		rep(say, `"text":"hello"`, `"text":"hello","x":"veil:"`),
		rep(say, `"text":"hello"`, `"text":"hello","`+tok+`":1`),
		rep(say, `"text":"hello"`, `"text":"hello","\u0076eil:x":1`),
		rep(say, `"id":"e-1"`, `"id":"`+tok+`"`),
		rep(say, `"id":"t-1"`, `"id":"`+tok+`"`),
		rep(say, `"thread":`, `"user":{"id":"`+tok+`"},"thread":`),
		rep(say, `"thread":`, `"sensitive_paths":["`+tok+`"],"thread":`),
		// sensitive flags and paths.
		rep(bot, `"thread":`, `"sensitive":true,"thread":`),
		rep(bot, `"thread":`, `"sensitive":false,"thread":`),
		rep(bot, `"thread":`, `"sensitive_paths":["data.list.1","data.nope","data.text.x"],"thread":`),
		rep(rep(bot, `"thread":`, `"sensitive_paths":["data.list.1"],"thread":`), `"text":"hello"`, `"text":"t","list":["a","b","c"]`),
		rep(rep(say, `"thread":`, `"sensitive_paths":["data.obj","data.obj.a"],"thread":`), `"text":"hello"`, `"text":"t","obj":{"a":1,"b":2}`),
		rep(rep(say, `"thread":`, `"sensitive_paths":["data"],"thread":`), `"text":"hello"`, `"text":"t","obj":{"a":1}`),
		rep(rep(say, `"thread":`, `"sensitive_paths":["data.0"],"thread":`), `"text":"hello"`, `"text":"t","0":"zero"`),
		rep(say, `"thread":`, `"sensitive_paths":[],"thread":`),
		rep(say, `"thread":`, `"sensitive_paths":["nope"],"thread":`),
		// Members out of the usual order: data first, the rule inputs after it.
		`{"data":{"text":"first"},"thread":{"mode":"bot"},"user":{"type":"user"},"ts":"` + ts + `","type":"meya.text.event.say","ledger":"event","app_id":"app-1","id":"e-9"}`,
		// Whole-data entries (an unknown type), with names that cannot be paths.
		rep(say, `"meya.text.event.say"`, `"custom.type"`),
		rep(rep(say, `"meya.text.event.say"`, `"custom.type"`), `"text":"hello"`, `"b":1,"a":{"x":[1]},"c":"`+tok+`"`),
		rep(rep(say, `"meya.text.event.say"`, `"custom.type"`), `"text":"hello"`, `"a.b":1`),
		rep(rep(say, `"meya.text.event.say"`, `"custom.type"`), `"text":"hello"`, `"":1`),
		// Rule inputs: components, triggers, apps, ledgers, time.
		rep(say, `"thread":`, `"component":{"id":"c","sensitive":false},"thread":`),
		rep(say, `"thread":`, `"trigger":{"entry_id":"x","sensitive":true},"thread":`),
		rep(say, `"app-1"`, `"app-2"`),
		rep(say, `"app-1"`, `"app-9"`),
		rep(say, `"app-1"`, `"veil.deadletter"`),
		rep(say, `"ledger":"event"`, `"ledger":"bot"`),
		rep(say, `"ledger":"event"`, `"ledger":"http"`),
		rep(say, `"ledger":"event"`, `"ledger":"nope"`),
		rep(rep(say, `"ledger":"event","type":"meya.text.event.say"`, `"ledger":"bot","type":"meya.flow.entry.step"`), ts, old),
		rep(rep(rep(say, `"ledger":"event","type":"meya.text.event.say"`, `"ledger":"bot","type":"meya.flow.entry.step"`), ts, old), `"text":"hello"`, `"data":"`+tok+`","x":"`+tok+`"`),
		rep(rep(say, `"ledger":"event","type":"meya.text.event.say"`, `"ledger":"log","type":"meya.log.entry"`), `"text":"hello"`, `"message":"m","attributes":{"a":[1,"veil:v1:zz"]}`),
		rep(say, ts, "2099-01-01T00:00:00Z"),
		rep(say, ts, r.now.Add(-2*time.Hour).Format("2006-01-02T15:04:05.999+02:00")),
		rep(say, `"id":"e-1"`, `"id":"e-1","extra":1`),
		rep(say, `"id":"e-1"`, `"id":"e-1","id":"e-2"`),
		say[:len(say)-3],
		say + say,
		say + ` `,
		`[` + say + `]`,
		"",
		"null",
	}
}

// aToken seals one value and returns its token: a well-formed token of app-1 that no store holds.
func aToken(tb testing.TB, r *rig) string {
	_, toks, err := r.sealer.Seal(context.Background(), envelope.Header{App: "app-1", Ledger: "event", Ref: envelope.RefID{1}, Expiry: r.now.Add(time.Hour)},
		[]envelope.Field{{Path: "data.text", Value: []byte(`"x"`)}})
	if err != nil {
		tb.Fatal(err)
	}
	return toks[0].Encode()
}

// TestTransformMatchesReference compares the transform with the reference on the hostile inputs
// (on every topic) and on 400 sample entries (the realistic mix, with canaries).
func TestTransformMatchesReference(t *testing.T) {
	r := newRig(t)
	tok := aToken(t, r)
	verdicts := map[schemas.Reason]int{}
	for i, in := range hostile(r, tok) {
		for _, topic := range []string{"", broker.RawTopic("event"), broker.RawTopic("bot")} {
			t.Run(fmt.Sprint(i, topic), func(t *testing.T) {
				verdicts[checkMatchesReference(t, r, pipeline.Source{Topic: topic, Partition: 1, Offset: int64(i)}, []byte("k"), []byte(in))]++
			})
		}
	}
	gen := sample.New(sample.Options{Seed: 11, Canaries: true, Now: func() time.Time { return r.now }})
	for i := range 400 {
		e := gen.Next()
		verdicts[checkMatchesReference(t, r, pipeline.Source{Topic: broker.RawTopic(e.Ledger), Partition: 2, Offset: int64(i)}, e.Key, e.Value)]++
	}
	// The inputs must reach both views, sensitive and not, and many kinds of dead letter.
	if verdicts["sensitive"] < 150 || verdicts["plain"] < 150 || len(verdicts) < 14 {
		t.Errorf("verdicts %v: the inputs no longer cover the transform", verdicts)
	}
	t.Logf("verdicts: %v", verdicts)
}

// FuzzTransformMatchesReference is the differential fuzz test: arbitrary bytes through the
// transform and the reference must give the same outputs (checkMatchesReference).
func FuzzTransformMatchesReference(f *testing.F) {
	r := newRig(f)
	tok := aToken(f, r)
	for _, in := range hostile(r, tok) {
		if len(in) < 4<<10 {
			f.Add([]byte(in), uint8(0))
			f.Add([]byte(in), uint8(1))
		}
	}
	f.Fuzz(func(t *testing.T, value []byte, topic uint8) {
		src := pipeline.Source{Topic: r.topics[int(topic)%len(r.topics)], Partition: 1, Offset: 42}
		checkMatchesReference(t, r, src, []byte("k"), value)
	})
}
