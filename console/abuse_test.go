package console_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/console"
	"github.com/veil-project/veil/reveal"
)

// TestAbuse: forged and stale cookies, a principal removed mid-session, hostile filter values and
// cursors, other tenants' names in other casings, static path tricks, methods.
func TestAbuse(t *testing.T) {
	e := newEnv(t)
	e.publish(say("e-a", "app-a", "t-1", "u-1", "secret of a", e.clock.Now()),
		say("e-b", "app-b", "t-2", "u-2", "secret of b", e.clock.Now()))

	t.Run("forged session cookie", func(t *testing.T) {
		c := e.client()
		u, _ := url.Parse(e.srv.URL + "/console/")
		for _, v := range []string{"x", strings.Repeat("A", 43), strings.Repeat("A", 5000), "../../etc"} {
			c.Jar.SetCookies(u, []*http.Cookie{{Name: "veil_session", Value: v, Path: "/console/"}})
			if code, _, _ := get(t, c, e.srv.URL, "/console/logs"); code != http.StatusSeeOther {
				t.Errorf("forged cookie %.10q: GET logs = %d, want 303 to sign-in", v, code)
			}
		}
	})

	t.Run("session cookie is not the key and not reusable after sign-out", func(t *testing.T) {
		c, csrf := e.signIn(t, "alice")
		u, _ := url.Parse(e.srv.URL + "/console/")
		var sid string
		for _, ck := range c.Jar.Cookies(u) {
			if ck.Name == "veil_session" {
				sid = ck.Value
			}
		}
		if sid == "" || strings.Contains(sid, string(e.keys["alice"])) {
			t.Fatalf("session cookie %q", sid)
		}
		post(t, c, e.srv.URL, "/console/signout", url.Values{"csrf": {csrf}})
		c2 := e.client()
		c2.Jar.SetCookies(u, []*http.Cookie{{Name: "veil_session", Value: sid, Path: "/console/"}})
		if code, _, _ := get(t, c2, e.srv.URL, "/console/logs"); code != http.StatusSeeOther {
			t.Errorf("replayed cookie after sign-out: %d, want 303", code)
		}
	})

	t.Run("CSRF token of another session", func(t *testing.T) {
		_, csrfA := e.signIn(t, "root")
		c, _ := e.signIn(t, "alice")
		if code, _, _ := post(t, c, e.srv.URL, "/console/signout", url.Values{"csrf": {csrfA}}); code != http.StatusForbidden {
			t.Errorf("sign-out with another session's token = %d, want 403", code)
		}
	})

	t.Run("hostile filters and cursors", func(t *testing.T) {
		c, _ := e.signIn(t, "alice")
		for _, q := range []string{
			"after=garbage", "after=1.event.0.-1", "after=1.../../x.0.0", "after=99999999999999999999.event.0.0",
			"ledger=nope", "ledger=../event", "from=yesterday", "to=2026-13-45T99:99",
			"app=" + strings.Repeat("a", 300), "thread=" + url.QueryEscape("t-1\x00"),
		} {
			code, body, _ := get(t, c, e.srv.URL, "/console/logs?"+q)
			if code != http.StatusBadRequest && code != http.StatusOK {
				t.Errorf("%.40s: %d", q, code)
			}
			if strings.Contains(body, "e-b") {
				t.Errorf("%.40s: shows app-b", q)
			}
		}
		for _, q := range []string{"l=event&p=-1&o=0", "l=event&p=0&o=-5", "l=..%2Fevent&p=0&o=0", "l=event&p=99&o=0", "l=event&p=0&o=999999999", "l=&p=&o="} {
			if code, _, _ := get(t, c, e.srv.URL, "/console/entry?"+q); code != http.StatusNotFound {
				t.Errorf("entry?%s = %d, want 404", q, code)
			}
		}
	})

	t.Run("other tenant's name in other casings", func(t *testing.T) {
		c, _ := e.signIn(t, "alice")
		for _, app := range []string{"app-b", "APP-B", "App-b", "app-b ", "app-b%00", "*"} {
			_, body, _ := get(t, c, e.srv.URL, "/console/logs?app="+url.QueryEscape(app))
			if strings.Contains(body, "e-b") {
				t.Errorf("app=%q shows app-b", app)
			}
			_, body, _ = get(t, c, e.srv.URL, "/console/thread?app="+url.QueryEscape(app)+"&thread=t-2")
			if strings.Contains(body, "e-b") {
				t.Errorf("thread view app=%q shows app-b", app)
			}
		}
	})

	t.Run("principal removed mid-session", func(t *testing.T) {
		// A principals set that no longer holds alice: her session must end at the next request.
		var list []reveal.Principal
		for _, name := range []string{"bob"} {
			k := e.keys[name]
			list = append(list, reveal.Principal{Name: name, Kind: reveal.KindSupport, Apps: []string{"app-b"}, KeySHA256: reveal.HashKey(k)})
		}
		ps, err := reveal.NewPrincipals(list)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := e.signIn(t, "alice")
		e.principals.Store(ps)
		defer e.principals.Store(e.allPrincipals)
		if code, _, _ := get(t, c, e.srv.URL, "/console/logs"); code != http.StatusSeeOther {
			t.Errorf("removed principal: GET logs = %d, want 303 to sign-in", code)
		}
	})

	t.Run("static paths", func(t *testing.T) {
		c := e.client()
		if code, body, h := get(t, c, e.srv.URL, "/console/static/console.css"); code != 200 || !strings.Contains(h.Get("Content-Type"), "text/css") || body == "" {
			t.Errorf("console.css = %d %q", code, h.Get("Content-Type"))
		}
		for _, p := range []string{"/console/static/../templates/layout.html", "/console/static/%2e%2e/templates/layout.html", "/console/static/nope.js", "/console/templates/layout.html"} {
			if code, body, _ := get(t, c, e.srv.URL, p); code == 200 && strings.Contains(body, "{{") {
				t.Errorf("%s served a template", p)
			}
		}
	})

	t.Run("methods", func(t *testing.T) {
		c, _ := e.signIn(t, "alice")
		req, _ := http.NewRequest(http.MethodDelete, e.srv.URL+"/console/logs", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("DELETE logs = %d, want 405", resp.StatusCode)
		}
	})
}

// TestRevealRateLimited: console reveals draw on the principal's reveal API rate limit.
func TestRevealRateLimited(t *testing.T) {
	e := newEnv(t, func(c *reveal.ServerConfig) { c.RatePerSecond, c.Burst = 0.001, 1 })
	alice, csrf, body := e.aliceWithCanary(t)
	link := entryLink(t, body, "e-1")
	form := revealForm(csrf, link, "all")
	if code, body, _ := post(t, alice, e.srv.URL, "/console/reveal", form); code != 200 || !strings.Contains(body, "canary-4711") {
		t.Fatalf("first reveal = %d", code)
	}
	if code, body, _ := post(t, alice, e.srv.URL, "/console/reveal", form); code != http.StatusTooManyRequests || strings.Contains(body, "canary-4711") {
		t.Fatalf("second reveal over the limit = %d, want 429", code)
	}
	if n := len(e.auditRecords()); n != 1 {
		t.Errorf("audit records = %d, want 1", n)
	}
}

// TestStoreDown: with the encrypted store unreachable the Logs page fails (503) rather than
// guessing which values are live, and a reveal opens nothing.
func TestStoreDown(t *testing.T) {
	e := newEnv(t)
	alice, csrf, body := e.aliceWithCanary(t)
	link := entryLink(t, body, "e-1")
	e.store.Close(context.Background())
	if code, body, _ := get(t, alice, e.srv.URL, "/console/logs"); code != http.StatusServiceUnavailable || strings.Contains(body, "canary") {
		t.Errorf("logs with the store down = %d, want 503", code)
	}
	form := revealForm(csrf, link, "all")
	if code, body, _ := post(t, alice, e.srv.URL, "/console/reveal", form); code != http.StatusServiceUnavailable || strings.Contains(body, "canary-4711") {
		t.Errorf("reveal with the store down = %d, want 503", code)
	}
}

// TestBrokerDown: with the broker hung (connections accepted, never answered), the Logs, Dead letters and Audit pages answer 503 within
// the request timeout instead of hanging.
func TestBrokerDown(t *testing.T) {
	e := newEnvWith(t, func(c *console.Config) { c.RequestTimeout = 2 * time.Second })
	e.publish(say("e-1", "app-a", "t-1", "u-1", "hello", e.clock.Now()))
	alice, _ := e.signIn(t, "alice")
	// A broker that accepts connections and never answers (a hung host), on the same address.
	addr := e.cluster.ListenAddrs()[0]
	e.cluster.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot take over the broker's address: %v", err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for _, page := range []string{"/console/logs", "/console/deadletters"} {
		done := make(chan int, 1)
		go func() { code, _, _ := get(t, alice, e.srv.URL, page); done <- code }()
		select {
		case code := <-done:
			if code != http.StatusServiceUnavailable {
				t.Errorf("%s with the broker down = %d, want 503", page, code)
			}
		case <-time.After(8 * time.Second):
			t.Fatalf("%s with the broker hung: no answer in 8 s (request timeout 2 s)", page)
		}
	}
}
