package reveal_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/blob"
)

const secretValue = `"alice@example.com"`

// TestAccessMatrix reveals a token of the principal's own app and one of another app, before and
// after the TTL, for every kind of principal.
func TestAccessMatrix(t *testing.T) {
	e := newEnv(t)
	ps := []principal{
		newPrincipal(t, "msg", reveal.KindMessaging, false, "app-1"),
		newPrincipal(t, "sup", reveal.KindSupport, false, "app-1"),
		newPrincipal(t, "oth", reveal.KindOther, false, "app-1"),
		newPrincipal(t, "oth-override", reveal.KindOther, true, "app-1"),
		newPrincipal(t, "adm", reveal.KindAdmin, false, "app-1"),
		newPrincipal(t, "adm-all", reveal.KindAdmin, false, reveal.AllApps),
	}
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, ps...)})
	own := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	other := e.seal("app-2", time.Hour, secretValue)[0].Encode()

	const (
		ok, expired, denied = reveal.StatusOK, reveal.StatusExpired, reveal.StatusDenied
	)
	// want[principal] = {own before, other before, own after, other after}
	want := map[string][4]reveal.Status{
		"msg":          {ok, denied, expired, denied},
		"sup":          {ok, denied, expired, denied},
		"oth":          {denied, denied, denied, denied},
		"oth-override": {ok, denied, expired, denied},
		"adm":          {ok, denied, expired, denied},
		"adm-all":      {ok, ok, expired, expired},
	}
	got := map[string][4]reveal.Status{}
	check := func(phase int) {
		for _, p := range ps {
			c := &reveal.Client{BaseURL: url, Key: p.key}
			res, err := c.Reveal(context.Background(), []string{own, other})
			if err != nil {
				t.Fatalf("%s: Reveal: %v", p.Name, err)
			}
			g := got[p.Name]
			for i, r := range res {
				g[2*phase+i] = r.Status
				switch r.Status {
				case reveal.StatusOK:
					if string(r.Value) != secretValue {
						t.Errorf("%s: ok value = %s, want %s", p.Name, r.Value, secretValue)
					}
				case reveal.StatusExpired, reveal.StatusDenied:
					var s string
					if err := json.Unmarshal(r.Value, &s); err != nil || s != envelope.Redacted {
						t.Errorf("%s: %s value = %s, want %q", p.Name, r.Status, r.Value, envelope.Redacted)
					}
				}
			}
			got[p.Name] = g
		}
	}
	check(0)
	e.clock.Advance(2 * time.Hour)
	check(1)
	for _, p := range ps {
		t.Run(p.Name, func(t *testing.T) {
			if got[p.Name] != want[p.Name] {
				t.Errorf("statuses (own, other) before and after TTL = %v, want %v", got[p.Name], want[p.Name])
			}
		})
	}
}

// TestKindDecrypts is the one rule of who may see plaintext (principals and integrations): an
// unknown kind, odd casing included, never decrypts, override or not.
func TestKindDecrypts(t *testing.T) {
	for _, tt := range []struct {
		kind     reveal.Kind
		override bool
		want     bool
	}{
		{reveal.KindMessaging, false, true}, {reveal.KindSupport, false, true}, {reveal.KindAdmin, false, true},
		{reveal.KindOther, false, false}, {reveal.KindOther, true, true},
		{"", true, false}, {"Messaging", false, false}, {"SUPPORT", true, false}, {"other ", true, false},
	} {
		if got := tt.kind.Decrypts(tt.override); got != tt.want {
			t.Errorf("Kind(%q).Decrypts(%v) = %v, want %v", tt.kind, tt.override, got, tt.want)
		}
	}
}

// TestBlobStatusesMatch: the Opener hands on blob.OpenSealed's status as a reveal Status, so
// the strings must be the same.
func TestBlobStatusesMatch(t *testing.T) {
	for _, tt := range []struct {
		b blob.Status
		r reveal.Status
	}{{blob.StatusOK, reveal.StatusOK}, {blob.StatusExpired, reveal.StatusExpired}, {blob.StatusInvalid, reveal.StatusInvalid}} {
		if reveal.Status(tt.b) != tt.r {
			t.Errorf("blob status %q is not reveal's %q", tt.b, tt.r)
		}
	}
}

// TestMayDecrypt is the decision table alone.
func TestMayDecrypt(t *testing.T) {
	tests := []struct {
		name string
		p    reveal.Principal
		app  string
		want bool
	}{
		{"messaging own", reveal.Principal{Kind: reveal.KindMessaging, Apps: []string{"a"}}, "a", true},
		{"messaging other app", reveal.Principal{Kind: reveal.KindMessaging, Apps: []string{"a"}}, "b", false},
		{"support own", reveal.Principal{Kind: reveal.KindSupport, Apps: []string{"a", "b"}}, "b", true},
		{"other no override", reveal.Principal{Kind: reveal.KindOther, Apps: []string{"a"}}, "a", false},
		{"other override", reveal.Principal{Kind: reveal.KindOther, Override: true, Apps: []string{"a"}}, "a", true},
		{"admin star", reveal.Principal{Kind: reveal.KindAdmin, Apps: []string{"*"}}, "z", true},
		{"messaging star ignored", reveal.Principal{Kind: reveal.KindMessaging, Apps: []string{"*"}}, "z", false},
		{"unknown kind", reveal.Principal{Kind: "robot", Override: true, Apps: []string{"a"}}, "a", false},
		{"no apps", reveal.Principal{Kind: reveal.KindAdmin}, "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.MayDecrypt(tt.app); got != tt.want {
				t.Errorf("MayDecrypt(%q) = %v, want %v", tt.app, got, tt.want)
			}
		})
	}
}

// TestTamperedAndForged: every edit of a token that keeps its record reachable fails to
// authenticate (invalid); a token naming a ref the store does not hold answers expired, the same
// as erased data, so the API is no oracle for which refs exist.
func TestTamperedAndForged(t *testing.T) {
	e, p, url := serveSupport(t, "sup")
	toks := e.seal("app-1", time.Hour, secretValue, `"second"`)
	good := toks[0]

	flipKEK := good
	flipKEK.RefKEK[3] ^= 1
	flipTag := good
	flipTag.Tag[0] ^= 0x80
	otherField := good
	otherField.Field = 1
	forgedKEK := good
	rand32(forgedKEK.RefKEK[:])
	unknownRef := good
	unknownRef.Ref[0] ^= 1
	enc := good.Encode()
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(enc, envelope.TokenPrefix))

	tests := []struct {
		name  string
		token string
		want  reveal.Status
	}{
		{"good", enc, reveal.StatusOK},
		{"ref KEK bit flip", flipKEK.Encode(), reveal.StatusExpired},
		{"tag bit flip", flipTag.Encode(), reveal.StatusExpired},
		{"field moved", otherField.Encode(), reveal.StatusExpired},
		{"forged ref KEK", forgedKEK.Encode(), reveal.StatusExpired},
		{"truncated", enc[:len(enc)-2], reveal.StatusInvalid},
		{"extended", enc + "AA", reveal.StatusInvalid},
		{"no prefix", strings.TrimPrefix(enc, envelope.TokenPrefix), reveal.StatusInvalid},
		{"wrong version", "veil:v2:" + strings.TrimPrefix(enc, envelope.TokenPrefix), reveal.StatusInvalid},
		{"not base64", envelope.TokenPrefix + strings.Repeat("*", len(enc)-len(envelope.TokenPrefix)), reveal.StatusInvalid},
		{"empty", "", reveal.StatusInvalid},
		{"bad app length", envelope.TokenPrefix + base64.RawURLEncoding.EncodeToString(append([]byte{200}, raw[1:]...)), reveal.StatusInvalid},
		{"unknown ref", unknownRef.Encode(), reveal.StatusExpired},
	}
	// A token that parses but does not authenticate answers exactly like an absent ref (expired),
	// so the API tells no one which refs exist; only tokens that do not parse are invalid.
	c := &reveal.Client{BaseURL: url, Key: p.key}
	var all []string
	for _, tt := range tests {
		all = append(all, tt.token)
	}
	res, err := c.Reveal(context.Background(), all)
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res[i].Status != tt.want {
				t.Errorf("Reveal(%s) status = %s, want %s", tt.name, res[i].Status, tt.want)
			}
			if tt.want == reveal.StatusInvalid && res[i].Value != nil {
				t.Errorf("Reveal(%s) value = %s, want none", tt.name, res[i].Value)
			}
		})
	}
}

// TestRefExistenceNotRevealed: a token naming a live ref with a bad tag or ref KEK gets a
// response byte-identical to one naming an absent ref, so a caller that may decrypt an app cannot
// probe which (predictable) refs exist. The audit still records the forgery as invalid.
func TestRefExistenceNotRevealed(t *testing.T) {
	e, p, url := serveSupport(t, "sup")
	live := e.seal("app-1", time.Hour, secretValue)[0]
	badTag, badKEK, absent := live, live, live
	badTag.Tag[0] ^= 0x80
	badKEK.RefKEK[0] ^= 1
	absent.Ref[0] ^= 1
	absent.Tag[0] ^= 0x80 // same tampering, on a ref that does not exist
	body := func(tok envelope.Token) string {
		t.Helper()
		req := newRequest(t, http.MethodPost, url+"/v1/reveal", bearer(p), strings.NewReader(`{"tokens":["`+tok.Encode()+`"]}`))
		resp, b := roundTrip(t, nil, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST = %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	want := body(absent)
	if !strings.Contains(want, `"expired"`) {
		t.Fatalf("absent ref answered %s, want expired", want)
	}
	for name, tok := range map[string]envelope.Token{"bad tag": badTag, "bad ref KEK": badKEK} {
		if got := body(tok); got != want {
			t.Errorf("live ref with %s answered %s; absent ref %s: want identical", name, got, want)
		}
	}
	recs, _ := e.auditRecords(3)
	got := map[string]int{}
	for _, r := range recs {
		got[r.Status]++
	}
	if got["invalid"] != 2 || got["expired"] != 1 {
		t.Errorf("audit statuses = %v, want 2 invalid (the forgeries on a live ref) and 1 expired", got)
	}
}

func rand32(b []byte) {
	for i := range b {
		b[i] = byte(i*7 + 13)
	}
}

// post sends a raw request and returns the status and the decoded error message.
func post(t *testing.T, url, auth string, body io.Reader, length int64) (int, string, http.Header) {
	t.Helper()
	req := newRequest(t, http.MethodPost, url+"/v1/reveal", auth, body)
	req.ContentLength = length
	resp, b := roundTrip(t, nil, req)
	var er struct{ Error string }
	json.Unmarshal(b, &er)
	return resp.StatusCode, er.Error, resp.Header
}

func TestAuthentication(t *testing.T) {
	e, p, url := serveSupport(t, "sup")
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	body := `{"tokens":["` + tok + `"]}`
	other, _ := reveal.NewAPIKey()
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"unknown key", "Bearer " + string(other), http.StatusUnauthorized},
		{"key with one byte changed", "Bearer " + string(p.key[:len(p.key)-1]) + "x", http.StatusUnauthorized},
		{"hash as key", "Bearer " + p.KeySHA256, http.StatusUnauthorized},
		{"basic scheme", "Basic " + string(p.key), http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"huge key", "Bearer " + strings.Repeat("k", 4000), http.StatusUnauthorized},
		{"right key", "Bearer " + string(p.key), http.StatusOK},
		{"right key lower-case scheme", "bearer " + string(p.key), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg, h := post(t, url, tt.auth, strings.NewReader(body), int64(len(body)))
			if code != tt.want {
				t.Errorf("POST status = %d (%s), want %d", code, msg, tt.want)
			}
			if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	// An unauthenticated request never reaches the opener, so it leaves no audit record; the two
	// authenticated ones leave one each.
	recs, _ := e.auditRecords(2)
	if len(recs) != 2 {
		t.Errorf("audit records = %d, want 2", len(recs))
	}
}

func TestRequestLimits(t *testing.T) {
	e := newEnv(t)
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), Burst: 1000, RatePerSecond: 1000})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	auth := "Bearer " + string(p.key)
	many := func(n int) string {
		ts := make([]string, n)
		for i := range ts {
			ts[i] = tok
		}
		b, _ := json.Marshal(map[string][]string{"tokens": ts})
		return string(b)
	}
	big := `{"tokens":["` + strings.Repeat("A", 1<<20) + `"]}`
	tests := []struct {
		name    string
		body    string
		chunked bool
		want    int
	}{
		{"256 tokens", many(256), false, http.StatusOK},
		{"257 tokens", many(257), false, http.StatusRequestEntityTooLarge},
		{"body over 1 MiB", big, false, http.StatusRequestEntityTooLarge},
		{"body over 1 MiB chunked", big, true, http.StatusRequestEntityTooLarge},
		{"no tokens", `{"tokens":[]}`, false, http.StatusBadRequest},
		{"not JSON", `tokens=` + tok, false, http.StatusBadRequest},
		{"unknown field", `{"tokens":["` + tok + `"],"x":1}`, false, http.StatusBadRequest},
		{"trailing data", `{"tokens":["` + tok + `"]}{}`, false, http.StatusBadRequest},
		{"tokens not strings", `{"tokens":[1]}`, false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			length := int64(len(tt.body))
			var r io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				length, r = -1, io.MultiReader(r) // hides the length: sent chunked
			}
			code, msg, _ := post(t, url, auth, r, length)
			if code != tt.want {
				t.Errorf("POST status = %d (%s), want %d", code, msg, tt.want)
			}
			if strings.Contains(msg, tok) {
				t.Errorf("error message quotes the token")
			}
		})
	}
	for _, tt := range []struct {
		name, path string
		want       int
	}{
		{"GET", "/v1/reveal", http.StatusMethodNotAllowed},
		{"healthz", "/healthz", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := roundTrip(t, nil, newRequest(t, http.MethodGet, url+tt.path, "", nil))
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	a := newPrincipal(t, "a", reveal.KindSupport, false, "app-1")
	b := newPrincipal(t, "b", reveal.KindSupport, false, "app-1")
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, a, b), RatePerSecond: 0.5, Burst: 2})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	ca := &reveal.Client{BaseURL: url, Key: a.key}
	for i := range 2 {
		if _, err := ca.Reveal(context.Background(), []string{tok}); err != nil {
			t.Fatalf("request %d within burst: %v", i, err)
		}
	}
	_, err := ca.Reveal(context.Background(), []string{tok})
	var ae *reveal.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third request: err = %v, want 429", err)
	}
	if ae.RetryAfter < time.Second {
		t.Errorf("Retry-After = %v, want at least 1s", ae.RetryAfter)
	}
	// Limits are per principal: b still has its burst.
	cb := &reveal.Client{BaseURL: url, Key: b.key}
	if _, err := cb.Reveal(context.Background(), []string{tok}); err != nil {
		t.Errorf("other principal: %v, want served", err)
	}
}

func TestTLSVersions(t *testing.T) {
	e := newEnv(t)
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	certFile, keyFile, pool := writeCert(t)
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), CertFile: certFile, KeyFile: keyFile})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	tests := []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tt.min, MaxVersion: tt.max},
			}}
			c := &reveal.Client{BaseURL: url, Key: p.key, HTTPClient: hc}
			res, err := c.Reveal(context.Background(), []string{tok})
			if tt.ok && (err != nil || res[0].Status != reveal.StatusOK) {
				t.Errorf("Reveal over %s = %v, %v; want ok", tt.name, res, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("Reveal over %s succeeded, want handshake failure", tt.name)
			}
		})
	}
	t.Run("plain HTTP to TLS port", func(t *testing.T) {
		c := &reveal.Client{BaseURL: strings.Replace(url, "https://", "http://", 1), Key: p.key}
		if _, err := c.Reveal(context.Background(), []string{tok}); err == nil {
			t.Errorf("plain HTTP to the TLS listener succeeded")
		}
	})
}

func TestListenRefusesPlainHTTP(t *testing.T) {
	e := newEnv(t)
	certFile, keyFile, _ := writeCert(t)
	ps := principalSet(t)
	tests := []struct {
		name string
		cfg  reveal.ServerConfig
	}{
		{"all interfaces", reveal.ServerConfig{Addr: "0.0.0.0:0", PlainHTTP: true}},
		{"empty host", reveal.ServerConfig{Addr: ":0", PlainHTTP: true}},
		{"IPv6 any", reveal.ServerConfig{Addr: "[::]:0", PlainHTTP: true}},
		{"public name", reveal.ServerConfig{Addr: "example.com:0", PlainHTTP: true}},
		{"neither TLS nor dev flag", reveal.ServerConfig{Addr: "127.0.0.1:0"}},
		{"both TLS and dev flag", reveal.ServerConfig{Addr: "127.0.0.1:0", PlainHTTP: true, CertFile: certFile, KeyFile: keyFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Opener, cfg.Auditor, cfg.Principals = e.opener, e.auditor, ps
			s, err := reveal.NewServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := s.Listen()
			if err == nil {
				ln.Close()
				t.Fatalf("Listen() on %s with PlainHTTP=%v succeeded, want refusal", cfg.Addr, cfg.PlainHTTP)
			}
			if !errors.Is(err, reveal.ErrPlainHTTP) {
				t.Errorf("Listen() = %v, want ErrPlainHTTP", err)
			}
		})
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		t.Run("loopback "+addr, func(t *testing.T) {
			s, _ := reveal.NewServer(reveal.ServerConfig{Addr: addr, PlainHTTP: true, Opener: e.opener, Auditor: e.auditor, Principals: ps})
			ln, err := s.Listen()
			if err != nil {
				if strings.Contains(addr, "::1") && !errors.Is(err, reveal.ErrPlainHTTP) {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatalf("Listen() on %s = %v, want ok", addr, err)
			}
			ln.Close()
		})
	}
}

// TestSlowClient: a client that dribbles its headers is cut off by ReadHeaderTimeout.
func TestSlowClient(t *testing.T) {
	e := newEnv(t)
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t), ReadHeaderTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn.Write([]byte("POST /v1/reveal HTTP/1.1\r\nHost: x\r\n"))
		for range 100 {
			if _, err := conn.Write([]byte("X")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	conn.SetReadDeadline(time.Now().Add(4 * time.Second))
	_, err = io.ReadAll(conn)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v, want closed by the server", took)
	}
	if took > 2*time.Second {
		t.Errorf("server closed the connection after %v, want about 200ms", took)
	}
	conn.Close()
	<-done
}

// TestAuditRecords: one record per token, with who, app, ref, field, status and request id, and
// never the value, the token or the ref KEK.
func TestAuditRecords(t *testing.T) {
	e := newEnv(t)
	sup := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	oth := newPrincipal(t, "oth", reveal.KindOther, false, "app-1")
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, sup, oth)})
	toks := e.seal("app-1", time.Hour, secretValue, `{"card":"4111111111111111"}`)
	enc := []string{toks[0].Encode(), toks[1].Encode(), "veil:v1:garbage"}

	if _, err := (&reveal.Client{BaseURL: url, Key: sup.key}).Reveal(context.Background(), enc); err != nil {
		t.Fatal(err)
	}
	if _, err := (&reveal.Client{BaseURL: url, Key: oth.key}).Reveal(context.Background(), enc[:1]); err != nil {
		t.Fatal(err)
	}
	recs, raw := e.auditRecords(4)
	if len(recs) != 4 {
		t.Fatalf("audit records = %d, want 4", len(recs))
	}
	ref := toks[0].Ref.String()
	want := []reveal.AuditRecord{
		{Principal: "sup", Kind: reveal.KindSupport, App: "app-1", Ref: ref, Field: 0, Status: "ok", Source: "api"},
		{Principal: "sup", Kind: reveal.KindSupport, App: "app-1", Ref: ref, Field: 1, Status: "ok", Source: "api"},
		{Principal: "sup", Kind: reveal.KindSupport, App: "", Ref: "", Field: -1, Status: "invalid", Source: "api"},
		{Principal: "oth", Kind: reveal.KindOther, App: "app-1", Ref: ref, Field: 0, Status: "denied", Source: "api"},
	}
	for i, w := range want {
		g := recs[i]
		if g.Time.IsZero() || g.RequestID == "" {
			t.Errorf("record %d: time %v, request id %q; want both set", i, g.Time, g.RequestID)
		}
		g.Time, g.RequestID = time.Time{}, ""
		if g != w {
			t.Errorf("record %d = %+v, want %+v", i, g, w)
		}
	}
	if recs[0].RequestID != recs[1].RequestID || recs[0].RequestID == recs[3].RequestID {
		t.Errorf("request ids %q %q %q: want one per request", recs[0].RequestID, recs[1].RequestID, recs[3].RequestID)
	}
	forbidden := []string{"alice", "4111111111111111", enc[0], enc[1]}
	for _, tk := range toks {
		forbidden = append(forbidden, hex.EncodeToString(tk.RefKEK[:]),
			base64.StdEncoding.EncodeToString(tk.RefKEK[:]), base64.RawURLEncoding.EncodeToString(tk.RefKEK[:]))
	}
	for i, r := range raw {
		for _, f := range forbidden {
			if bytes.Contains(r, []byte(f)) {
				t.Errorf("audit record %d holds a value, token or ref KEK: %s", i, r)
			}
		}
		if bytes.Contains(r, toks[0].RefKEK[:]) || bytes.Contains(r, toks[1].RefKEK[:]) {
			t.Errorf("audit record %d holds raw ref KEK bytes", i)
		}
	}
}

// TestFailClosed: when the audit cannot be written, no value is released.
func TestFailClosed(t *testing.T) {
	e := newEnv(t)
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	aud, err := reveal.DialKafkaAuditor(e.addrs)
	if err != nil {
		t.Fatal(err)
	}
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), Auditor: aud, RequestTimeout: 500 * time.Millisecond})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	c := &reveal.Client{BaseURL: url, Key: p.key}
	if res, err := c.Reveal(context.Background(), []string{tok}); err != nil || res[0].Status != reveal.StatusOK {
		t.Fatalf("Reveal with audit up = %v, %v; want ok", res, err)
	}
	aud.Close(context.Background())
	_, err = c.Reveal(context.Background(), []string{tok})
	var ae *reveal.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Reveal with audit closed: err = %v, want 503", err)
	}
	if strings.Contains(ae.Message, "alice") {
		t.Errorf("error holds the value: %s", ae.Message)
	}
}

// TestRevealDoesNotExtendTTL: a reveal just before expiry does not keep the value alive.
func TestRevealDoesNotExtendTTL(t *testing.T) {
	e, p, url := serveSupport(t, "sup")
	tok := e.seal("app-1", 10*time.Second, secretValue)[0].Encode()
	c := &reveal.Client{BaseURL: url, Key: p.key}
	for _, step := range []time.Duration{0, 5 * time.Second, 3 * time.Second} {
		e.clock.Advance(step)
		if res, err := c.Reveal(context.Background(), []string{tok}); err != nil || res[0].Status != reveal.StatusOK {
			t.Fatalf("Reveal before TTL = %v, %v; want ok", res, err)
		}
	}
	e.clock.Advance(3 * time.Second) // 11s after sealing
	res, err := c.Reveal(context.Background(), []string{tok})
	if err != nil || res[0].Status != reveal.StatusExpired {
		t.Fatalf("Reveal after TTL = %v, %v; want expired", res, err)
	}
}
