package pipeline_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// badInput is one hostile record of the catalogue. value builds the raw bytes around a marker
// unique to the case (at least 16 bytes), which must never show up in any output record.
type badInput struct {
	name   string
	topic  string // ledger whose raw topic the record is produced to
	value  func(m string) string
	reason schemas.Reason
	field  string // the dead-letter record's field
}

// The say entry the catalogue edits; "MARK" is replaced by the case's marker.
const sayTemplate = `{"id":"e-MARK","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"NOW",` +
	`"thread":{"id":"t-1","mode":"agent"},"user":{"id":"u-1","type":"user"},"data":{"text":"MARK"}}`

// tokenInput is a token-shaped value put at a sensitive path (data.text of a say entry of app, or
// app-1 when empty): a genuine token, passed through untouched, or a genuine token edited so that
// it still parses, which ingestion tells from a genuine one by looking up its record (no decrypt)
// and seals like any other value.
type tokenInput struct {
	name    string
	token   string
	want    reveal.Status // what revealing the token itself answers
	genuine bool
	app     string
}

// badInputs returns the catalogue. say(m, old, new...) is the say entry with marker m and the
// given replacements applied; tok is a genuine token of a sealed entry.
func badInputs(now string, tok string) []badInput {
	say := func(m string, oldnew ...string) string {
		s := strings.NewReplacer("MARK", m, "NOW", now).Replace(sayTemplate)
		return strings.NewReplacer(oldnew...).Replace(s)
	}
	deep := func(open, close string, n int) func(string) string {
		return func(m string) string {
			return say(m, `"text":"`+m+`"`, `"text":`+strings.Repeat(open, n)+`"`+m+`"`+strings.Repeat(close, n))
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, envelope.TokenPrefix))
	badApp := bytes.Clone(raw)
	badApp[1] = '/' // the first byte of the app id, outside the id charset
	longer := bytes.Clone(raw)
	longer[0]++ // app length one more than the bytes that follow
	enc := func(b []byte) string { return envelope.TokenPrefix + base64.RawURLEncoding.EncodeToString(b) }
	withToken := func(t string) func(string) string {
		return func(m string) string { return say(m, `"text":"`+m+`"`, `"text":"`+t+`","note":"`+m+`"`) }
	}

	const (
		malformed = schemas.ReasonMalformedJSON
		invalid   = schemas.ReasonInvalidField
		missing   = schemas.ReasonMissingField
	)
	return []badInput{
		// Broken JSON.
		{"unterminated object", "event", func(m string) string { s := say(m); return s[:len(s)-2] }, malformed, ""},
		{"unterminated string", "event", func(m string) string { return `{"id":"e-1","data":{"text":"` + m }, malformed, ""},
		{"missing colon", "event", func(m string) string { return say(m, `"app_id":`, `"app_id" `) }, malformed, ""},
		{"single quotes", "event", func(m string) string { return `{'id':'` + m + `'}` }, malformed, ""},
		{"trailing comma", "event", func(m string) string { return say(m, `"mode":"agent"}`, `"mode":"agent",}`) }, malformed, ""},
		{"bare word value", "event", func(m string) string { return say(m, `"text":"`+m+`"`, `"text":`+m) }, malformed, ""},
		{"trailing garbage", "event", func(m string) string { return say(m) + " garbage " + m }, malformed, ""},
		{"two objects", "event", func(m string) string { return say(m) + say(m) }, malformed, ""},
		{"empty record", "event", func(string) string { return "" }, malformed, ""},
		{"whitespace only", "event", func(string) string { return " \n\t " }, malformed, ""},
		{"top-level array", "event", func(m string) string { return `["` + m + `"]` }, invalid, ""},
		{"top-level string", "event", func(m string) string { return `"` + m + `"` }, invalid, ""},
		{"top-level number", "event", func(string) string { return `12345678901234567890` }, invalid, ""},
		{"top-level null", "event", func(string) string { return `null` }, missing, "id"},
		// Duplicates and unknown members.
		{"duplicate top-level key", "event", func(m string) string { return say(m, `"app_id":"app-1"`, `"app_id":"app-1","app_id":"app-2"`) }, schemas.ReasonDuplicateKey, "app_id"},
		{"duplicate key in data", "event", func(m string) string { return say(m, `"text":"`+m+`"`, `"text":"`+m+`","text":"x"`) }, schemas.ReasonDuplicateKey, "data"},
		{"duplicate key deep in data", "event", func(m string) string {
			return say(m, `"text":"`+m+`"`, `"text":"x","form":{"a":[{"k":"`+m+`","k":1}]}`)
		}, schemas.ReasonDuplicateKey, "data"},
		{"unknown top-level member", "event", func(m string) string { return say(m, `"ledger":`, `"password":"`+m+`","ledger":`) }, schemas.ReasonUnknownField, ""},
		{"unknown member in thread", "event", func(m string) string { return say(m, `"mode":"agent"`, `"mode":"agent","x":"`+m+`"`) }, schemas.ReasonUnknownField, "thread"},
		// Size and depth.
		{"huge id", "event", func(m string) string { return say(m, `"id":"e-`+m, `"id":"e-`+m+strings.Repeat("x", 200)) }, invalid, "id"},
		{"huge thread id", "event", func(m string) string { return say(m, `"id":"t-1"`, `"id":"`+m+strings.Repeat("t", 300)+`"`) }, invalid, "thread.id"},
		{"huge app id", "event", func(m string) string { return say(m, `"app_id":"app-1"`, `"app_id":"`+m+strings.Repeat("a", 200)+`"`) }, invalid, "app_id"},
		{"entry over 1 MiB", "event", func(m string) string {
			return say(m, `"text":"`+m+`"`, `"text":"`+m+strings.Repeat("z", schemas.DefaultMaxBytes)+`"`)
		}, schemas.ReasonTooLarge, ""},
		{"too many sensitive paths", "event", func(m string) string {
			return say(m, `"data":`, `"sensitive_paths":[`+strings.Repeat(`"data.`+m+`",`, schemas.MaxSensitivePaths)+`"data.x"],"data":`)
		}, invalid, "sensitive_paths"},
		{"deep arrays", "event", deep("[", "]", 100), schemas.ReasonTooDeep, ""},
		{"deep objects", "event", deep(`{"a":`, "}", 100), schemas.ReasonTooDeep, ""},
		{"deep nesting unterminated", "event", func(m string) string { return `{"data":` + strings.Repeat("[", 5000) + `"` + m }, schemas.ReasonTooDeep, ""},
		// Text encoding.
		{"invalid UTF-8 in value", "event", func(m string) string { return say(m, `"text":"`+m, "\"text\":\"\xff\xfe"+m) }, schemas.ReasonInvalidUTF8, ""},
		{"invalid UTF-8 in key", "event", func(m string) string { return say(m, `"text":`, "\"te\xc3xt\":\""+m+`","text":`) }, schemas.ReasonInvalidUTF8, ""},
		{"overlong UTF-8", "event", func(m string) string { return say(m, `"text":"`+m, "\"text\":\"\xc0\xaf"+m) }, schemas.ReasonInvalidUTF8, ""},
		{"lone surrogate escape", "event", func(m string) string { return say(m, `"text":"`+m, `"text":"\ud800`+m) }, schemas.ReasonInvalidUTF8, "data"},
		{"control character in id", "event", func(m string) string { return say(m, `"id":"e-`, `"id":"\u0007e-`) }, invalid, "id"},
		// Wrong types.
		{"id number", "event", func(m string) string { return say(m, `"id":"e-`+m+`"`, `"id":12,"note":"`+m+`"`) }, invalid, "id"},
		{"ts number", "event", func(m string) string { return say(m, `"ts":"`+now+`"`, `"ts":1764000000`) }, invalid, "ts"},
		{"thread string", "event", func(m string) string { return say(m, `{"id":"t-1","mode":"agent"}`, `"t-1"`) }, invalid, "thread"},
		{"sensitive string", "event", func(m string) string { return say(m, `"data":`, `"sensitive":"true","data":`) }, invalid, "sensitive"},
		{"sensitive_paths string", "event", func(m string) string { return say(m, `"data":`, `"sensitive_paths":"data.text","data":`) }, invalid, "sensitive_paths"},
		{"sensitive_paths numbers", "event", func(m string) string { return say(m, `"data":`, `"sensitive_paths":[1],"data":`) }, invalid, "sensitive_paths"},
		{"data array", "event", func(m string) string { return say(m, `{"text":"`+m+`"}`, `["`+m+`"]`) }, invalid, "data"},
		{"data string", "event", func(m string) string { return say(m, `{"text":"`+m+`"}`, `"`+m+`"`) }, invalid, "data"},
		{"component string", "event", func(m string) string { return say(m, `"data":`, `"component":"c-1","data":`) }, invalid, "component"},
		// Missing fields.
		{"missing id", "event", func(m string) string { return say(m, `"id":"e-`+m+`",`, "") }, missing, "id"},
		{"missing app_id", "event", func(m string) string { return say(m, `"app_id":"app-1",`, "") }, missing, "app_id"},
		{"missing ledger", "event", func(m string) string { return say(m, `"ledger":"event",`, "") }, missing, "ledger"},
		{"missing type", "event", func(m string) string { return say(m, `"type":"meya.text.event.say",`, "") }, missing, "type"},
		{"missing ts", "event", func(m string) string { return say(m, `"ts":"`+now+`",`, "") }, missing, "ts"},
		{"empty app_id", "event", func(m string) string { return say(m, `"app_id":"app-1"`, `"app_id":""`) }, missing, "app_id"},
		// Timestamps.
		{"ts not a time", "event", func(m string) string { return say(m, now, "yesterday") }, invalid, "ts"},
		{"ts date only", "event", func(m string) string { return say(m, now, now[:10]) }, invalid, "ts"},
		{"ts without zone", "event", func(m string) string { return say(m, now, strings.TrimSuffix(now, "Z")) }, invalid, "ts"},
		{"ts month 13", "event", func(m string) string { return say(m, now, "2026-13-01T00:00:00Z") }, invalid, "ts"},
		{"ts zero time", "event", func(m string) string { return say(m, now, "0001-01-01T00:00:00Z") }, missing, "ts"},
		{"ts far future", "event", func(m string) string { return say(m, now, "9999-12-31T23:59:59Z") }, schemas.ReasonTimestamp, "ts"},
		{"ts an hour ahead", "event", func(m string) string { return say(m, now, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)) }, schemas.ReasonTimestamp, "ts"},
		{"ts far past", "event", func(m string) string { return say(m, now, "1970-01-01T00:00:00Z") }, schemas.ReasonTimestamp, "ts"},
		{"ts eight days old", "event", func(m string) string { return say(m, now, time.Now().Add(-8*24*time.Hour).UTC().Format(time.RFC3339)) }, schemas.ReasonTimestamp, "ts"},
		// Ledgers, types and apps.
		{"unknown ledger", "event", func(m string) string { return say(m, `"ledger":"event"`, `"ledger":"secrets"`) }, schemas.ReasonUnknownLedger, "ledger"},
		{"ledger name with slash", "event", func(m string) string { return say(m, `"ledger":"event"`, `"ledger":"../event"`) }, invalid, "ledger"},
		{"ledger not matching topic", "http", func(m string) string { return say(m) }, invalid, "ledger"},
		{"type on the wrong ledger", "bot", func(m string) string { return say(m, `"ledger":"event"`, `"ledger":"bot"`) }, schemas.ReasonTypeLedger, "type"},
		{"unknown app", "event", func(m string) string { return say(m, `"app_id":"app-1"`, `"app_id":"app-unknown"`) }, schemas.ReasonUnknownApp, "app_id"},
		{"app id with path characters", "event", func(m string) string { return say(m, `"app_id":"app-1"`, `"app_id":"app-1/../app-2"`) }, invalid, "app_id"},
		{"app id with space", "event", func(m string) string { return say(m, `"app_id":"app-1"`, `"app_id":"app 1"`) }, invalid, "app_id"},
		{"sensitive path outside data", "event", func(m string) string { return say(m, `"data":`, `"sensitive_paths":["thread.id"],"data":`) }, invalid, "sensitive_paths"},
		{"sensitive path empty segment", "event", func(m string) string { return say(m, `"data":`, `"sensitive_paths":["data..text"],"data":`) }, invalid, "sensitive_paths"},
		// Forged tokens.
		{"token not base64", "event", withToken(envelope.TokenPrefix + "!!!!not*base64!!!!"), schemas.ReasonForgedToken, "data.text"},
		{"token prefix only", "event", withToken(envelope.TokenPrefix), schemas.ReasonForgedToken, "data.text"},
		{"unknown token version", "event", withToken("veil:v9:" + strings.TrimPrefix(tok, envelope.TokenPrefix)), schemas.ReasonForgedToken, "data.text"},
		{"truncated real token", "event", withToken(tok[:len(tok)-4]), schemas.ReasonForgedToken, "data.text"},
		{"real token one char short", "event", withToken(tok[:len(tok)-1]), schemas.ReasonForgedToken, "data.text"},
		{"real token extended", "event", withToken(tok + "AAAA"), schemas.ReasonForgedToken, "data.text"},
		{"real token with a newline", "event", withToken(tok[:20] + `\n` + tok[20:]), schemas.ReasonForgedToken, "data.text"},
		{"token app byte outside charset", "event", withToken(enc(badApp)), schemas.ReasonForgedToken, "data.text"},
		{"token app length edited", "event", withToken(enc(longer)), schemas.ReasonForgedToken, "data.text"},
		{"forged token nested in a list", "event", func(m string) string {
			return say(m, `"text":"`+m+`"`, `"text":"hi","extra":[{"x":"`+m+`"},"veil:v1:AAAA"]`)
		}, schemas.ReasonForgedToken, "data"},
		// The dead letter's field never holds a member name from data (which may be data: a form
		// field named "ssn 078-05-1120"): only the registry path that holds it, or "data".
		{"forged token under a form field named by its value", "event", func(m string) string {
			return say(m, `"meya.text.event.say"`, `"meya.form.event.submit"`, `"text":"`+m+`"`, `"fields":{"`+m+` 078-05-1120":"veil:v1:AAAA"}`)
		}, schemas.ReasonForgedToken, "data.fields"},
		{"forged token under a member outside the registry", "event", func(m string) string {
			return say(m, `"text":"`+m+`"`, `"text":"hi","`+m+`":"veil:v1:AAAA"`)
		}, schemas.ReasonForgedToken, "data"},
		// Only data is sealed and redacted: a token anywhere else would reach redacted.* as it is.
		{"genuine token as a data member name", "event", func(m string) string {
			return say(m, `"text":"`+m+`"`, `"text":"`+m+`","`+tok+`":"x"`)
		}, schemas.ReasonForgedToken, "data"},
		{"genuine token as entry id", "event", func(m string) string { return say(m, `"id":"e-`+m+`"`, `"id":"`+tok+`"`) }, invalid, "id"},
		{"genuine token as thread id", "event", func(m string) string { return say(m, `"id":"t-1"`, `"id":"`+tok+`"`) }, invalid, "thread.id"},
		{"genuine token as user id", "event", func(m string) string { return say(m, `"id":"u-1"`, `"id":"`+tok+`"`) }, invalid, "user.id"},
	}
}

// editedTokens are edits of a genuine token that still parse. Nothing at ingestion can tell them
// from a genuine token (checking one would mean opening it, which the pipeline never does: it
// passes tokens through untouched), so they flow through like one; they only fail when opened.
func editedTokens(t *testing.T, toks []envelope.Token) []tokenInput {
	t.Helper()
	flipKEK := toks[0]
	flipKEK.RefKEK[5] ^= 0x01
	flipTag := toks[0]
	flipTag.Tag[15] ^= 0x80
	swapped := toks[0]
	swapped.Field = toks[1].Field // names the other field of the same record
	outOfRange := toks[0]
	outOfRange.Field = 200
	otherApp := toks[0]
	otherApp.App = "app-2" // same bytes otherwise: the record is looked up under app-2
	enc := toks[0].Encode()
	i := len(envelope.TokenPrefix) + 30 // a character inside the ref KEK
	c := byte('A')
	if enc[i] == 'A' {
		c = 'B'
	}
	flippedChar := enc[:i] + string(c) + enc[i+1:]
	out := []tokenInput{
		// A ref KEK flip is not visible without decrypting: the tag still matches, so the token
		// passes as genuine (it opens nothing; the pipeline never decrypts to find out).
		{"ref KEK bit flipped", flipKEK.Encode(), reveal.StatusInvalid, true, ""},
		{"tag bit flipped", flipTag.Encode(), reveal.StatusInvalid, false, ""},
		{"field index edited to the other field", swapped.Encode(), reveal.StatusInvalid, false, ""},
		{"field index out of range", outOfRange.Encode(), reveal.StatusInvalid, false, ""},
		{"one character of the ref KEK flipped", flippedChar, reveal.StatusInvalid, true, ""},
		// No record of app-2 has that ref: the answer is the one for erased data, so revealing is
		// no oracle for which refs exist.
		{"app edited", otherApp.Encode(), reveal.StatusExpired, false, ""},
		{"app edited, in an app-2 entry", otherApp.Encode(), reveal.StatusExpired, false, "app-2"},
		// Copies of a genuine token pass untouched, as the seed asks; in another app's entry the
		// token is not that app's, and is sealed under it.
		{"genuine token copied", toks[0].Encode(), reveal.StatusOK, true, ""},
		{"genuine token copied into another app's entry", toks[0].Encode(), reveal.StatusOK, false, "app-2"},
	}
	for _, ti := range out {
		if _, err := envelope.ParseToken(ti.token); err != nil {
			t.Fatalf("%s: edited token does not parse (%v); it belongs in the dead-letter catalogue", ti.name, err)
		}
	}
	return out
}

// TestBadInputCatalogue produces every entry of the catalogue between good entries on real kfake
// and checks that each lands on veil.deadletter exactly once with its reason, that no dead-letter
// record holds the raw bytes (only a token, which reopens to their base64), and that every good
// entry around them comes out: bad input never stalls the partition.
//
// Tokens edited so that they still parse cannot be caught at ingestion; the test checks the honest
// behaviour instead: they pass through untouched to the encrypted view (★★★★★ in the redacted
// view) and reveal as invalid (or expired, when the edit names a ref that does not exist).
func TestBadInputCatalogue(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	nowT := time.Now().UTC()
	now := nowT.Format(time.RFC3339)

	// A genuine sealed entry with two sensitive fields (button click: data.text and data.data),
	// stored, so its tokens are real ones.
	click := `{"id":"e-click","app_id":"app-1","ledger":"event","type":"meya.button.event.click","ts":"` + now +
		`","thread":{"id":"t-1","mode":"agent"},"data":{"text":"yes","data":{"k":"v"}}}`
	out, err := h.tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: 1 << 40}, []byte("t"), []byte(click))
	if err != nil || out.Item == nil || out.DeadLetter != nil {
		t.Fatalf("sealing the genuine entry: item %v, dead letter %v, err %v", out.Item != nil, out.DeadLetter != nil, err)
	}
	if err := h.store.Put(ctx, []store.Item{*out.Item}); err != nil {
		t.Fatal(err)
	}
	sealed, err := schemas.Decode(out.Encrypted.Value, schemas.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var toks []envelope.Token
	for _, p := range []string{"data.text", "data.data"} {
		v, _ := sealed.Get(schemas.MustParsePath(p))
		s, _ := v.(string)
		tk, err := envelope.ParseToken(s)
		if err != nil {
			t.Fatalf("%s of the sealed entry is not a token: %v", p, err)
		}
		if _, st, err := h.opener.Open(ctx, s); err != nil || st != reveal.StatusOK {
			t.Fatalf("genuine token %s = %s, %v; want ok", p, st, err)
		}
		toks = append(toks, tk)
	}

	cases := badInputs(now, toks[0].Encode())
	edited := editedTokens(t, toks)
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		names[c.name] = true
	}

	good := func(id string) []byte {
		return []byte(strings.NewReplacer("e-MARK", id, "MARK", "good value of "+id, "NOW", now).Replace(sayTemplate))
	}
	type sent struct {
		c      badInput
		marker string
		raw    []byte
		rec    *kgo.Record
	}
	var (
		bad      []*sent
		recs     []*kgo.Record
		goodIDs  []string
		markers  []string
		passThru = map[string]tokenInput{} // entry id → token-shaped value at data.text
	)
	addGood := func() {
		id := fmt.Sprintf("good-%03d", len(goodIDs))
		goodIDs = append(goodIDs, id)
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic("event"), Key: []byte("t"), Value: good(id)})
	}
	addGood()
	for i, c := range cases {
		m := fmt.Sprintf("BADMARK-%03d-%08x", i, nowT.UnixNano()&0xffffffff)
		raw := []byte(c.value(m))
		s := &sent{c: c, marker: m, raw: raw, rec: &kgo.Record{Topic: broker.RawTopic(c.topic), Key: []byte("t"), Value: raw}}
		if bytes.Contains(raw, []byte(m)) {
			markers = append(markers, m)
		} else {
			s.marker = "" // nothing to look for (null, empty record…)
		}
		bad = append(bad, s)
		recs = append(recs, s.rec)
		addGood()
	}
	for i, ti := range edited {
		id := fmt.Sprintf("edited-%02d", i)
		passThru[id] = ti
		app := cmp.Or(ti.app, "app-1")
		v := strings.NewReplacer("e-MARK", id, `"text":"MARK"`, `"text":"`+ti.token+`"`, "NOW", now, `"app-1"`, `"`+app+`"`).Replace(sayTemplate)
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic("event"), Key: []byte("t"), Value: []byte(v)})
		addGood()
	}

	// The oversized case needs a producer and a topic that take records over 1 MiB, as a
	// broker configured for large messages would.
	adm := kadm.NewClient(mustClient(t, kgo.SeedBrokers(h.addrs...)))
	for _, l := range []string{"event", "http", "bot"} {
		if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("8388608")}}, broker.RawTopic(l)); err != nil {
			t.Fatalf("raising max.message.bytes: %v", err)
		}
	}
	prod := mustClient(t, kgo.SeedBrokers(h.addrs...), kgo.ProducerBatchMaxBytes(8<<20), kgo.MaxBufferedBytes(64<<20))
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	stop := h.run(pipeline.Config{})
	defer stop()

	dl := h.consume(len(bad), 60*time.Second, broker.DeadLetterTopic)
	outs := h.consume(2*(len(goodIDs)+len(edited)), 60*time.Second, broker.EncryptedTopic("event"), broker.RedactedTopic("event"))

	// Every output record, dead letters included, is free of every marker.
	for _, r := range append(cloneRecords(dl), outs...) {
		if m := testkit.ContainsAny(r.Value, markers); m != "" {
			t.Errorf("marker %s leaked into %s", m, r.Topic)
		}
		for _, hd := range r.Headers {
			if m := testkit.ContainsAny(hd.Value, markers); m != "" {
				t.Errorf("marker %s leaked into a header of %s", m, r.Topic)
			}
		}
	}

	bySource := map[string][]*kgo.Record{}
	for _, r := range dl {
		bySource[string(headerOf(r, pipeline.HeaderSource))] = append(bySource[string(headerOf(r, pipeline.HeaderSource))], r)
	}
	if len(dl) != len(bad) {
		t.Errorf("dead letters = %d, want %d (one per bad input)", len(dl), len(bad))
	}
	for _, s := range bad {
		t.Run(s.c.name, func(t *testing.T) {
			src := pipeline.Source{Topic: s.rec.Topic, Partition: s.rec.Partition, Offset: s.rec.Offset}.String()
			got := bySource[src]
			if len(got) != 1 {
				t.Fatalf("dead letters from %s = %d, want 1", src, len(got))
			}
			var rec struct {
				Reason  schemas.Reason `json:"reason"`
				Field   string         `json:"field"`
				Source  string         `json:"source"`
				Size    int            `json:"size"`
				Payload string         `json:"payload"`
			}
			if err := json.Unmarshal(got[0].Value, &rec); err != nil {
				t.Fatalf("dead letter is not JSON: %v", err)
			}
			if rec.Reason != s.c.reason || rec.Field != s.c.field {
				t.Errorf("dead letter reason, field = %s, %q; want %s, %q", rec.Reason, rec.Field, s.c.reason, s.c.field)
			}
			if hv := string(headerOf(got[0], pipeline.HeaderReason)); hv != string(s.c.reason) {
				t.Errorf("header %s = %s, want %s", pipeline.HeaderReason, hv, s.c.reason)
			}
			if rec.Source != src || rec.Size != len(s.raw) {
				t.Errorf("dead letter source, size = %s, %d; want %s, %d", rec.Source, rec.Size, src, len(s.raw))
			}
			if len(s.raw) >= 16 && bytes.Contains(got[0].Value, s.raw) {
				t.Errorf("dead letter holds the raw bytes")
			}
			if !envelope.IsToken(rec.Payload) {
				t.Fatalf("payload is not a token")
			}
			v, st, err := h.opener.Open(ctx, rec.Payload)
			if err != nil || st != reveal.StatusOK {
				t.Fatalf("payload reopens with %s, %v; want ok", st, err)
			}
			var b64 string
			if err := json.Unmarshal(v, &b64); err != nil {
				t.Fatalf("payload value is not a JSON string: %v", err)
			}
			back, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || !bytes.Equal(back, s.raw) {
				t.Errorf("payload opens to %d bytes (err %v), want the %d raw bytes", len(back), err, len(s.raw))
			}
		})
	}

	// Good entries and entries carrying edited tokens all come out once in each view.
	seen := map[string]int{}
	for _, r := range outs {
		e := decodeOutput(t, r)
		seen[r.Topic+"|"+e.ID]++
		ti, ok := passThru[e.ID]
		if !ok {
			continue
		}
		v, _ := e.Get(schemas.MustParsePath("data.text"))
		s, _ := v.(string)
		if r.Topic == broker.RedactedTopic("event") {
			if s != envelope.Redacted {
				t.Errorf("%s: redacted view = %q, want %s", ti.name, s, envelope.Redacted)
			}
			continue
		}
		if ti.genuine {
			if s != ti.token {
				t.Errorf("%s: the genuine token was changed on its way through", ti.name)
			}
			if _, st, err := h.opener.Open(ctx, s); err != nil || (st == reveal.StatusOK) != (ti.want == reveal.StatusOK) {
				t.Errorf("%s: revealing it = %s, %v; want %s", ti.name, st, err, ti.want)
			}
			continue
		}
		// Not this app's genuine token: sealed like any other value, so the encrypted view holds
		// a new token, which opens to the text the producer sent.
		if s == ti.token {
			t.Errorf("%s: token-shaped text passed through to the encrypted view unsealed", ti.name)
			continue
		}
		pt, st, err := h.opener.Open(ctx, s)
		var back string
		if err == nil && st == reveal.StatusOK {
			err = json.Unmarshal(pt, &back)
		}
		if err != nil || st != reveal.StatusOK || back != ti.token {
			t.Errorf("%s: its sealed value reveals %s, %v; want ok and the text sent", ti.name, st, err)
		}
	}
	ids := append([]string(nil), goodIDs...)
	for id := range passThru {
		ids = append(ids, id)
	}
	for _, id := range ids {
		for _, topic := range []string{broker.EncryptedTopic("event"), broker.RedactedTopic("event")} {
			if n := seen[topic+"|"+id]; n != 1 {
				t.Errorf("%s on %s %d times, want once", id, topic, n)
			}
		}
	}
	t.Logf("bad inputs tried: %d dead-lettered (%d distinct reasons), %d token-shaped values at a sensitive path (genuine ones passed, others sealed); %d good entries around them",
		len(bad), countReasons(cases), len(edited), len(goodIDs))
}

func countReasons(cs []badInput) int {
	r := map[schemas.Reason]bool{}
	for _, c := range cs {
		r[c.reason] = true
	}
	return len(r)
}

func cloneRecords(rs []*kgo.Record) []*kgo.Record { return append([]*kgo.Record(nil), rs...) }

func mustClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
