package reveal

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// responseValues are values a revealed field may hold, and hostile ones: whitespace inside and
// outside strings, every character encoding/json escapes for HTML, escapes, invalid UTF-8,
// invalid JSON.
var responseValues = []string{
	`"alice@example.com"`, `"+1 555 0100"`, `{"street":"1 Main St","city":"Springfield"}`,
	`42`, `-0.5e+10`, `true`, `null`, `[]`, `{}`, `[1,"two",{"3":[4]}]`,
	`"★★★★★"`, `"é"`, `"\u00e9\n\t\"\\\/"`, `"\ud800"`,
	`{ "a" : 1 }`, "[1,\n2]", "\t\"x\"\r\n", ` "x"`,
	`"<script>"`, `"a&b"`, `"a>b"`, `{"<":1}`, "\"\u2028\u2029\"", "\"\xe2\x80\"", "\"\xe2\x80\xaa\"",
	"\"\xff\xfe\"", `{"a":1,"a":2}`,
	`"\<"`, `"unterminated`, `{"a":}`, `01`, `1.`, `[1,]`, `"a" "b"`, `nul`, "\"\x01\"", `{"a":1}}`,
	"", `"`, `\`, `"\x"`, `"\u12"`, `"\u123g"`, `"\u12AF"`, `"a\"b"`, `"\\"`, `"\"`, `"\/"`, `""`, `"a"b"`,
	"\"\t\"", "\"\x1f\"", "\"\x7f\"", `"\\\""`,
}

// TestAppendRevealResponse: the response is byte for byte json.Marshal(revealResponse), and an
// error exactly when json.Marshal fails.
func TestAppendRevealResponse(t *testing.T) {
	statuses := []Status{StatusOK, StatusExpired, StatusDenied, StatusInvalid, "we<ird\"", ""}
	for _, v := range responseValues {
		for _, st := range statuses {
			checkResponse(t, []Result{{Status: st, Value: json.RawMessage(v)}})
		}
	}
	var all []Result
	for i, v := range responseValues {
		all = append(all, Result{Status: statuses[i%len(statuses)], Value: json.RawMessage(v)})
	}
	checkResponse(t, all[:3])
	checkResponse(t, all)
	checkResponse(t, nil)
	checkResponse(t, []Result{{Status: StatusInvalid}, {Status: StatusExpired, Value: redactedJSON}})
}

func checkResponse(t *testing.T, results []Result) {
	t.Helper()
	want, werr := json.Marshal(revealResponse{Results: results})
	got, gerr := appendRevealResponse([]byte("prefix"), results)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("appendRevealResponse(%q) error = %v, json.Marshal error = %v", values(results), gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("appendRevealResponse(%q) =\n%s\nwant\n%s", values(results), got[len("prefix"):], want)
	}
}

func values(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Value))
	}
	return out
}

// FuzzAppendRevealResponse compares appendRevealResponse with json.Marshal on any value.
func FuzzAppendRevealResponse(f *testing.F) {
	for _, v := range responseValues {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		checkResponse(t, []Result{{Status: StatusOK, Value: v}, {Status: StatusExpired, Value: redactedJSON}})
	})
}

// TestAuditRecordJSON: appendJSON is byte for byte json.Marshal, and fails when it fails.
func TestAuditRecordJSON(t *testing.T) {
	base := AuditRecord{Time: time.Date(2026, 12, 2, 19, 7, 49, 123456789, time.UTC), RequestID: "0123456789abcdef01234567",
		Source: "api", Principal: "support-bot", Kind: KindSupport, App: "app-42", Ref: "00112233445566778899aabbccddeeff",
		Field: 2, Status: "ok"}
	times := []time.Time{
		base.Time, {}, base.Time.Truncate(time.Second), base.Time.Add(time.Millisecond).Truncate(time.Millisecond),
		base.Time.In(time.FixedZone("x", 5*3600+30*60)), base.Time.In(time.FixedZone("y", -(23*3600 + 59*60))),
		base.Time.In(time.FixedZone("z", 24*3600)), base.Time.In(time.FixedZone("w", 3601)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	strs := []string{"", "api", "egress:crm", `we"ird`, `back\\slash`, "<tag>&", "é★", "\x00\x1f\x7f", "\xff", "\u2028"}
	var recs []AuditRecord
	for _, tm := range times {
		r := base
		r.Time = tm
		recs = append(recs, r)
	}
	for _, s := range strs {
		for i := range 7 {
			r := base
			fields := []*string{&r.RequestID, &r.Source, &r.Principal, (*string)(&r.Kind), &r.App, &r.Ref, &r.Status}
			*fields[i] = s
			recs = append(recs, r)
		}
	}
	for _, f := range []int{-1, 0, 254, 1 << 40} {
		r := base
		r.Field = f
		recs = append(recs, r)
	}
	for i, r := range recs {
		want, werr := json.Marshal(r)
		got, gerr := r.appendJSON([]byte("p"))
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("record %d: appendJSON error = %v, json.Marshal error = %v", i, gerr, werr)
		}
		if werr == nil && !bytes.Equal(got, append([]byte("p"), want...)) {
			t.Fatalf("record %d: appendJSON =\n%s\nwant\n%s", i, got[1:], want)
		}
		if kr, err := r.KafkaRecord(); werr == nil && (err != nil || !bytes.Equal(kr.Value, want)) {
			t.Fatalf("record %d: KafkaRecord = %v, %q; want %s", i, err, kr.Value, want)
		}
	}
}

// TestKafkaRecords: the batch encoding gives each record KafkaRecord's topic, key and value, and
// no record's value can be extended over the next one's.
func TestKafkaRecords(t *testing.T) {
	base := AuditRecord{Time: time.Date(2026, 12, 2, 19, 7, 49, 0, time.UTC), RequestID: "r", Source: "api",
		Principal: "p1", Kind: KindSupport, App: "app-1", Ref: "00", Field: 1, Status: "ok"}
	var recs []AuditRecord
	for i, p := range []string{"p1", "p1", "p2", "p1", `we"ird`} {
		r := base
		r.Principal, r.Field = p, i
		recs = append(recs, r)
	}
	krs, err := kafkaRecords(recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, kr := range krs {
		want, err := recs[i].KafkaRecord()
		if err != nil {
			t.Fatal(err)
		}
		if kr.Topic != want.Topic || !bytes.Equal(kr.Key, want.Key) || !bytes.Equal(kr.Value, want.Value) {
			t.Errorf("record %d = %s %q %s, want %s %q %s", i, kr.Topic, kr.Key, kr.Value, want.Topic, want.Key, want.Value)
		}
		if cap(kr.Value) != len(kr.Value) {
			t.Errorf("record %d: value capacity %d > length %d", i, cap(kr.Value), len(kr.Value))
		}
	}
	bad := base
	bad.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := kafkaRecords([]AuditRecord{base, bad}); err == nil {
		t.Error("kafkaRecords with a time json.Marshal refuses = nil error")
	}
}
