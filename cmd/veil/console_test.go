package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
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
	resp, err := browser().Get(link)
	if err != nil {
		t.Fatalf("following the console link: %v", err)
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
