package reveal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// The abuse tests extend server_test.go (TestAuthentication, TestRequestLimits, TestRateLimit,
// TestSlowClient) and links_test.go (TestBlobLinks) with what those leave out.

// TestWrongKeysLookAlike: every refused key gets the same answer, byte for byte (status, body,
// header names and values but the request id), whether it is absent, malformed, unknown or one
// character away from a real key. Lookup hashes the presented key before comparing, in constant
// time, so how close a guess is cannot change the path it takes either.
func TestWrongKeysLookAlike(t *testing.T) {
	e, p, url := serveSupport(t, "sup")
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	body := `{"tokens":["` + tok + `"]}`
	k := string(p.key)
	flip := func(i int) string {
		c := byte('a')
		if k[i] == 'a' {
			c = 'b'
		}
		return k[:i] + string(c) + k[i+1:]
	}
	auths := map[string]string{
		"no header":        "",
		"empty":            "Bearer",
		"not bearer":       "Token " + k,
		"unknown key":      "Bearer " + strings.Repeat("x", len(k)),
		"first char wrong": "Bearer " + flip(0),
		"last char wrong":  "Bearer " + flip(len(k)-1),
		"key prefix":       "Bearer " + k[:len(k)-1],
		"key plus one":     "Bearer " + k + "x",
		"key twice":        "Bearer " + k + k,
		"hash of the key":  "Bearer " + p.KeySHA256,
		"key with a tab":   "Bearer " + k[:10] + "\t" + k[10:],
		"non-ASCII key":    "Bearer " + k[:10] + "é" + k[11:],
	}
	type answer struct {
		code    int
		body    string
		headers string
	}
	answers := map[answer][]string{}
	for name, auth := range auths {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/reveal", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Del("X-Request-Id")
		resp.Header.Del("Date")
		var hs []string
		for h, vs := range resp.Header {
			hs = append(hs, h+": "+strings.Join(vs, ","))
		}
		slices.Sort(hs)
		a := answer{resp.StatusCode, string(b), strings.Join(hs, "\n")}
		answers[a] = append(answers[a], name)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, resp.StatusCode)
		}
		if strings.Contains(string(b), k[:8]) {
			t.Errorf("%s: the answer quotes the key", name)
		}
	}
	if len(answers) != 1 {
		for a, names := range answers {
			t.Logf("%v: %d %s %q", names, a.code, a.body, a.headers)
		}
		t.Errorf("refused keys get %d different answers, want 1", len(answers))
	}
	// Nothing refused reached the opener: no audit record.
	if recs, _ := e.auditRecords(0); len(recs) != 0 {
		t.Errorf("audit records = %d, want 0", len(recs))
	}
}

// TestOtherTenantsTokens: a principal of app-1 never reads app-2's data, whatever it does to a
// token of app-2: as is it is denied (and audited as such); relabelled to app-1 it names a record
// app-1 does not have (expired, the answer for erased data); and app-2's ref under app-1's name
// cannot open app-2's record, whose associated data binds app-2 (audited invalid, answered
// expired like an absent ref).
func TestOtherTenantsTokens(t *testing.T) {
	e, p, url := serveSupport(t, "sup-1")
	theirs := e.seal("app-2", time.Hour, `"app-2 secret"`)[0]
	relabelled := theirs
	relabelled.App = "app-1"

	// The worst case for the relabelled token: app-2's sealed record copied under app-1 in the
	// store (an operator mistake, or a tenant able to write rows).
	item, err := e.store.Get(context.Background(), "app-2", theirs.Ref)
	if err != nil {
		t.Fatal(err)
	}
	copied := relabelled
	copied.Ref[0] ^= 0xff
	item.App, item.Ref = "app-1", copied.Ref
	if err := e.store.Put(context.Background(), []store.Item{item}); err != nil {
		t.Fatal(err)
	}

	c := &reveal.Client{BaseURL: url, Key: p.key}
	res, err := c.Reveal(context.Background(), []string{theirs.Encode(), relabelled.Encode(), copied.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	want := []reveal.Status{reveal.StatusDenied, reveal.StatusExpired, reveal.StatusExpired}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("token %d: status %s, want %s", i, r.Status, want[i])
		}
		if bytes.Contains(r.Value, []byte("app-2 secret")) {
			t.Errorf("token %d: app-2's value revealed to app-1", i)
		}
	}
	recs, _ := e.auditRecords(3)
	got := map[string]int{}
	for _, r := range recs {
		got[r.App+":"+r.Status]++
	}
	for _, w := range []string{"app-2:denied", "app-1:expired", "app-1:invalid"} {
		if got[w] != 1 {
			t.Errorf("audit %s = %d, want 1 (got %v)", w, got[w], got)
		}
	}
}

// TestRemovedPrincipalStopsWorking: a principal removed from the principals file is refused by
// the running server at the next check of the file; the others keep working.
func TestRemovedPrincipalStopsWorking(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "principals.yaml")
	gone := addPrincipal(t, path, "leaver", reveal.KindSupport, "app-1")
	stays := addPrincipal(t, path, "stayer", reveal.KindSupport, "app-1")
	f, err := reveal.OpenPrincipalsFile(path, 10*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	url := e.serve(reveal.ServerConfig{Principals: f})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	reveal1 := func(k reveal.APIKey) error {
		c := &reveal.Client{BaseURL: url, Key: k}
		_, err := c.Reveal(context.Background(), []string{tok})
		return err
	}
	if err := reveal1(gone); err != nil {
		t.Fatalf("before removal: %v", err)
	}
	if err := reveal.RemovePrincipal(path, "leaver"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := reveal1(gone)
		var ae *reveal.APIError
		if errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("removed principal still served after 5s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := reveal1(stays); err != nil {
		t.Errorf("remaining principal: %v", err)
	}
}

// TestSignedLinkReplay: a signed link is a bearer credential. Until it expires anyone holding it
// can fetch the media, as often as they like and without an API key, and every fetch is audited
// (principal "signed-link"). After it expires it answers 410; so does a live link once the blob
// is erased, and once the media record is gone from the store.
func TestSignedLinkReplay(t *testing.T) {
	e := newEnv(t)
	svc, _ := e.blobService()
	media := bytes.Repeat([]byte("CANARY-replay "), 1000)
	seal := func(app string, ref byte) envelope.Token {
		var r envelope.RefID
		r[0] = ref
		tok, item, _, err := svc.Seal(context.Background(), app, "blob", r, e.clock.Now().Add(24*time.Hour).Truncate(time.Second), bytes.NewReader(media))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.Put(context.Background(), []store.Item{item}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-a", "app-b")
	base := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), Blobs: svc})
	link := func(tok envelope.Token, ttl int) string {
		b, _ := json.Marshal(map[string]any{"token": tok.Encode(), "ttl_seconds": ttl})
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/blobs/link", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+string(p.key))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ URL string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("link: %d, %v", resp.StatusCode, err)
		}
		return base + out.URL
	}
	fetch := func(url string) (int, []byte) {
		// A fresh client each time, with no credentials: the link alone is enough.
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		resp, b := roundTrip(t, hc, newRequest(t, http.MethodGet, url, "", nil))
		return resp.StatusCode, b
	}

	tokA, tokB := seal("app-a", 1), seal("app-b", 2)
	urlA := link(tokA, 60)
	const replays = 3
	for i := range replays {
		if code, got := fetch(urlA); code != http.StatusOK || !bytes.Equal(got, media) {
			t.Fatalf("replay %d before expiry = %d, %d bytes; want 200 and the media", i, code, len(got))
		}
	}
	e.clock.Advance(61 * time.Second)
	if code, _ := fetch(urlA); code != http.StatusGone {
		t.Errorf("replay after expiry = %d, want 410", code)
	}

	// Erasure ends live links: first the blob objects (app-a), then the store rows (app-b).
	urlA = link(tokA, 600)
	urlB := link(tokB, 600)
	if n, err := svc.DeleteApp(context.Background(), "app-a"); err != nil || n != 1 {
		t.Fatalf("DeleteApp(app-a) = %d, %v", n, err)
	}
	if code, _ := fetch(urlA); code != http.StatusGone {
		t.Errorf("live link after its blob was erased = %d, want 410", code)
	}
	if _, err := e.store.DeleteApp(context.Background(), "app-b"); err != nil {
		t.Fatal(err)
	}
	if code, _ := fetch(urlB); code != http.StatusGone {
		t.Errorf("live link after its store row was erased = %d, want 410", code)
	}

	recs, raw := e.auditRecords(replays + 5)
	fetches := map[string]int{}
	for i, r := range recs {
		if r.Principal == "signed-link" {
			fetches[r.Status]++
		}
		if bytes.Contains(raw[i], []byte("CANARY")) {
			t.Errorf("audit record holds media bytes")
		}
	}
	// Every fetch that reached the blob was audited: the replays ok, the erased ones expired.
	// (A fetch of an expired link is refused before the blob is touched.)
	if fetches["ok"] != replays || fetches["expired"] != 2 {
		t.Errorf("signed-link fetch audit = %v, want %d ok and 2 expired", fetches, replays)
	}
}

// TestSlowBody: a client that sends its headers promptly and then dribbles the body is cut off
// by ReadTimeout; the request never reaches the opener.
func TestSlowBody(t *testing.T) {
	e := newEnv(t)
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), ReadTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /v1/reveal HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"tokens\":[\"", p.key)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if _, err := conn.Write([]byte("A")); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	conn.SetReadDeadline(time.Now().Add(4 * time.Second))
	resp, _ := io.ReadAll(conn)
	took := time.Since(start)
	if took > 2*time.Second {
		t.Errorf("server ended the slow body after %v, want about 300ms", took)
	}
	if bytes.HasPrefix(resp, []byte("HTTP/1.1 200")) {
		t.Errorf("slow body answered 200")
	}
	conn.Close()
	<-done
	if recs, _ := e.auditRecords(0); len(recs) != 0 {
		t.Errorf("audit records = %d, want 0: the request reached the opener", len(recs))
	}
}

// TestConcurrentRateLimit: many concurrent requests of one principal against a low limit. The
// burst is served, every other request gets 429 with a Retry-After of at least a second, and no
// request fails any other way.
func TestConcurrentRateLimit(t *testing.T) {
	e := newEnv(t)
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	const burst, n = 5, 60
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), RatePerSecond: 0.2, Burst: burst})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	body := `{"tokens":["` + tok + `"]}`
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		wg    sync.WaitGroup
	)
	// Its own transport, closed first: connections dialed but never used would otherwise hold up
	// the server's shutdown for 5 s.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	t.Cleanup(hc.CloseIdleConnections)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodPost, url+"/v1/reveal", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+string(p.key))
			resp, err := hc.Do(req)
			if err != nil {
				t.Errorf("request: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
					t.Errorf("429 with Retry-After %q, want whole seconds ≥ 1", resp.Header.Get("Retry-After"))
				}
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	// At 0.2/s, at most one more token can have accrued while the requests ran.
	extra := int(time.Since(began).Seconds()*0.2) + 1
	if ok := codes[http.StatusOK]; ok < burst || ok > burst+extra {
		t.Errorf("served %d of %d, want the burst of %d (codes %v)", ok, n, burst, codes)
	}
	if codes[http.StatusOK]+codes[http.StatusTooManyRequests] != n {
		t.Errorf("status codes = %v, want only 200 and 429", codes)
	}
	recs, _ := e.auditRecords(codes[http.StatusOK])
	if len(recs) != codes[http.StatusOK] {
		t.Errorf("audit records = %d, want %d (429s never reach the opener)", len(recs), codes[http.StatusOK])
	}
}

// TestMethods: only POST reaches the reveal and link endpoints; every other method is 405 with
// an Allow header, before authentication is even looked at.
func TestMethods(t *testing.T) {
	e := newEnv(t)
	p := newPrincipal(t, "sup", reveal.KindSupport, false, "app-1")
	objects, err := blob.NewDir(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := blob.New(blob.Config{Objects: objects, Store: e.store, Sealer: e.sealer})
	if err != nil {
		t.Fatal(err)
	}
	url := e.serve(reveal.ServerConfig{Principals: principalSet(t, p), Blobs: svc})
	tok := e.seal("app-1", time.Hour, secretValue)[0].Encode()
	body := `{"tokens":["` + tok + `"]}`
	for _, path := range []string{"/v1/reveal", "/v1/blobs/link"} {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace, "PROPFIND"} {
			t.Run(m+path, func(t *testing.T) {
				resp, b := roundTrip(t, nil, newRequest(t, m, url+path, bearer(p), strings.NewReader(body)))
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
					t.Errorf("%s %s = %d, Allow %q; want 405, Allow POST", m, path, resp.StatusCode, resp.Header.Get("Allow"))
				}
				if bytes.Contains(b, []byte("alice")) {
					t.Errorf("%s %s answered the value", m, path)
				}
			})
		}
	}
	if recs, _ := e.auditRecords(0); len(recs) != 0 {
		t.Errorf("audit records = %d, want 0", len(recs))
	}
}

// TestOversizedHeaders: an Authorization header beyond the server's header limit is refused
// (431) without being looked up.
func TestOversizedHeaders(t *testing.T) {
	_, p, url := serveSupport(t, "sup")
	req := newRequest(t, http.MethodPost, url+"/v1/reveal", bearer(p)+strings.Repeat("k", 64<<10), strings.NewReader(`{"tokens":["x"]}`))
	resp, _ := roundTrip(t, nil, req)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header = %d, want 431", resp.StatusCode)
	}
}
