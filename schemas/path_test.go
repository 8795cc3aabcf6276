package schemas

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in   string
		segs []string // nil means an error is wanted
	}{
		{"data", []string{"data"}},
		{"data.text", []string{"data", "text"}},
		{"data.items.0.text", []string{"data", "items", "0", "text"}},
		{"data.é", []string{"data", "é"}},
		{"data" + strings.Repeat(".a", MaxPathSegments-1), append([]string{"data"}, strings.Split(strings.Repeat("a", MaxPathSegments-1), "")...)},
		{"", nil},
		{"text", nil},
		{"datax.text", nil},
		{"id", nil},
		{".data", nil},
		{"data.", nil},
		{"data..text", nil},
		{"data.te\x01xt", nil},
		{"data.\xff", nil},
		{"data" + strings.Repeat(".a", MaxPathSegments), nil},
		{"data." + strings.Repeat("a", MaxPathBytes), nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePath(tt.in)
			if tt.segs == nil {
				if !errors.Is(err, ErrInvalidPath) {
					t.Fatalf("ParsePath(%q) = %v, %v; want ErrInvalidPath", tt.in, p, err)
				}
				if len(tt.in) > 4 && strings.Contains(err.Error(), tt.in) {
					t.Errorf("ParsePath(%q) error %q quotes the input", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q) = %v, want nil", tt.in, err)
			}
			if got := p.Segments(); !reflect.DeepEqual(got, tt.segs) {
				t.Errorf("ParsePath(%q).Segments() = %q, want %q", tt.in, got, tt.segs)
			}
			if p.String() != tt.in {
				t.Errorf("ParsePath(%q).String() = %q", tt.in, p.String())
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		p, q string
		want bool
	}{
		{"data", "data.text", true},
		{"data.text", "data.text", true},
		{"data.text", "data.text.x", true},
		{"data.text", "data.textual", false},
		{"data.text.x", "data.text", false},
		{"data.a", "data.b", false},
	}
	for _, tt := range tests {
		p, q := MustParsePath(tt.p), MustParsePath(tt.q)
		if got := p.Covers(q); got != tt.want {
			t.Errorf("%s.Covers(%s) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
		if got := CoversString(tt.p, tt.q); got != tt.want {
			t.Errorf("CoversString(%s, %s) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
	if (Path{}).Covers(MustParsePath("data")) {
		t.Error("zero Path covers data, want not")
	}
}

func pathEntry() *Entry {
	return &Entry{Data: map[string]any{
		"text":  "hello",
		"n":     2.0,
		"null":  nil,
		"items": []any{map[string]any{"text": "a"}, "b", []any{"c"}},
		"obj":   map[string]any{"0": "zero key", "inner": map[string]any{"x": true}},
	}}
}

func TestGet(t *testing.T) {
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"data.text", "hello", true},
		{"data.n", 2.0, true},
		{"data.null", nil, true},
		{"data.items.0.text", "a", true},
		{"data.items.1", "b", true},
		{"data.items.2.0", "c", true},
		{"data.obj.0", "zero key", true},
		{"data.obj.inner.x", true, true},
		{"data.missing", nil, false},
		{"data.text.deeper", nil, false},
		{"data.items.3", nil, false},
		{"data.items.01", nil, false},
		{"data.items.-1", nil, false},
		{"data.items.x", nil, false},
		{"data.items.99999999999", nil, false},
		{"data.obj.1", nil, false},
		{"data.null.x", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := pathEntry().Get(MustParsePath(tt.path))
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Get(%s) = %v, %v; want %v, %v", tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
	e := pathEntry()
	if got, ok := e.Get(MustParsePath("data")); !ok || !reflect.DeepEqual(got, e.Data) {
		t.Errorf("Get(data) = %v, %v; want the data object", got, ok)
	}
	if _, ok := (&Entry{}).Get(MustParsePath("data")); ok {
		t.Error("Get(data) on entry without data = ok, want absent")
	}
	if _, ok := e.Get(Path{}); ok {
		t.Error("Get(zero Path) = ok, want absent")
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"data.text", true},
		{"data.null", true},
		{"data.items.0.text", true},
		{"data.items.1", true},
		{"data.items.2.0", true},
		{"data.obj.inner", true},
		{"data.missing", false},
		{"data.items.3", false},
		{"data.items.x", false},
		{"data.text.deeper", false},
		{"data.missing.deeper", false},
		{"data.obj.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			e := pathEntry()
			p := MustParsePath(tt.path)
			if ok := e.Set(p, "veil:v1:x"); ok != tt.ok {
				t.Fatalf("Set(%s) = %v, want %v", tt.path, ok, tt.ok)
			}
			got, present := e.Get(p)
			if tt.ok && (!present || got != "veil:v1:x") {
				t.Errorf("after Set(%s), Get = %v, %v; want the new value", tt.path, got, present)
			}
			if !tt.ok && !reflect.DeepEqual(e, pathEntry()) {
				t.Errorf("failed Set(%s) changed the entry: %+v", tt.path, e.Data)
			}
		})
	}
	e := pathEntry()
	if e.Set(MustParsePath("data"), "token") {
		t.Error("Set(data, string) = true, want false: data must stay an object")
	}
	repl := map[string]any{"a": "b"}
	if !e.Set(MustParsePath("data"), repl) || !reflect.DeepEqual(e.Data, repl) {
		t.Errorf("Set(data, map) did not replace data: %v", e.Data)
	}
	if (&Entry{}).Set(MustParsePath("data.x"), 1) {
		t.Error("Set on entry without data = true, want false")
	}
}

func TestDataPaths(t *testing.T) {
	e := pathEntry()
	paths, ok := e.DataPaths()
	var got []string
	for _, p := range paths {
		got = append(got, p.String())
	}
	want := []string{"data.items", "data.n", "data.null", "data.obj", "data.text"}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("DataPaths() = %q, %v; want %q, true", got, ok, want)
	}
	e.Data["a.b"] = "dotted"
	if _, ok := e.DataPaths(); ok {
		t.Error("DataPaths() with a dotted member name = ok, want not ok (fail closed)")
	}
	e.Data = map[string]any{"": 1}
	if _, ok := e.DataPaths(); ok {
		t.Error("DataPaths() with an empty member name = ok, want not ok")
	}
}
