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
	resp, err = browser().Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("console link used twice: %d, want 403", resp.StatusCode)
	}
}
