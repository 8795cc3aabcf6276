package reveal

import (
	"bytes"
	"encoding/json"
	"testing"
)

// responseBodies are answers the API writes, and hostile ones around that shape.
var responseBodies = []string{
	`{"results":[{"status":"ok","value":"alice@example.com"}]}` + "\n",
	`{"results":[{"status":"ok","value":"a"},{"status":"expired","value":"★★★★★"},{"status":"invalid"}]}`,
	`{"results":[{"status":"ok","value":{"street":"1 Main St","n":[1,2,{"x":null}]}},{"status":"ok","value":42}]}`,
	`{"results":[{"status":"ok","value":-1.5e3},{"status":"ok","value":true},{"status":"ok","value":null},{"status":"ok","value":[]}]}`,
	`{"results":[]}`, `{"results":null}`, `{}`, `null`, `[]`, ``, `{"results":[{}]}`,
	`{"results":[{"status":"ok","value":"a"}]} x`, `{"results":[{"status":"ok","value":"a"}]}}`,
	`{"results":[{"status":"ok","value":"a"}]`, `{"results":[{"status":"ok","value":"a"},]}`,
	`{"results":[{"status":"ok","value":"a\"b"}]}`, `{"results":[{"status":"ok","value":"a\\"}]}`,
	`{"results":[{"status":"ok","value":"\u00e9\n"}]}`, `{"results":[{"status":"ok","value":"<&>"}]}`,
	"{\"results\":[{\"status\":\"ok\",\"value\":\"\xff\"}]}", "{\"results\":[{\"status\":\"ok\",\"value\":\"\x01\"}]}",
	`{"results":[{"status":"ok","value":"\x"}]}`, `{"results":[{"status":"ok","value":01}]}`,
	`{"results":[{"status":"ok","value":{"a":1,"a":2}}]}`, `{"results":[{"status":"ok","value":{"a" :1}}]}`,
	`{"results":[{"status":"ok","value":[1,]}]}`, `{"results":[{"status":"ok","value":{"a":"}"}}]}`,
	`{"results":[{"status":"ok","value":[1]]}]}`, `{"results":[{"status":"ok","value":}]}`,
	`{"results":[{"status":"OK","value":"a"}]}`, `{"results":[{"status":"weird","value":"a"}]}`,
	`{"results":[{"status":"ok","value":"a","x":1}]}`, `{"results":[{"value":"a","status":"ok"}]}`,
	`{"Results":[{"Status":"ok"}]}`, `{"results":[{"status":"ok","value":"a"}],"results":[]}`,
	`{"results":[{"status":"","value":"a"}]}`, `{"results":[{"status":"ok","value":"a"}]}` + " \n\t\r",
	`{"results":[{"status":"ok","value":nul}]}`, `{"results":[{"status":"ok","value":truefalse}]}`,
	`{"results":[{"status":"ok","value":"a"} ]}`, `{"results":[{"status":"ok","value":"\u2028"}]}`,
}

func checkDecodeResponse(t *testing.T, b []byte) {
	t.Helper()
	var want revealResponse
	werr := json.Unmarshal(b, &want)
	got, gerr := decodeRevealResponse(b)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("decodeRevealResponse(%q) error = %v, json.Unmarshal error = %v", b, gerr, werr)
	}
	if werr == nil && !sameResults(got, want.Results) {
		t.Fatalf("decodeRevealResponse(%q) = %q, json.Unmarshal = %q", b, got, want.Results)
	}
	if fast, ok := decodeCanonicalResponse(b); ok && (werr != nil || !sameResults(fast, want.Results)) {
		t.Fatalf("fast path reads %q as %q; json.Unmarshal: %q, %v", b, fast, want.Results, werr)
	}
}

func sameResults(a, b []Result) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i].Status != b[i].Status || !bytes.Equal(a[i].Value, b[i].Value) || (a[i].Value == nil) != (b[i].Value == nil) {
			return false
		}
	}
	return true
}

// TestDecodeRevealResponse: the client reads every answer as json.Unmarshal does, whichever path
// reads it; the fast path takes what the server writes; the request is json.Marshal's bytes.
func TestDecodeRevealResponse(t *testing.T) {
	for _, b := range responseBodies {
		checkDecodeResponse(t, []byte(b))
	}
	var all []Result
	for _, v := range responseValues {
		all = append(all, Result{Status: StatusOK, Value: json.RawMessage(v)}, Result{Status: StatusInvalid})
	}
	for _, rs := range [][]Result{all[:2], all[:10], {{Status: StatusOK, Value: []byte(`{"street":"1 Main St"}`)}}, {{Status: StatusExpired, Value: redactedJSON}}} {
		b, err := appendRevealResponse(nil, rs)
		if err != nil {
			continue
		}
		checkDecodeResponse(t, b)
		if _, ok := decodeCanonicalResponse(b); !ok && len(rs) <= 2 {
			t.Errorf("fast path does not take the server's answer %s", b)
		}
	}
	for _, toks := range [][]string{nil, {}, {"veil:v1:abc"}, {"a", `we"ird`, "<&>", "é", "\xff", "\x00"}} {
		want, _ := json.Marshal(revealRequest{Tokens: toks})
		if got := appendRevealRequest(nil, toks); !bytes.Equal(got, want) {
			t.Errorf("appendRevealRequest(%q) = %s, want %s", toks, got, want)
		}
	}
}

// FuzzDecodeRevealResponse compares the client's reading with json.Unmarshal on any answer.
func FuzzDecodeRevealResponse(f *testing.F) {
	for _, b := range responseBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecodeResponse(t, b) })
}
