package reveal

import (
	"slices"
	"strings"
	"testing"
)

// requestBodies are bodies clients send, and hostile ones around the shape the fast path takes.
var requestBodies = []string{
	`{"tokens":["veil:v1:abc"]}`, `{"tokens":["a","b","c"]}`, `{"tokens":[]}`, `{"tokens":[""]}`,
	" \t\r\n{ \"tokens\" : [ \"a\" , \"b\" ] } \n", `{"tokens":["a"]}]`, `{"tokens":["a"]}}`,
	`{"tokens":["a"]} x`, `{"tokens":["a"]}{"tokens":["b"]}`, `{"Tokens":["a"]}`, `{"TOKENS":["a"]}`,
	"{\"to\u212Aens\":[\"a\"]}", `{"tokens":["a"],"tokens":["b"]}`, `{"tokens":["a"],"x":1}`,
	`{"tokens":null}`, `null`, `{}`, `[]`, `"x"`, `{"tokens":"a"}`, `{"tokens":[null]}`, `{"tokens":[1]}`,
	`{"tokens":["\u0076eil"]}`, `{"tokens":["a\"b"]}`, `{"tokens":["a\\b"]}`, "{\"tokens\":[\"\xff\"]}",
	"{\"tokens\":[\"é\"]}", "{\"tokens\":[\"a\x01\"]}", "{\"tokens\":[\"a\x7f\"]}", `{"tokens":["a",]}`,
	`{"tokens":["a"`, `{"tokens":["a"]`, `{"tokens":[,"a"]}`, `{"tokens" "a"}`, `{"tokens":["a" "b"]}`,
	"", " ", `{`, "\v{\"tokens\":[\"a\"]}", "{\"tokens\":[\"a\"]}\f", "\u00a0{\"tokens\":[\"a\"]}",
	`{"tokens":["a"]}` + "\x00",
}

func checkRequest(t *testing.T, body []byte) {
	t.Helper()
	want, wok := decodeWithEncodingJSON(body)
	got, gok := decodeRevealRequest(body)
	if gok != wok || !slices.Equal(got, want) || (got == nil) != (want == nil) {
		t.Fatalf("decodeRevealRequest(%q) = %q, %v; encoding/json reads %q, %v", body, got, gok, want, wok)
	}
	if fast, ok := decodeCanonicalRequest(body); ok && (!wok || !slices.Equal(fast, want) || fast == nil) {
		t.Fatalf("fast path reads %q as %q; encoding/json reads %q, %v", body, fast, want, wok)
	}
}

// TestDecodeRevealRequest: the API reads every body as encoding/json with DisallowUnknownFields
// does, whichever path reads it, and the fast path takes the usual shape.
func TestDecodeRevealRequest(t *testing.T) {
	for _, b := range requestBodies {
		checkRequest(t, []byte(b))
	}
	for _, b := range []string{`{"tokens":["veil:v1:abc"]}`, " { \"tokens\" : [ \"a\" , \"\" ] } ", `{"tokens":[]}`} {
		if _, ok := decodeCanonicalRequest([]byte(b)); !ok {
			t.Errorf("fast path does not take %q", b)
		}
	}
	many := `{"tokens":["` + strings.Repeat(`veil:v1:x","`, 255) + `veil:v1:y"]}`
	checkRequest(t, []byte(many))
	if toks, ok := decodeCanonicalRequest([]byte(many)); !ok || len(toks) != 256 || toks[255] != "veil:v1:y" {
		t.Errorf("fast path on 256 tokens = %d tokens, %v", len(toks), ok)
	}
}

// FuzzDecodeRevealRequest compares the request reading with encoding/json on any body.
func FuzzDecodeRevealRequest(f *testing.F) {
	for _, b := range requestBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkRequest(t, body) })
}
