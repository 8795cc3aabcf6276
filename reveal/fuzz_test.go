package reveal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/reveal"
)

// echoMarker is looked for in responses and audit records when a fuzzed body carries it.
const echoMarker = "ECHO-MARK-5b0e2a"

// tokenLike matches anything that could be (part of) a token; the API's own help text names the
// prefix followed by an ellipsis only.
var tokenLike = regexp.MustCompile(`veil:[a-z0-9]*:[A-Za-z0-9_-]{4}`)

// FuzzRevealRequest drives the reveal handler with arbitrary bodies and three kinds of
// authorization (the right key, none, a wrong one). Whatever the body: no panic; no 5xx but 503
// (store, KMS or audit down, which it never is here); the response and the audit records never
// echo the body (no marker, no token); a 200 answers exactly one result per token of the body, one
// audit record each, and a value only for the statuses that carry one.
func FuzzRevealRequest(f *testing.F) {
	e := newEnv(f)
	p := newPrincipal(f, "sup", reveal.KindSupport, false, "app-1")
	var (
		mu      sync.Mutex
		audited [][]byte
	)
	aud := reveal.AuditorFunc(func(_ context.Context, recs []reveal.AuditRecord) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			audited = append(audited, b)
		}
		return nil
	})
	s, err := reveal.NewServer(reveal.ServerConfig{
		Opener: e.opener, Auditor: aud, Principals: principalSet(f, p),
		RatePerSecond: 1e9, Burst: 1 << 30,
	})
	if err != nil {
		f.Fatal(err)
	}
	handler := s.Handler()
	own := e.seal("app-1", time.Hour, secretValue, `{"a":[1,2]}`)
	other := e.seal("app-2", time.Hour, secretValue)[0].Encode()
	gone := e.seal("app-1", time.Second, secretValue)[0].Encode()
	e.clock.Advance(2 * time.Second)
	body := func(toks ...string) []byte {
		b, _ := json.Marshal(map[string][]string{"tokens": toks})
		return b
	}
	for _, b := range [][]byte{
		body(own[0].Encode()),
		body(own[0].Encode(), own[1].Encode(), other, gone),
		body(own[0].Encode()[:40], echoMarker),
		body("veil:v1:" + echoMarker),
		body(),
		[]byte(`{"tokens":["` + echoMarker + `"],"x":1}`),
		[]byte(`{"tokens":"` + echoMarker + `"}`),
		[]byte(`{"tokens":[` + strings.Repeat(`"a",`, 300) + `"a"]}`),
		[]byte(`{"tokens":["\ud800` + echoMarker + `"]}`),
		[]byte(`{"tokens":["` + echoMarker + "\xff" + `"]}`),
		[]byte(`{"tokens":[null]} ` + echoMarker),
		[]byte(strings.Repeat("[", 1000) + echoMarker),
		[]byte(echoMarker),
		nil,
	} {
		for auth := range uint8(3) {
			f.Add(b, auth)
		}
	}
	wrong, _ := reveal.NewAPIKey()

	f.Fuzz(func(t *testing.T, b []byte, auth uint8) {
		req := httptest.NewRequest(http.MethodPost, "/v1/reveal", bytes.NewReader(b))
		switch auth % 3 {
		case 0:
			req.Header.Set("Authorization", "Bearer "+string(p.key))
		case 1:
			req.Header.Set("Authorization", "Bearer "+string(wrong))
		}
		mu.Lock()
		audited = audited[:0]
		mu.Unlock()
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		resp := w.Body.Bytes()
		code := w.Code
		switch {
		case code >= 500 && code != http.StatusServiceUnavailable:
			t.Fatalf("status %d", code)
		case auth%3 != 0 && code != http.StatusUnauthorized:
			t.Fatalf("status %d without the right key, want 401", code)
		}

		// Nothing of the body comes back: no marker, no token, in the response or the audit.
		mu.Lock()
		recs := append([][]byte(nil), audited...)
		mu.Unlock()
		if bytes.Contains(b, []byte(echoMarker)) {
			if bytes.Contains(resp, []byte(echoMarker)) {
				t.Fatalf("response echoes the body: %s", resp)
			}
			for k, vs := range w.Header() {
				for _, v := range vs {
					if strings.Contains(v, echoMarker) {
						t.Fatalf("header %s echoes the body", k)
					}
				}
			}
			for _, r := range recs {
				if bytes.Contains(r, []byte(echoMarker)) {
					t.Fatalf("audit record echoes the body: %s", r)
				}
			}
		}
		if tokenLike.Match(resp) {
			t.Fatalf("response holds a token: %s", resp)
		}
		for _, r := range recs {
			if tokenLike.Match(r) {
				t.Fatalf("audit record holds a token: %s", r)
			}
		}
		if code != http.StatusOK {
			if code == http.StatusUnauthorized && len(recs) != 0 {
				t.Fatalf("unauthenticated request audited %d tokens", len(recs))
			}
			return
		}

		// A 200 answers one result per token, each audited.
		var in struct{ Tokens []string }
		if err := json.Unmarshal(b, &in); err != nil {
			t.Fatalf("200 for a body encoding/json rejects: %v", err)
		}
		var out struct{ Results []reveal.Result }
		if err := json.Unmarshal(resp, &out); err != nil {
			t.Fatalf("200 response is not JSON: %v", err)
		}
		if len(out.Results) != len(in.Tokens) || len(recs) != len(in.Tokens) {
			t.Fatalf("%d tokens: %d results, %d audit records; want one each", len(in.Tokens), len(out.Results), len(recs))
		}
		for i, r := range out.Results {
			tok := in.Tokens[i]
			switch r.Status {
			case reveal.StatusOK:
				if tok != own[0].Encode() && tok != own[1].Encode() {
					t.Fatalf("token %d: ok for a token that is not genuine", i)
				}
			case reveal.StatusExpired, reveal.StatusDenied:
				var v string
				if json.Unmarshal(r.Value, &v) != nil || v != envelope.Redacted {
					t.Fatalf("token %d: %s with value %s, want %q", i, r.Status, r.Value, envelope.Redacted)
				}
			case reveal.StatusInvalid:
				if r.Value != nil {
					t.Fatalf("token %d: invalid with a value", i)
				}
			default:
				t.Fatalf("token %d: status %q", i, r.Status)
			}
			if tok == other && r.Status != reveal.StatusDenied {
				t.Fatalf("another app's token answered %s, want denied", r.Status)
			}
		}
	})
}
