package schemas

import (
	"errors"
	"reflect"
	"testing"

	"github.com/go-json-experiment/json"
)

const rawHead = `{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"`

// checkRawAgrees fails unless DecodeRaw accepts exactly what Decode accepts and the entry plus
// raw data equals Decode's entry. Errors need not name the same reason (on input broken in more
// than one way the two may report different problems first): callers that need the reason use
// Decode, as the pipeline does for every input DecodeRaw rejects.
func checkRawAgrees(t *testing.T, b []byte) {
	t.Helper()
	want, werr := Decode(b, Limits{MaxBytes: 64 << 10})
	got, raw, gerr := DecodeRaw(b, Limits{MaxBytes: 64 << 10})
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("DecodeRaw(%q) error = %v, want %v", b, gerr, werr)
	}
	if werr != nil {
		var g *DecodeError
		if !errors.As(gerr, &g) {
			t.Fatalf("DecodeRaw(%q) error %T, want *DecodeError", b, gerr)
		}
		return
	}
	if got.Data != nil {
		t.Fatalf("DecodeRaw(%q) entry has Data", b)
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &got.Data); err != nil {
			t.Fatalf("DecodeRaw(%q) data does not decode: %v", b, err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeRaw(%q) = %+v, want %+v", b, got, want)
	}
}

func TestDecodeRawAgreesWithDecode(t *testing.T) {
	for _, in := range []string{
		validEntry,
		benchEntry,
		deep(29),
		deep(40),
		rawHead + `}`,
		rawHead + `,"data":null}`,
		rawHead + `,"data":{}}`,
		rawHead + `,"data":{ }}`,
		rawHead + `,"data":5}`,
		rawHead + `,"data":"x"}`,
		rawHead + `,"data":[1]}`,
		rawHead + `,"data":{"a":1,"a":2}}`,
		rawHead + `,"data":{"a":{"b":1,"b":2}}}`,
		rawHead + `,"data":{"a":"\ud800"}}`,
		rawHead + `,"data":{"a":1,}}`,
		rawHead + `,"data":{"a":1},"data":{}}`,
		rawHead + `,"bogus":1}`,
		rawHead + `,"data":{"t":"\u00e9 \"q\" ★"},"sensitive_paths":["data.t"]}`,
		`{"id":"","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
		"{\"id\":\"e\xff\"}",
		`null`,
		`"x"`,
		rawHead + `} `,
		rawHead + `} x`,
		rawHead + `}{}`,
		rawHead + `,"ID":"e"}`,
		`{"id":null,"app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
		`{"id":5,"app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
		`{"\u0069d":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
		rawHead + `,"thread":null,"user":null}`,
		rawHead + `,"thread":{},"user":{"id":null}}`,
		rawHead + `,"thread":{"id":"t","mode":"bot"},"user":{"id":"u","type":"user"}}`,
		rawHead + `,"thread":{"id":"t","x":1}}`,
		rawHead + `,"thread":"t"}`,
		rawHead + `,"thread":[1,}`,
		rawHead + `,"user":{"id":"u","id":"v"}}`,
		rawHead + `,"user":{"type":true}}`,
		rawHead + `,"sensitive_paths":null}`,
		rawHead + `,"sensitive_paths":[]}`,
		rawHead + `,"sensitive_paths":[null]}`,
		rawHead + `,"sensitive_paths":["data.a",1]}`,
		rawHead + `,"sensitive_paths":{"a":1}}`,
		rawHead + `,"sensitive":null,"component":null,"trigger":{"sensitive":true}}`,
		rawHead + `,"sensitive":"yes"}`,
		`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T24:04:05Z"}`,
		`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":null}`,
		`[[[[[`,
	} {
		t.Run(in[:min(len(in), 40)], func(t *testing.T) { checkRawAgrees(t, []byte(in)) })
	}
}

func FuzzDecodeRaw(f *testing.F) {
	f.Add([]byte(validEntry))
	f.Add([]byte(benchEntry))
	f.Add([]byte(rawHead + `,"data":{"a":[1,-0,1e300,"x",null,true,{}]}}`))
	f.Add([]byte(rawHead + `,"data":{"a":1,"a":2}}`))
	f.Add([]byte(rawHead + `,"data":7}`))
	f.Add([]byte(rawHead + `,"thread":{"id":"t","mode":null},"user":{},"sensitive_paths":["data.a",null]}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkRawAgrees(t, b) })
}

func TestLocate(t *testing.T) {
	const data = `{"text":"hi \"x\"","n":[10,{"k":true},[3]],"obj":{"a":{"b":"c"}, "e" : 1.50 },"z":null}`
	tests := []struct {
		paths []string
		want  []string // the located text per path; "" when absent
		ok    bool
	}{
		{[]string{"data.text"}, []string{`"hi \"x\""`}, true},
		{[]string{"data.obj.a", "data.n.1.k", "data.obj.e"}, []string{`{"b":"c"}`, `true`, `1.50`}, true},
		{[]string{"data.n.2.0", "data.z", "data.missing", "data.n.3", "data.text.x"}, []string{`3`, `null`, "", "", ""}, true},
		{[]string{"data.n.01"}, []string{""}, true},
		{[]string{"data.obj"}, []string{`{"a":{"b":"c"}, "e" : 1.50 }`}, true},
		{[]string{"data.obj", "data.obj.a"}, nil, false},
		{[]string{"data.text", "data.text"}, nil, false},
		{[]string{"data"}, nil, false},
	}
	for _, tt := range tests {
		var paths []Path
		for _, s := range tt.paths {
			paths = append(paths, MustParsePath(s))
		}
		spans, ok := Locate([]byte(data), paths, nil)
		if ok != tt.ok {
			t.Errorf("Locate(%v) ok = %v, want %v", tt.paths, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		for i, sp := range spans {
			got := ""
			if sp.Start >= 0 {
				got = data[sp.Start:sp.End]
			}
			if got != tt.want[i] {
				t.Errorf("Locate(%v)[%d] = %q, want %q", tt.paths, i, got, tt.want[i])
			}
		}
	}
	if _, ok := Locate([]byte(`{"a":`), []Path{MustParsePath("data.a")}, nil); ok {
		t.Errorf("Locate(truncated) ok = true, want false")
	}
}

// depthExceededRef is depthExceeded written byte by byte: the reference the fast scan must match.
func depthExceededRef(b []byte, maxDepth int) int64 {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return int64(i)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return -1
}

func FuzzDepthExceeded(f *testing.F) {
	for _, s := range []string{benchEntry, deep(40), `"\\"[[[`, `"\"[[[`, `"\\\"[["[[[`, `["\\\\\\\\"[[`, `"[[[`, `[["\`, `"\\`} {
		f.Add([]byte(s), 2)
	}
	f.Fuzz(func(t *testing.T, b []byte, maxDepth int) {
		maxDepth = maxDepth%40 + 1
		if got, want := depthExceeded(b, maxDepth), depthExceededRef(b, maxDepth); got != want {
			t.Fatalf("depthExceeded(%q, %d) = %d, want %d", b, maxDepth, got, want)
		}
	})
}
