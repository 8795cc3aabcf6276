package schemas

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
)

// checkScanAgrees fails unless Scanner.Scan accepts exactly what Decode accepts, with Decode's
// error (reason and field) when it refuses, and otherwise: the entry equals Decode's without
// data; data's text decodes to Decode's data; Find locates, for every path into data, the value
// Entry.Get finds; Tokens are exactly the token-shaped strings among data's values.
func checkScanAgrees(t *testing.T, s *Scanner, b []byte) {
	t.Helper()
	lim := Limits{MaxBytes: 64 << 10}
	want, werr := Decode(b, lim)
	gerr := s.Scan(b, lim)
	if !reflect.DeepEqual(gerr, werr) {
		t.Fatalf("Scan(%q) error = %v, want %v", b, gerr, werr)
	}
	if werr != nil {
		return
	}
	got := s.Entry
	if text := s.Data(); text != nil {
		if err := json.Unmarshal(text, &got.Data); err != nil {
			t.Fatalf("Scan(%q) data does not decode: %v", b, err)
		}
	}
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("Scan(%q) = %+v, want %+v", b, &got, want)
	}
	head := *want
	head.Data = nil
	if enc, err := head.Encode(); err != nil || string(s.Entry.AppendHead(nil))+"}" != string(enc) {
		t.Fatalf("Scan(%q): AppendHead = %s}, want Encode = %s (%v)", b, s.Entry.AppendHead(nil), enc, err)
	}
	// Every path to a value of data, and a few that lead nowhere.
	var paths []string
	var walk func(p string, v any, depth int)
	walk = func(p string, v any, depth int) {
		if depth > MaxPathSegments {
			return
		}
		paths = append(paths, p, p+".0", p+".x")
		switch c := v.(type) {
		case map[string]any:
			for k, x := range c {
				if !strings.Contains(k, ".") && k != "" {
					walk(p+"."+k, x, depth+1)
				}
			}
		case []any:
			for i, x := range c {
				walk(p+"."+strconv.Itoa(i), x, depth+1)
			}
		}
	}
	if want.Data != nil {
		walk("data", want.Data, 1)
	}
	for _, ps := range paths {
		p, err := ParsePath(ps)
		if err != nil {
			continue
		}
		wv, wok := want.Get(p)
		i, gok := s.Find(ps)
		if gok != wok {
			t.Fatalf("Scan(%q).Find(%q) found = %v, want %v", b, ps, gok, wok)
		}
		if !gok {
			continue
		}
		n := s.Node(i)
		var gv any
		if err := json.Unmarshal(b[n.Start:n.End], &gv); err != nil {
			t.Fatalf("Scan(%q).Find(%q) = %q, not a value: %v", b, ps, b[n.Start:n.End], err)
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Fatalf("Scan(%q).Find(%q) = %v, want %v", b, ps, gv, wv)
		}
	}
	var wantTokens, gotTokens []string
	var name bool
	var toks func(v any)
	toks = func(v any) {
		switch c := v.(type) {
		case string:
			if IsToken(c) {
				wantTokens = append(wantTokens, c)
			}
		case map[string]any:
			for k, x := range c {
				name = name || IsToken(k)
				toks(x)
			}
		case []any:
			for _, x := range c {
				toks(x)
			}
		}
	}
	if want.Data != nil {
		toks(want.Data)
	}
	for _, sp := range s.Tokens() {
		var v string
		if err := json.Unmarshal(b[sp.Start:sp.End], &v); err != nil {
			t.Fatalf("Scan(%q) token span %q: %v", b, b[sp.Start:sp.End], err)
		}
		gotTokens = append(gotTokens, v)
	}
	slices.Sort(wantTokens)
	slices.Sort(gotTokens)
	if !slices.Equal(gotTokens, wantTokens) || s.TokenName() != name {
		t.Fatalf("Scan(%q) tokens = %q (name %v), want %q (name %v)", b, gotTokens, s.TokenName(), wantTokens, name)
	}
}

var scanInputs = []string{
	validEntry,
	benchEntry,
	deep(29),
	deep(31),
	deep(32),
	deep(40),
	rawHead + `}`,
	rawHead + `,"data":null}`,
	rawHead + `,"data":{}}`,
	rawHead + `,"data":{ }}`,
	rawHead + `,"data":5}`,
	rawHead + `,"data":"x"}`,
	rawHead + `,"data":[1]}`,
	rawHead + `,"data":{"a":1,"a":2}}`,
	rawHead + `,"data":{"a":1,"\u0061":2}}`,
	rawHead + `,"data":{"a":{"b":1,"b":2}}}`,
	rawHead + `,"data":{"a":"\ud800"}}`,
	rawHead + `,"data":{"a":"\ud83d\ude00"}}`,
	rawHead + `,"data":{"a":1,}}`,
	rawHead + `,"data":{"a":1},"data":{}}`,
	rawHead + `,"d\u0061ta":{"a":1},"data":{}}`,
	rawHead + `,"d\u0061ta":{"text":"x","n":[1,2,{"k":"\u0076eil:v1:zz"}]}}`,
	rawHead + `,"data":{"veil:x":1}}`,
	rawHead + `,"data":{"\u0076eil:x":1}}`,
	rawHead + `,"data":{"a":["veil:v1:a","x",{"b":"veil:"}],"c":"\/veil:"}}`,
	rawHead + `,"data":{"n":1e400}}`,
	rawHead + `,"data":{"n":-1e400}}`,
	rawHead + `,"data":{"n":1e-400}}`,
	rawHead + `,"data":{"n":1e308,"m":-0,"k":0.000001,"big":123456789012345678901234567890}}`,
	rawHead + `,"data":{"n":"12","m":"1e400"}}`,
	rawHead + `,"data":{"a":{"b":{"c":[[],[{}],{"d":null}]}}}}`,
	rawHead + `,"data":{"":1,"a.b":2,"0":{"1":[0,1]}}}`,
	rawHead + `,"bogus":1}`,
	rawHead + `,"data":{"t":"\u00e9 \"q\" ★"},"sensitive_paths":["data.t"]}`,
	`{"data":{"t":1},` + rawHead[1:] + `}`,
	`{"id":"","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
	"{\"id\":\"e\xff\"}",
	rawHead + ",\"data\":{\"a\":\"\xff\"}}",
	`null`,
	`"x"`,
	``,
	rawHead + `} `,
	rawHead + `} x`,
	rawHead + `}{}`,
	rawHead + `,"ID":"e"}`,
	`{"id":null,"app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
	`{"id":5,"app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
	`{"\u0069d":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
	`{"id":"e\u0000","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"}`,
	`{"id":"veil:v1:x","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05+02:00"}`,
	rawHead + `,"thread":null,"user":null}`,
	rawHead + `,"thread":{},"user":{"id":null}}`,
	rawHead + `,"thread":{"id":"t","mode":"bot"},"user":{"id":"u","type":"user"}}`,
	rawHead + `,"thread":{"id":"t","mode":"BOT"},"user":{"id":"u","type":"Agent"}}`,
	rawHead + `,"thread":{"id":"t","x":1}}`,
	rawHead + `,"thread":"t"}`,
	rawHead + `,"thread":[1,}`,
	rawHead + `,"user":{"id":"u","id":"v"}}`,
	rawHead + `,"user":{"type":true}}`,
	rawHead + `,"sensitive_paths":null}`,
	rawHead + `,"sensitive_paths":[]}`,
	rawHead + `,"sensitive_paths":[null]}`,
	rawHead + `,"sensitive_paths":["data.a",1]}`,
	rawHead + `,"sensitive_paths":["data.a","data.b.0"]}`,
	rawHead + `,"sensitive_paths":["data.a","nope"]}`,
	rawHead + `,"sensitive_paths":{"a":1}}`,
	rawHead + `,"sensitive":null,"component":null,"trigger":{"sensitive":true}}`,
	rawHead + `,"sensitive":false,"component":{},"trigger":{}}`,
	rawHead + `,"sensitive":true,"component":{"id":"c","sensitive":false},"trigger":{"entry_id":"x","sensitive":null}}`,
	rawHead + `,"component":{"id":"c","other":1}}`,
	rawHead + `,"trigger":{"sensitive":1}}`,
	rawHead + `,"sensitive":"yes"}`,
	`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T24:04:05Z"}`,
	`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":null}`,
	`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"0000-01-01T00:30:00+01:00"}`,
	`{"id":"<a&b>\u2028\u2029\u007f","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05.123456789+05:30","thread":{"mode":"x\"y"},"trigger":{"entry_id":"q"}}`,
	`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05.100Z","component":{"sensitive":true},"user":{"type":"\ud83d\ude00"}}`,
	`[[[[[`,
}

func TestScanAgreesWithDecode(t *testing.T) {
	var s Scanner
	for _, in := range scanInputs {
		t.Run(in[:min(len(in), 40)], func(t *testing.T) { checkScanAgrees(t, &s, []byte(in)) })
	}
	big := rawHead + `,"data":{"s":"` + strings.Repeat("x", 70<<10) + `"}}`
	if err := s.Scan([]byte(big), Limits{MaxBytes: 64 << 10}); err == nil {
		t.Fatalf("Scan(70 KiB) = nil, want too_large")
	}
}

func FuzzScan(f *testing.F) {
	for _, in := range scanInputs {
		f.Add([]byte(in))
	}
	var s Scanner
	f.Fuzz(func(t *testing.T, b []byte) { checkScanAgrees(t, &s, b) })
}

func BenchmarkScan(b *testing.B) {
	in := []byte(benchEntry)
	var s Scanner
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(in, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendHead checks AppendHead against Encode on every entry of scanInputs that decodes
// (data dropped, the sensitive flag set both ways).
func TestAppendHead(t *testing.T) {
	yes, no := true, false
	n := 0
	for _, in := range scanInputs {
		e, err := Decode([]byte(in), Limits{MaxBytes: 64 << 10})
		if err != nil {
			continue
		}
		for _, sens := range []*bool{e.Sensitive, &yes, &no} {
			e.Data, e.Sensitive = nil, sens
			want, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(e.AppendHead(nil)) + "}"; got != string(want) {
				t.Errorf("AppendHead = %s\nwant Encode = %s", got, want)
			}
			n++
		}
	}
	if n < 30 {
		t.Fatalf("only %d entries checked", n)
	}
}
