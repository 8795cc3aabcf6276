package schemas

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add([]byte(validEntry))
	f.Add([]byte(benchEntry))
	f.Add([]byte(deep(29)))
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05.123456789-07:00","data":{"a":[1,-0,1e300,"x",null,true,{}]}}`))
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z","component":{"sensitive":false},"trigger":{"sensitive":false}}`))
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z","data":{"s":"\u00e9\ud83d\ude00\"\\"}}`))
	f.Add([]byte(`{"a":"\ud800"}`))
	f.Add([]byte(`[[[[[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b, Limits{MaxBytes: 64 << 10})
		if err != nil {
			var derr *DecodeError
			if !errors.As(err, &derr) {
				t.Fatalf("Decode() error %T, want *DecodeError", err)
			}
			if derr.Field != "" && !knownFieldName(derr.Field) {
				t.Fatalf("Decode() error field %q is not a declared field", derr.Field)
			}
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode(Decode(b)) = %v", err)
		}
		e2, err := Decode(out, Limits{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("Decode(Encode(e)) = %v for %q", err, out)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("Decode(Encode(e)) = %+v, want %+v", e2, e)
		}
		for _, s := range e.SensitivePaths {
			if _, err := ParsePath(s); err != nil {
				t.Fatalf("decoded sensitive_paths holds an invalid path: %v", err)
			}
		}
	})
}

func knownFieldName(f string) bool {
	parent, name, nested := strings.Cut(f, ".")
	if !nested {
		return knownFields[""][parent]
	}
	return knownFields[""][parent] && knownFields[parent][name]
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"data", "data.text", "data.items.0.text", "data..x", "x.data", "data.0.1.2", "data.é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ParsePath error %v does not wrap ErrInvalidPath", err)
			}
			return
		}
		if p.String() != s || len(s) > MaxPathBytes || len(p.Segments()) > MaxPathSegments || p.Segments()[0] != "data" {
			t.Fatalf("ParsePath(%q) accepted a path outside the bounds: %q", s, p.Segments())
		}
		if !p.Covers(p) || !CoversString(s, s) {
			t.Fatalf("%q does not cover itself", s)
		}
		e := &Entry{Data: map[string]any{"items": []any{map[string]any{"text": "a"}}, "text": "b", "0": []any{"c"}}}
		before, had := e.Get(p)
		set := e.Set(p, map[string]any{"z": "veil:v1:x"})
		if set != had && len(p.Segments()) > 1 {
			t.Fatalf("Set(%q) = %v but Get found %v (%v)", s, set, had, before)
		}
		if set {
			if got, ok := e.Get(p); !ok || !reflect.DeepEqual(got, map[string]any{"z": "veil:v1:x"}) {
				t.Fatalf("after Set(%q), Get = %v, %v", s, got, ok)
			}
		}
	})
}
