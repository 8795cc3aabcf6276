package schemas

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/names"
)

const validEntry = `{"id":"e-1","app_id":"app-42","ledger":"event","type":"meya.text.event.say",` +
	`"ts":"2026-11-22T10:00:00Z","thread":{"id":"t-9","mode":"agent"},"user":{"id":"u-7","type":"user"},` +
	`"sensitive":true,"sensitive_paths":["data.email"],"component":{"id":"c-1","sensitive":true},` +
	`"trigger":{"entry_id":"e-0","sensitive":true},"data":{"text":"my email is jane@example.com","email":"jane@example.com","n":1.5}}`

func TestDecodeValid(t *testing.T) {
	e, err := Decode([]byte(validEntry), Limits{})
	if err != nil {
		t.Fatalf("Decode(valid) = %v, want nil", err)
	}
	yes := true
	want := &Entry{
		ID: "e-1", AppID: "app-42", Ledger: "event", Type: "meya.text.event.say",
		TS:             time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Thread:         Thread{ID: "t-9", Mode: "agent"},
		User:           User{ID: "u-7", Type: "user"},
		Sensitive:      &yes,
		SensitivePaths: []string{"data.email"},
		Component:      &Component{ID: "c-1", Sensitive: &yes},
		Trigger:        &Trigger{EntryID: "e-0", Sensitive: true},
		Data:           map[string]any{"text": "my email is jane@example.com", "email": "jane@example.com", "n": 1.5},
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("Decode(valid) = %+v, want %+v", e, want)
	}
}

func TestDecodeNormalizes(t *testing.T) {
	in := `{"id":"e","app_id":"a","ledger":"event","type":"t","ts":"2026-11-22T11:30:00.25+01:30",` +
		`"sensitive_paths":[],"component":{},"trigger":{},"data":{}}`
	e, err := Decode([]byte(in), Limits{})
	if err != nil {
		t.Fatalf("Decode = %v", err)
	}
	if want := time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC); e.TS != want {
		t.Errorf("TS = %v, want %v", e.TS, want)
	}
	if e.SensitivePaths != nil || e.Component != nil || e.Trigger != nil || e.Data != nil {
		t.Errorf("empty parts not normalized: %+v", e)
	}
}

// replace swaps one occurrence of old in validEntry.
func replace(old, repl string) string {
	if !strings.Contains(validEntry, old) {
		panic("test fixture does not contain " + old)
	}
	return strings.Replace(validEntry, old, repl, 1)
}

func deep(n int) string {
	return `{"id":"e","app_id":"a","ledger":"event","type":"t","ts":"2026-11-22T10:00:00Z","data":{"x":` +
		strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		lim    Limits
		reason Reason
		field  string
	}{
		{"empty", ``, Limits{}, ReasonMalformedJSON, ""},
		{"truncated", validEntry[:40], Limits{}, ReasonMalformedJSON, ""},
		{"trailing garbage", validEntry + `x`, Limits{}, ReasonMalformedJSON, ""},
		{"two values", validEntry + validEntry, Limits{}, ReasonMalformedJSON, ""},
		{"not an object", `["a"]`, Limits{}, ReasonInvalidField, ""},
		{"bad literal in data", replace(`"n":1.5`, `"n":tru`), Limits{}, ReasonMalformedJSON, ""},
		{"too large", validEntry, Limits{MaxBytes: 100}, ReasonTooLarge, ""},
		{"too large default", `{"data":"` + strings.Repeat("a", DefaultMaxBytes) + `"}`, Limits{}, ReasonTooLarge, ""},
		{"too deep", deep(31), Limits{}, ReasonTooDeep, ""},
		{"too deep custom", deep(3), Limits{MaxDepth: 4}, ReasonTooDeep, ""},
		{"huge depth", strings.Repeat("[", 500000), Limits{}, ReasonTooDeep, ""},
		{"invalid utf8 raw", replace(`jane@example.com","n"`, "jane\xff\xfe\",\"n\""), Limits{}, ReasonInvalidUTF8, ""},
		{"invalid utf8 escape", replace(`"text":"my email`, `"text":"\ud800 my email`), Limits{}, ReasonInvalidUTF8, "data"},
		{"duplicate top-level", replace(`"id":"e-1",`, `"id":"e-1","id":"e-2",`), Limits{}, ReasonDuplicateKey, "id"},
		{"duplicate nested", replace(`"mode":"agent"`, `"mode":"agent","mode":"bot"`), Limits{}, ReasonDuplicateKey, "thread.mode"},
		{"duplicate in data", replace(`"n":1.5`, `"n":1.5,"n":2`), Limits{}, ReasonDuplicateKey, "data"},
		{"duplicate via escape", replace(`"id":"e-1",`, `"id":"e-1","\u0069d":"e-2",`), Limits{}, ReasonDuplicateKey, "id"},
		{"unknown top-level", replace(`"id":"e-1",`, `"id":"e-1","extra":1,`), Limits{}, ReasonUnknownField, ""},
		{"unknown case variant", replace(`"id":"e-1",`, `"id":"e-1","ID":"x",`), Limits{}, ReasonUnknownField, ""},
		{"unknown in thread", replace(`"mode":"agent"`, `"mode":"agent","x":1`), Limits{}, ReasonUnknownField, "thread"},
		{"unknown in user", replace(`"type":"user"`, `"type":"user","x":1`), Limits{}, ReasonUnknownField, "user"},
		{"unknown in component", replace(`"id":"c-1"`, `"id":"c-1","x":1`), Limits{}, ReasonUnknownField, "component"},
		{"unknown in trigger", replace(`"entry_id":"e-0"`, `"entry_id":"e-0","x":1`), Limits{}, ReasonUnknownField, "trigger"},
		{"missing id", replace(`"id":"e-1",`, ``), Limits{}, ReasonMissingField, "id"},
		{"missing app_id", replace(`"app_id":"app-42",`, ``), Limits{}, ReasonMissingField, "app_id"},
		{"missing ledger", replace(`"ledger":"event",`, ``), Limits{}, ReasonMissingField, "ledger"},
		{"missing type", replace(`"type":"meya.text.event.say",`, ``), Limits{}, ReasonMissingField, "type"},
		{"missing ts", replace(`"ts":"2026-11-22T10:00:00Z",`, ``), Limits{}, ReasonMissingField, "ts"},
		{"empty id", replace(`"id":"e-1"`, `"id":""`), Limits{}, ReasonMissingField, "id"},
		{"null app_id", replace(`"app_id":"app-42"`, `"app_id":null`), Limits{}, ReasonMissingField, "app_id"},
		{"zero ts", replace(`"2026-11-22T10:00:00Z"`, `"0001-01-01T00:00:00Z"`), Limits{}, ReasonMissingField, "ts"},
		{"id wrong type", replace(`"id":"e-1"`, `"id":5`), Limits{}, ReasonInvalidField, "id"},
		{"ts wrong type", replace(`"ts":"2026-11-22T10:00:00Z"`, `"ts":1700000000`), Limits{}, ReasonInvalidField, "ts"},
		{"ts not rfc3339", replace(`"2026-11-22T10:00:00Z"`, `"22 Nov 2026 10:00"`), Limits{}, ReasonInvalidField, "ts"},
		{"ts without zone", replace(`"2026-11-22T10:00:00Z"`, `"2026-11-22T10:00:00"`), Limits{}, ReasonInvalidField, "ts"},
		{"ts before year 1 in UTC", replace(`"2026-11-22T10:00:00Z"`, `"0000-01-01T00:00:00+01:00"`), Limits{}, ReasonInvalidField, "ts"},
		{"ts after year 9999 in UTC", replace(`"2026-11-22T10:00:00Z"`, `"9999-12-31T23:30:00-01:00"`), Limits{}, ReasonInvalidField, "ts"},
		{"ts bad month", replace(`"2026-11-22T10:00:00Z"`, `"2026-13-22T10:00:00Z"`), Limits{}, ReasonInvalidField, "ts"},
		{"sensitive wrong type", replace(`"sensitive":true`, `"sensitive":"yes"`), Limits{}, ReasonInvalidField, "sensitive"},
		{"thread wrong type", replace(`"thread":{"id":"t-9","mode":"agent"}`, `"thread":"t-9"`), Limits{}, ReasonInvalidField, "thread"},
		{"thread mode wrong type", replace(`"mode":"agent"`, `"mode":1`), Limits{}, ReasonInvalidField, "thread.mode"},
		{"component sensitive wrong type", replace(`"id":"c-1","sensitive":true`, `"id":"c-1","sensitive":1`), Limits{}, ReasonInvalidField, "component.sensitive"},
		{"data wrong type", replace(`"data":{`, `"data":[{`) + `]`, Limits{}, ReasonInvalidField, "data"},
		{"data number out of range", replace(`"n":1.5`, `"n":1e999`), Limits{}, ReasonInvalidField, "data"},
		{"sensitive_paths wrong type", replace(`["data.email"]`, `"data.email"`), Limits{}, ReasonInvalidField, "sensitive_paths"},
		{"sensitive_paths element wrong type", replace(`["data.email"]`, `[1]`), Limits{}, ReasonInvalidField, "sensitive_paths"},
		{"app_id bad chars", replace(`"app-42"`, `"app 42"`), Limits{}, ReasonInvalidField, "app_id"},
		{"app_id slash", replace(`"app-42"`, `"../etc"`), Limits{}, ReasonInvalidField, "app_id"},
		{"app_id dot", replace(`"app-42"`, `"."`), Limits{}, ReasonInvalidField, "app_id"},
		{"app_id dot dot", replace(`"app-42"`, `".."`), Limits{}, ReasonInvalidField, "app_id"},
		{"app_id leading dot", replace(`"app-42"`, `".app-42"`), Limits{}, ReasonInvalidField, "app_id"},
		{"app_id colon (store keys)", replace(`"app-42"`, `"app:42"`), Limits{}, ReasonInvalidField, "app_id"},
		{"app_id over the one name limit", replace(`"app-42"`, `"`+strings.Repeat("a", names.MaxLen+1)+`"`), Limits{}, ReasonInvalidField, "app_id"},
		{"ledger dot dot", replace(`"ledger":"event"`, `"ledger":".."`), Limits{}, ReasonInvalidField, "ledger"},
		{"app_id too long", replace(`"app-42"`, `"`+strings.Repeat("a", MaxNameBytes+1)+`"`), Limits{}, ReasonInvalidField, "app_id"},
		{"ledger bad chars", replace(`"ledger":"event"`, `"ledger":"ev/ent"`), Limits{}, ReasonInvalidField, "ledger"},
		{"type bad chars", replace(`"meya.text.event.say"`, `"meya text"`), Limits{}, ReasonInvalidField, "type"},
		{"id control char", replace(`"id":"e-1"`, `"id":"e\u0001"`), Limits{}, ReasonInvalidField, "id"},
		{"id too long", replace(`"id":"e-1"`, `"id":"`+strings.Repeat("e", MaxNameBytes+1)+`"`), Limits{}, ReasonInvalidField, "id"},
		{"thread mode too long", replace(`"mode":"agent"`, `"mode":"`+strings.Repeat("m", MaxNameBytes+1)+`"`), Limits{}, ReasonInvalidField, "thread.mode"},
		{"sensitive_paths outside data", replace(`["data.email"]`, `["id"]`), Limits{}, ReasonInvalidField, "sensitive_paths"},
		{"sensitive_paths empty segment", replace(`["data.email"]`, `["data..email"]`), Limits{}, ReasonInvalidField, "sensitive_paths"},
		{"sensitive_paths too many segments", replace(`["data.email"]`, `["data`+strings.Repeat(".a", MaxPathSegments)+`"]`), Limits{}, ReasonInvalidField, "sensitive_paths"},
		{"sensitive_paths too long", replace(`["data.email"]`, `["data.`+strings.Repeat("a", MaxPathBytes)+`"]`), Limits{}, ReasonInvalidField, "sensitive_paths"},
		{"sensitive_paths too many", replace(`["data.email"]`, `[`+strings.Repeat(`"data.a",`, MaxSensitivePaths)+`"data.b"]`), Limits{}, ReasonInvalidField, "sensitive_paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.in), tt.lim)
			var derr *DecodeError
			if !errors.As(err, &derr) {
				t.Fatalf("Decode() = %+v, %v; want *DecodeError", e, err)
			}
			if e != nil {
				t.Errorf("Decode() entry = %+v, want nil on error", e)
			}
			if derr.Reason != tt.reason || derr.Field != tt.field {
				t.Errorf("Decode() error = %s/%q, want %s/%q", derr.Reason, derr.Field, tt.reason, tt.field)
			}
			if !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("errors.Is(%v, ErrInvalidEntry) = false, want true", err)
			}
		})
	}
}

func TestDecodeDepthBoundary(t *testing.T) {
	// The entry object is level 1 and data level 2, so data.x can hold 30 nested arrays.
	if _, err := Decode([]byte(deep(30)), Limits{}); err != nil {
		t.Errorf("Decode(depth 32) = %v, want nil", err)
	}
	// Brackets inside strings, escaped quotes included, do not count.
	in := replace(`"n":1.5`, `"n":"\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"`)
	if _, err := Decode([]byte(in), Limits{}); err != nil {
		t.Errorf("Decode(brackets in string) = %v, want nil", err)
	}
}

func TestDecodeErrorString(t *testing.T) {
	tests := []struct {
		err  *DecodeError
		want string
	}{
		{&DecodeError{Reason: ReasonMissingField, Field: "ts"}, "decoding entry: missing_field: ts"},
		{&DecodeError{Reason: ReasonTooLarge}, "decoding entry: too_large"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestDecodeErrorsCarryNoInput plants a canary in every position an error could be reported
// about (values and member names) and checks that no error text contains it.
func TestDecodeErrorsCarryNoInput(t *testing.T) {
	const c = "CANARYzq81"
	inputs := []string{
		replace(`"id":"e-1",`, `"id":"e-1","`+c+`":1,`),
		replace(`"mode":"agent"`, `"mode":"agent","`+c+`":1`),
		replace(`"n":1.5`, `"n":1.5,"`+c+`":1,"`+c+`":2`),
		replace(`"n":1.5`, `"n":"`+c+`\ud800"`),
		replace(`"n":1.5`, `"n":`+c),
		replace(`"n":1.5`, `"n":"`+c+`"} junk`),
		replace(`"id":"e-1"`, `"id":"`+c+"\x01"+`"`),
		replace(`"id":"e-1"`, `"id":"`+c+strings.Repeat("x", 200)+`"`),
		replace(`"app-42"`, `"`+c+` 42"`),
		replace(`"mode":"agent"`, `"mode":"`+c+strings.Repeat("x", 200)+`"`),
		replace(`"2026-11-22T10:00:00Z"`, `"`+c+`"`),
		replace(`"2026-11-22T10:00:00Z"`, `"2026-11-22T10:00:00Z`+c+`"`),
		replace(`"sensitive":true`, `"sensitive":"`+c+`"`),
		replace(`["data.email"]`, `["`+c+`"]`),
		replace(`["data.email"]`, `["data..`+c+`"]`),
		replace(`"data":{`, `"data":["`+c+`",{`) + `]`,
		replace(`"thread":{"id":"t-9","mode":"agent"}`, `"thread":"`+c+`"`),
		replace(`"n":1.5`, `"n":1e999`+c),
		replace(`"n":1.5`, `"`+c+`":"\x"`),
		`{"` + c + `"}`,
		c,
		`"` + c + `"`,
		`["` + c + `"]`,
	}
	for i, in := range inputs {
		_, err := Decode([]byte(in), Limits{})
		if err == nil {
			t.Errorf("input %d: Decode() = nil, want error", i)
			continue
		}
		if strings.Contains(err.Error(), c) || strings.Contains(err.Error(), "CANARY") {
			t.Errorf("input %d: error %q carries input text", i, err)
		}
		var derr *DecodeError
		if errors.As(err, &derr) && strings.Contains(derr.Field, c) {
			t.Errorf("input %d: field %q carries input text", i, derr.Field)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	e, err := Decode([]byte(validEntry), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatalf("Encode() = %v", err)
	}
	e2, err := Decode(b, Limits{})
	if err != nil {
		t.Fatalf("Decode(Encode(e)) = %v", err)
	}
	if !reflect.DeepEqual(e, e2) {
		t.Errorf("Decode(Encode(e)) = %+v, want %+v", e2, e)
	}
	b2, _ := e2.Encode()
	if string(b) != string(b2) {
		t.Errorf("Encode is not deterministic:\n%s\n%s", b, b2)
	}
	prefix := []byte("prefix:")
	got, err := e.AppendEncode(prefix)
	if err != nil || string(got) != "prefix:"+string(b) {
		t.Errorf("AppendEncode(prefix) = %q, %v; want prefix then %q", got, err, b)
	}
}

func TestEncodeErrorCarriesNoValue(t *testing.T) {
	const c = "CANARYzq81"
	e, _ := Decode([]byte(validEntry), Limits{})
	e.Data["text"] = c + "\xff"
	_, err := e.Encode()
	if err == nil {
		t.Fatal("Encode(invalid UTF-8) = nil, want error")
	}
	if strings.Contains(err.Error(), c) {
		t.Errorf("Encode error %q carries the value", err)
	}
	e.Data["text"] = make(chan int)
	if _, err := e.Encode(); err == nil {
		t.Error("Encode(chan) = nil, want error")
	}
}
