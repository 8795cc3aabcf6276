package blob

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET = %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response = %v", err)
	}
	return resp.StatusCode, b
}

func TestLinks(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.svc.Handler())
	t.Cleanup(srv.Close)
	in := media(50 << 10)
	tok, _ := e.seal("app-42", 24*time.Hour, bytes.NewReader(in))

	t.Run("valid", func(t *testing.T) {
		link, exp, err := e.svc.Link(tok, 0)
		if err != nil {
			t.Fatalf("Link = %v", err)
		}
		if want := e.clock.Now().Add(DefaultLinkTTL); !exp.Equal(want) {
			t.Errorf("Link expires = %v, want %v", exp, want)
		}
		if !strings.HasPrefix(link, "/v1/blobs/") || strings.Contains(link, tok[len("veil:v1:"):]) {
			t.Errorf("Link = %q, want a /v1/blobs/ path that does not show the token", link)
		}
		code, body := get(t, srv, link)
		if code != http.StatusOK || !bytes.Equal(body, in) {
			t.Errorf("GET link = %d, %d bytes; want 200 and the media", code, len(body))
		}
		resp, err := srv.Client().Head(srv.URL + link)
		if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(in)) {
			t.Errorf("HEAD link = %v, %v; want 200 with length %d", resp, err, len(in))
		}
		if resp != nil {
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
		}
	})
	t.Run("mounted under a prefix", func(t *testing.T) {
		link, _, _ := e.svc.Link(tok, time.Minute)
		mux := http.NewServeMux()
		mux.Handle("/v1/blobs/", e.svc.Handler())
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, link, nil))
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), in) {
			t.Errorf("GET via mux = %d, want 200 and the media", rec.Code)
		}
	})
	t.Run("ttl bounds", func(t *testing.T) {
		if _, exp, err := e.svc.Link(tok, MaxLinkTTL); err != nil || !exp.Equal(e.clock.Now().Add(MaxLinkTTL)) {
			t.Errorf("Link(60m) = %v, %v; want now+60m, nil", exp, err)
		}
		for _, ttl := range []time.Duration{MaxLinkTTL + time.Second, 24 * time.Hour, -time.Minute} {
			if _, _, err := e.svc.Link(tok, ttl); !errors.Is(err, ErrLinkTTL) {
				t.Errorf("Link(%v) = %v, want ErrLinkTTL", ttl, err)
			}
		}
		if _, _, err := e.svc.Link("veil:v1:garbage", 0); err == nil {
			t.Errorf("Link(garbage token) = nil error, want one")
		}
	})
	t.Run("expired link", func(t *testing.T) {
		e := newEnv(t, nil)
		srv := httptest.NewServer(e.svc.Handler())
		t.Cleanup(srv.Close)
		tok, _ := e.seal("app-42", 24*time.Hour, bytes.NewReader([]byte("x")))
		link, _, _ := e.svc.Link(tok, 0)
		e.clock.Advance(DefaultLinkTTL - time.Second)
		if code, _ := get(t, srv, link); code != http.StatusOK {
			t.Errorf("GET link 1s before expiry = %d, want 200", code)
		}
		e.clock.Advance(time.Second)
		if code, _ := get(t, srv, link); code != http.StatusGone {
			t.Errorf("GET expired link = %d, want 410", code)
		}
	})
	t.Run("expired blob", func(t *testing.T) {
		e := newEnv(t, nil)
		srv := httptest.NewServer(e.svc.Handler())
		t.Cleanup(srv.Close)
		tok, _ := e.seal("app-42", 30*time.Minute, bytes.NewReader([]byte("x")))
		link, _, _ := e.svc.Link(tok, MaxLinkTTL)
		e.clock.Advance(30 * time.Minute)
		if code, _ := get(t, srv, link); code != http.StatusGone {
			t.Errorf("GET link of an expired blob = %d, want 410", code)
		}
	})
	t.Run("erased blob", func(t *testing.T) {
		tok, _ := e.seal("app-gone", time.Hour, bytes.NewReader([]byte("x")))
		link, _, _ := e.svc.Link(tok, 0)
		if _, err := e.svc.DeleteApp(t.Context(), "app-gone"); err != nil {
			t.Fatal(err)
		}
		if code, _ := get(t, srv, link); code != http.StatusGone {
			t.Errorf("GET link of an erased blob = %d, want 410", code)
		}
	})
	t.Run("forged token answers like an absent ref", func(t *testing.T) {
		// A principal may get a link for any token of its app, genuine or not: a live ref with a
		// bad tag must answer exactly like a ref that does not exist.
		good, err := envelope.ParseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		badTag, absent := good, good
		badTag.Tag[0] ^= 0x80
		absent.Ref[0] ^= 1
		var codes, bodies []string
		for _, forged := range []envelope.Token{badTag, absent} {
			link, _, err := e.svc.Link(forged.Encode(), 0)
			if err != nil {
				t.Fatal(err)
			}
			code, body := get(t, srv, link)
			codes, bodies = append(codes, itoa64(int64(code))), append(bodies, string(body))
		}
		if codes[0] != codes[1] || bodies[0] != bodies[1] || codes[1] != itoa64(http.StatusGone) {
			t.Errorf("live ref with bad tag = %s %q, absent ref = %s %q; want both 410 alike", codes[0], bodies[0], codes[1], bodies[1])
		}
	})
	t.Run("tampered", func(t *testing.T) {
		link, exp, _ := e.svc.Link(tok, 0)
		i := strings.LastIndexByte(link, '/')
		prefix, sealed := link[:i+1], link[i+1:]
		expStr := prefix[len("/v1/blobs/") : len(prefix)-1]
		var bad []string
		// Every character of the sealed part changed.
		for j := range sealed {
			c := byte('A')
			if sealed[j] == 'A' {
				c = 'B'
			}
			bad = append(bad, prefix+sealed[:j]+string(c)+sealed[j+1:])
		}
		bad = append(bad,
			"/v1/blobs/"+itoa64(exp.Unix()+3600)+"/"+sealed, // extended expiry
			"/v1/blobs/"+itoa64(exp.Unix()-1)+"/"+sealed,    // any change of expiry
			"/v1/blobs/0"+expStr+"/"+sealed,                 // non-canonical expiry
			prefix+sealed[:len(sealed)-1],                   // truncated
			prefix+sealed+"A",                               // extended
			prefix,                                          // empty
			"/v1/blobs/"+sealed,                             // no expiry
			"/v1/blobs/"+expStr+"/"+tok,                     // bare token
		)
		other := newEnv(t, nil)
		olink, _, _ := other.svc.Link(tok, 0) // signed by another secret
		bad = append(bad, olink)
		for _, p := range bad {
			if code, _ := get(t, srv, p); code != http.StatusForbidden {
				t.Errorf("GET %s = %d, want 403", p, code)
			}
		}
	})
	t.Run("shared secret", func(t *testing.T) {
		secret := bytes.Repeat([]byte{7}, 32)
		a := newEnv(t, nil, func(c *Config) { c.LinkSecret = secret })
		tok, _ := a.seal("app-42", time.Hour, bytes.NewReader([]byte("shared")))
		link, _, _ := a.svc.Link(tok, 0)
		// A second process of the same deployment (same store, keys and secret) serves it.
		b, err := New(Config{Objects: a.objects, Store: a.store, Sealer: a.sealer, LinkSecret: secret, Now: a.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, link, nil))
		if rec.Code != http.StatusOK || rec.Body.String() != "shared" {
			t.Errorf("GET on another process = %d %q, want 200 \"shared\"", rec.Code, rec.Body.String())
		}
		if _, err := New(Config{Objects: a.objects, Sealer: a.sealer, LinkSecret: secret[:16]}); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("New(16-byte link secret) = %v, want ErrInvalidInput", err)
		}
	})
	t.Run("method", func(t *testing.T) {
		link, _, _ := e.svc.Link(tok, 0)
		resp, err := srv.Client().Post(srv.URL+link, "text/plain", nil)
		if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST link = %v, %v; want 405", resp, err)
		}
	})
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// A blob whose ciphertext was altered after sealing starts streaming, then the response is
// aborted at the bad chunk: the client sees an error, never a clean short body.
func TestLinkAbortsOnCorruptStream(t *testing.T) {
	dir := t.TempDir()
	d, _ := NewDir(dir)
	e := newEnv(t, d)
	srv := httptest.NewServer(e.svc.Handler())
	t.Cleanup(srv.Close)
	in := media(20 << 10) // 20 chunks of 1 KiB
	tok, ref := e.seal("app-42", time.Hour, bytes.NewReader(in))
	p := filepath.Join(dir, filepath.FromSlash(ObjectKey("app-42", e.clock.Now().Add(time.Hour), ref)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-100] ^= 1 // inside the last chunk
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	link, _, _ := e.svc.Link(tok, 0)
	resp, err := srv.Client().Get(srv.URL + link)
	if err != nil {
		t.Fatalf("GET = %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("reading a corrupt blob's response = %d bytes, nil error; want an error", len(got))
	}
	if len(got) >= len(in) {
		t.Errorf("read %d bytes of a corrupt blob, want fewer than %d", len(got), len(in))
	}
}
