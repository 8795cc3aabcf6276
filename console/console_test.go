package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/console"
)

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns the status and body.
func get(t testing.TB, c *http.Client, base, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func post(t testing.TB, c *http.Client, base, path string, form url.Values, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", body)
	}
	return m[1]
}

// signIn signs name in and returns its client and CSRF token.
func (e *env) signIn(t testing.TB, name string) (*http.Client, string) {
	t.Helper()
	c := e.client()
	code, body, _ := get(t, c, e.srv.URL, "/console/signin")
	if code != 200 {
		t.Fatalf("GET signin = %d", code)
	}
	code, _, h := post(t, c, e.srv.URL, "/console/signin", url.Values{"csrf": {csrfOf(t, body)}, "key": {string(e.keys[name])}})
	if code != http.StatusSeeOther || h.Get("Location") != "/console/logs" {
		t.Fatalf("POST signin = %d → %q, want 303 → /console/logs", code, h.Get("Location"))
	}
	code, body, _ = get(t, c, e.srv.URL, "/console/logs")
	if code != 200 {
		t.Fatalf("GET logs after sign-in = %d", code)
	}
	return c, csrfOf(t, body)
}

// entryLink finds the link to entry id in a page.
func entryLink(t *testing.T, body, id string) url.Values {
	t.Helper()
	re := regexp.MustCompile(`href="/console/entry\?([^"]+)">#` + regexp.QuoteMeta(id) + `<`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no link to entry %s in page", id)
	}
	v, err := url.ParseQuery(strings.ReplaceAll(m[1], "&amp;", "&"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// revealForm is the form the Reveal button of the entry at link posts: its ledger, partition and
// offset, the field ("all" or an index) and csrf, left out when "".
func revealForm(csrf string, link url.Values, field string) url.Values {
	form := url.Values{"l": {link.Get("l")}, "p": {link.Get("p")}, "o": {link.Get("o")}, "f": {field}}
	if csrf != "" {
		form.Set("csrf", csrf)
	}
	return form
}

// aliceWithCanary publishes e-1, a sensitive say of app-a in thread t-1 whose text holds
// canary-4711, signs alice in and opens the Logs page; it returns her client, her CSRF token and
// the page.
func (e *env) aliceWithCanary(t *testing.T) (alice *http.Client, csrf, logs string) {
	t.Helper()
	e.publish(say("e-1", "app-a", "t-1", "u-1", "hello canary-4711", e.clock.Now()))
	alice, csrf = e.signIn(t, "alice")
	_, logs, _ = get(t, alice, e.srv.URL, "/console/logs")
	return alice, csrf, logs
}

func TestSignInSessionAndSignOut(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	e.publish(say("e-1", "app-a", "t-1", "u-1", "hello canary-4711", now))

	c := e.client()
	// Unsigned: every page sends to the sign-in page.
	if code, _, h := get(t, c, e.srv.URL, "/console/logs"); code != http.StatusSeeOther || h.Get("Location") != "/console/signin" {
		t.Fatalf("GET logs unsigned = %d → %q", code, h.Get("Location"))
	}
	_, body, h := get(t, c, e.srv.URL, "/console/signin")
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers = %v", h)
	}
	pre := csrfOf(t, body)
	// A wrong key, a missing token, a token from another page: refused.
	if code, _, _ := post(t, c, e.srv.URL, "/console/signin", url.Values{"csrf": {pre}, "key": {"vk_wrong"}}); code != http.StatusUnauthorized {
		t.Errorf("wrong key = %d, want 401", code)
	}
	_, body, _ = get(t, c, e.srv.URL, "/console/signin")
	pre = csrfOf(t, body)
	if code, _, _ := post(t, c, e.srv.URL, "/console/signin", url.Values{"key": {string(e.keys["alice"])}}); code != http.StatusForbidden {
		t.Errorf("sign-in without token = %d, want 403", code)
	}
	if code, _, _ := post(t, c, e.srv.URL, "/console/signin", url.Values{"csrf": {"forged"}, "key": {string(e.keys["alice"])}}); code != http.StatusForbidden {
		t.Errorf("sign-in with forged token = %d, want 403", code)
	}
	code, _, h := post(t, c, e.srv.URL, "/console/signin", url.Values{"csrf": {pre}, "key": {string(e.keys["alice"])}})
	if code != http.StatusSeeOther {
		t.Fatalf("sign-in = %d", code)
	}
	sc := h.Values("Set-Cookie")
	found := false
	for _, v := range sc {
		if strings.HasPrefix(v, "veil_session=") {
			found = true
			if !strings.Contains(v, "HttpOnly") || !strings.Contains(v, "SameSite=Strict") || strings.Contains(v, string(e.keys["alice"])) {
				t.Errorf("session cookie = %q", v)
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie in %q", sc)
	}
	code, body, _ = get(t, c, e.srv.URL, "/console/logs")
	if code != 200 || !strings.Contains(body, "e-1") || !strings.Contains(body, "alice (admin)") {
		t.Fatalf("logs = %d, entry or principal missing", code)
	}
	csrf := csrfOf(t, body)
	// Sign-out needs the token.
	if code, _, _ := post(t, c, e.srv.URL, "/console/signout", url.Values{}); code != http.StatusForbidden {
		t.Errorf("sign-out without token = %d, want 403", code)
	}
	if code, _, _ := post(t, c, e.srv.URL, "/console/signout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("sign-out = %d, want 303", code)
	}
	if code, _, _ := get(t, c, e.srv.URL, "/console/logs"); code != http.StatusSeeOther {
		t.Errorf("logs after sign-out = %d, want 303 to sign-in", code)
	}

	// Idle expiry: a session unused for the idle timeout is gone.
	c2, _ := e.signIn(t, "alice")
	e.clock.Advance(16 * time.Minute)
	if code, _, _ := get(t, c2, e.srv.URL, "/console/logs"); code != http.StatusSeeOther {
		t.Errorf("logs after 16 idle minutes = %d, want 303 to sign-in", code)
	}
}

func TestAppIsolation(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	e.publish(say("e-a", "app-a", "t-1", "u-1", "secret of a", now), say("e-b", "app-b", "t-2", "u-2", "secret of b", now))
	root, _ := e.signIn(t, "root")
	_, body, _ := get(t, root, e.srv.URL, "/console/logs")
	linkA := entryLink(t, body, "e-a")

	bob, csrf := e.signIn(t, "bob")
	for _, path := range []string{"/console/logs", "/console/logs?app=app-a", "/console/thread?app=app-a&thread=t-1", "/console/logs?thread=t-1"} {
		_, body, _ := get(t, bob, e.srv.URL, path)
		if strings.Contains(body, "e-a") || strings.Contains(body, "app-a") && strings.Contains(body, "t-1") {
			t.Errorf("bob sees app-a on %s", path)
		}
	}
	_, body, _ = get(t, bob, e.srv.URL, "/console/logs")
	if !strings.Contains(body, "e-b") {
		t.Errorf("bob does not see his own app's entry")
	}
	if code, _, _ := get(t, bob, e.srv.URL, "/console/entry?"+linkA.Encode()); code != http.StatusNotFound {
		t.Errorf("bob opening app-a's entry = %d, want 404", code)
	}
	before := len(e.auditRecords())
	form := url.Values{"csrf": {csrf}, "l": {linkA.Get("l")}, "p": {linkA.Get("p")}, "o": {linkA.Get("o")}, "f": {"all"}}
	code, body, _ := post(t, bob, e.srv.URL, "/console/reveal", form)
	if code != http.StatusNotFound || strings.Contains(body, "secret of a") {
		t.Errorf("bob revealing app-a's entry = %d", code)
	}
	if n := len(e.auditRecords()); n != before {
		t.Errorf("audit records %d → %d: a refused entry reached the decrypt path", before, n)
	}
}

func TestRevealIsAuditedOnce(t *testing.T) {
	e := newEnv(t)
	alice, csrf, body := e.aliceWithCanary(t)
	if strings.Contains(body, "canary-4711") || strings.Contains(body, "veil:v1:") {
		t.Fatalf("the logs page shows the value or its token before any reveal:\n%s", body)
	}
	if !strings.Contains(body, console.Redacted) || !strings.Contains(body, "left") {
		t.Fatal("the sealed value is not shown as ★★★★★ with its remaining lifetime")
	}
	link := entryLink(t, body, "e-1")
	form := revealForm(csrf, link, "0")
	code, body, h := post(t, alice, e.srv.URL, "/console/reveal", form)
	if code != 200 || !strings.Contains(body, "canary-4711") {
		t.Fatalf("reveal = %d, canary missing", code)
	}
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("revealed page Cache-Control = %q", h.Get("Cache-Control"))
	}
	recs := e.auditRecords()
	if len(recs) != 1 {
		t.Fatalf("audit records = %d, want 1: %+v", len(recs), recs)
	}
	if r := recs[0]; r.Principal != "alice" || r.Source != "console" || r.Status != "ok" || r.App != "app-a" {
		t.Errorf("audit record = %+v", r)
	}

	// A principal of kind other without override sees the entry but no Reveal, and a forced
	// reveal is denied and audited like the API's.
	olga, ocsrf := e.signIn(t, "olga")
	_, body, _ = get(t, olga, e.srv.URL, "/console/logs")
	if !strings.Contains(body, "e-1") || strings.Contains(body, `class="reveal"`) {
		t.Fatal("olga: entry missing or Reveal offered")
	}
	form.Set("csrf", ocsrf)
	code, body, _ = post(t, olga, e.srv.URL, "/console/reveal", form)
	if code != 200 || strings.Contains(body, "canary-4711") || !strings.Contains(body, "may not decrypt") {
		t.Fatalf("olga's reveal = %d, shows value or no reason", code)
	}
	recs = e.auditRecords()
	if len(recs) != 2 || recs[1].Principal != "olga" || recs[1].Status != "denied" {
		t.Fatalf("audit after olga = %+v", recs)
	}
}

func TestExpiredAndErased(t *testing.T) {
	e := newEnv(t)
	alice, csrf, body := e.aliceWithCanary(t)
	link := entryLink(t, body, "e-1")

	e.clock.Advance(24*time.Hour + time.Minute)
	alice, csrf = e.signIn(t, "alice") // the old session idled out
	_, body, _ = get(t, alice, e.srv.URL, "/console/logs")
	if !strings.Contains(body, console.Redacted) || !strings.Contains(body, "past its TTL") || strings.Contains(body, `class="reveal"`) {
		t.Fatal("past the TTL: want ★★★★★, a reason and no Reveal")
	}
	form := revealForm(csrf, link, "all")
	if _, body, _ := post(t, alice, e.srv.URL, "/console/reveal", form); strings.Contains(body, "canary-4711") {
		t.Fatal("revealed past the TTL")
	}
	if n := len(e.auditRecords()); n != 0 {
		t.Errorf("a reveal of nothing live wrote %d audit records", n)
	}

	// Erasure: keys destroyed, rows deleted.
	e.clock.Advance(-24*time.Hour - time.Minute)
	e.publish(say("e-2", "app-a", "t-1", "u-1", "second canary-4712", e.clock.Now()))
	alice, _ = e.signIn(t, "alice")
	_, body, _ = get(t, alice, e.srv.URL, "/console/logs?thread=t-1")
	if !strings.Contains(body, `class="reveal"`) {
		t.Fatal("no Reveal for a live value")
	}
	ctx := context.Background()
	if _, err := e.kr.EraseApp(ctx, "app-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.DeleteApp(ctx, "app-a"); err != nil {
		t.Fatal(err)
	}
	_, body, _ = get(t, alice, e.srv.URL, "/console/logs?thread=t-1")
	if strings.Contains(body, `class="reveal"`) || !strings.Contains(body, "erased") {
		t.Fatal("after erasure: want no Reveal and the reason")
	}
}

func TestCrossSitePostRefused(t *testing.T) {
	e := newEnv(t)
	alice, csrf, body := e.aliceWithCanary(t)
	link := entryLink(t, body, "e-1")
	form := revealForm("", link, "all")
	for name, tc := range map[string]struct {
		csrf string
		hdr  []string
	}{
		"no token":             {"", nil},
		"wrong token":          {"x" + csrf, nil},
		"other origin":         {csrf, []string{"Origin", "https://evil.example"}},
		"cross-site fetch":     {csrf, []string{"Sec-Fetch-Site", "cross-site"}},
		"same-site not origin": {csrf, []string{"Sec-Fetch-Site", "same-site"}},
	} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tc.csrf != "" {
			f.Set("csrf", tc.csrf)
		}
		code, body, _ := post(t, alice, e.srv.URL, "/console/reveal", f, tc.hdr...)
		if code != http.StatusForbidden || strings.Contains(body, "canary-4711") {
			t.Errorf("%s: = %d, want 403", name, code)
		}
	}
	if n := len(e.auditRecords()); n != 0 {
		t.Errorf("refused posts wrote %d audit records", n)
	}
	// GET on a state change is refused too.
	if code, _, _ := get(t, alice, e.srv.URL, "/console/reveal?"+form.Encode()); code != http.StatusMethodNotAllowed {
		t.Errorf("GET reveal = %d, want 405", code)
	}
}

func TestHostileEntryIsEscaped(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	hostile := `<script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">`
	bot := say("e-h", "app-a", "t-<b>x</b>", "u-1", hostile, now)
	bot.Thread["mode"] = "bot" // not sensitive: shown in the clear
	e.publish(bot, say("e-s", "app-a", "t-1", "u-1", hostile, now))
	alice, csrf := e.signIn(t, "alice")
	_, body, _ := get(t, alice, e.srv.URL, "/console/logs")
	if strings.Contains(body, "<script>document") || strings.Contains(body, "<img src=x") || strings.Contains(body, "<b>x</b>") {
		t.Fatal("hostile content rendered as markup")
	}
	if !strings.Contains(body, "&lt;script&gt;") {
		t.Fatal("hostile content not shown as text")
	}
	link := entryLink(t, body, "e-s")
	form := revealForm(csrf, link, "all")
	_, body, _ = post(t, alice, e.srv.URL, "/console/reveal", form)
	if strings.Contains(body, "<script>document") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatal("revealed hostile value rendered as markup")
	}
}

func TestFiltersAndPaging(t *testing.T) {
	e := newEnv(t)
	base := e.clock.Now().Add(-30 * time.Minute)
	var batch []any
	for i := range 130 {
		en := say("e-"+itoa(i), "app-a", "t-"+itoa(i%3), "u-"+itoa(i%5), "text", base.Add(time.Duration(i)*10*time.Second))
		if i%10 == 0 {
			en.Type, en.Data = "meya.log.entry", map[string]any{"message": "m"}
			en.Ledger = "log"
		}
		batch = append(batch, en)
	}
	e.publish(batch...)
	alice, _ := e.signIn(t, "alice")

	// Paging: every entry once, newest first.
	seen := map[string]bool{}
	path := "/console/logs"
	pages := 0
	for path != "" {
		_, body, _ := get(t, alice, e.srv.URL, path)
		pages++
		for _, m := range regexp.MustCompile(`>#(e-\d+)<`).FindAllStringSubmatch(body, -1) {
			if seen[m[1]] {
				t.Fatalf("entry %s on two pages (page %d, %s)", m[1], pages, path)
			}
			seen[m[1]] = true
		}
		path = ""
		if m := regexp.MustCompile(`href="(/console/logs\?[^"]+)" id="next"`).FindStringSubmatch(body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 130 || pages != 3 {
		t.Fatalf("paging showed %d entries on %d pages, want 130 on 3", len(seen), pages)
	}

	for name, tc := range map[string]struct {
		query string
		want  func(i int) bool
	}{
		"thread": {"thread=t-1", func(i int) bool { return i%3 == 1 }},
		"user":   {"user=u-2", func(i int) bool { return i%5 == 2 }},
		"type":   {"type=meya.log.entry", func(i int) bool { return i%10 == 0 }},
		"ledger": {"ledger=log", func(i int) bool { return i%10 == 0 }},
		"time": {"from=" + url.QueryEscape(base.Add(1000*time.Second).Format(time.RFC3339)) + "&to=" + url.QueryEscape(base.Add(1100*time.Second).Format(time.RFC3339)),
			func(i int) bool { return i >= 100 && i < 110 }},
		"user and type": {"user=u-0&type=meya.text.event.say", func(i int) bool { return i%5 == 0 && i%10 != 0 }},
	} {
		_, body, _ := get(t, alice, e.srv.URL, "/console/logs?"+tc.query)
		got := map[string]bool{}
		for _, m := range regexp.MustCompile(`>#(e-\d+)<`).FindAllStringSubmatch(body, -1) {
			got[m[1]] = true
		}
		want := 0
		for i := range 130 {
			if tc.want(i) {
				want++
			} else if got["e-"+itoa(i)] {
				t.Errorf("%s: e-%d shown, does not match", name, i)
			}
		}
		if len(got) != min(want, 50) {
			t.Errorf("%s: %d entries shown, want %d", name, len(got), min(want, 50))
		}
	}

	// The thread view lists the conversation in order.
	_, body, _ := get(t, alice, e.srv.URL, "/console/thread?app=app-a&thread=t-2")
	ids := regexp.MustCompile(`>#(e-\d+)<`).FindAllStringSubmatch(body, -1)
	prev := -1
	for _, m := range ids {
		n := atoi(strings.TrimPrefix(m[1], "e-"))
		if n%3 != 2 || n <= prev {
			t.Fatalf("thread view order: %v", ids)
		}
		prev = n
	}
	if len(ids) != 43 {
		t.Errorf("thread t-2 shows %d entries, want 43", len(ids))
	}
}

func TestDeadLettersAndStatus(t *testing.T) {
	e := newEnv(t)
	e.publish([]byte(`{"id": "broken`), say("e-1", "app-a", "t-1", "u-1", "hi", e.clock.Now()))
	root, _ := e.signIn(t, "root")
	code, body, _ := get(t, root, e.srv.URL, "/console/deadletters")
	if code != 200 || !strings.Contains(body, "malformed_json") || !strings.Contains(body, "ledger.event/0/1") {
		t.Fatalf("dead letters = %d, reason or source missing", code)
	}
	if strings.Contains(body, "veil:v1:") || strings.Contains(body, "broken") {
		t.Fatal("dead letters page shows the payload or its token")
	}
	// Someone scoped to one app does not see dead letters of unknown apps.
	alice, _ := e.signIn(t, "alice")
	if _, body, _ := get(t, alice, e.srv.URL, "/console/deadletters"); strings.Contains(body, "malformed_json") {
		t.Error("alice sees a dead letter of no app")
	}
	code, body, _ = get(t, root, e.srv.URL, "/console/status")
	if code != 200 || !strings.Contains(body, "broker: ready") || !strings.Contains(body, "store: not ready") || !strings.Contains(body, "<svg") {
		t.Fatalf("status = %d, dependencies or charts missing", code)
	}
	if !strings.Contains(body, "<td>app-a</td>") {
		t.Error("status: keys of app-a missing")
	}
	// An admin of every app filters by any app id (free text, not a list holding "*").
	_, body, _ = get(t, root, e.srv.URL, "/console/logs?app=app-a")
	if !strings.Contains(body, `<input name="app"`) || !strings.Contains(body, "e-1") {
		t.Error("root: no free-text app filter, or app-a's entry not found by it")
	}
	code, body, _ = get(t, root, e.srv.URL, "/console/audit")
	if code != 200 {
		t.Fatalf("audit = %d", code)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
