package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// checkConsoleLink follows the console link `veil demo` printed, over TLS with the demo's
// certificate: it must land signed in as the demo principal on the Logs page, and work once.
func checkConsoleLink(t *testing.T, demoOut string) {
	t.Helper()
	link := regexp.MustCompile(`(https://\S+/console/link\?code=\S+)`).FindString(demoOut)
	cert := regexp.MustCompile(`self-signed certificate (\S+)`).FindStringSubmatch(demoOut)
	if link == "" || cert == nil {
		t.Fatalf("veil demo printed no console link or certificate:\n%s", demoOut)
	}
	pem, err := os.ReadFile(cert[1])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	c := browser()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(link)
	if err != nil {
		t.Fatalf("following the console link: %v", err)
	}
	resp.Body.Close()
	var session string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "veil_session=") {
			session = v
		}
	}
	// Over TLS the session cookie is Secure, HttpOnly and SameSite=Strict.
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(session, "; Secure") || !strings.Contains(session, "; HttpOnly") || !strings.Contains(session, "SameSite=Strict") {
		t.Fatalf("console link: %d, session cookie %q", resp.StatusCode, session)
	}
	c.CheckRedirect = nil
	resp, err = c.Get(resp.Request.URL.ResolveReference(&url.URL{Path: resp.Header.Get("Location")}).String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/logs" || !strings.Contains(string(body), demoPrincipalName+" (support)") {
		t.Fatalf("console link: %d at %s, want the Logs page signed in as %s", resp.StatusCode, resp.Request.URL.Path, demoPrincipalName)
	}
	// The demo's own traffic, as the real pipeline wrote it: sealed values shown as ★★★★★ with a
	// Reveal, and one of them revealed through the console (audited by the reveal API's path).
	page := string(body)
	form := regexp.MustCompile(`(?s)<form method="post" action="/console/reveal" class="inline">(.*?)</form>`).FindStringSubmatch(page)
	if !strings.Contains(page, "★★★★★") || form == nil {
		t.Fatalf("the demo's Logs page shows no sealed value with a Reveal:\n%.2000s", page)
	}
	values := url.Values{}
	for _, m := range regexp.MustCompile(`name="(\w+)" value="([^"]*)"`).FindAllStringSubmatch(form[1], -1) {
		values.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
	}
	u := resp.Request.URL.ResolveReference(&url.URL{Path: "/console/reveal"})
	req, _ := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "revealed; audited") {
		t.Fatalf("revealing a demo value in the console: %d\n%.2000s", resp.StatusCode, body)
	}

	resp, err = browser().Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("console link used twice: %d, want 403", resp.StatusCode)
	}
}
