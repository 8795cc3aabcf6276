package reveal_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/reveal"
)

// TestBlobLinks: a principal allowed to decrypt gets a signed link that streams the media; a
// principal of another app is denied; an expired link answers 410; a tampered one 403; a blob
// token never reveals its DEK through /v1/reveal; issuing and fetching are audited without values.
func TestBlobLinks(t *testing.T) {
	e := newEnv(t)
	svc, _ := e.blobService()
	media := bytes.Repeat([]byte("CANARY-media "), 10000)
	tok := e.sealBlob(svc, 7, bytes.NewReader(media))
	support := newPrincipal(t, "support-a", reveal.KindSupport, false, "app-a")
	other := newPrincipal(t, "support-b", reveal.KindSupport, false, "app-b")
	base := e.serve(reveal.ServerConfig{Principals: principalSet(t, support, other), Blobs: svc})

	post := func(p principal, path string, body any) (*http.Response, []byte) {
		b, _ := json.Marshal(body)
		return roundTrip(t, nil, newRequest(t, http.MethodPost, base+path, bearer(p), bytes.NewReader(b)))
	}
	get := func(url string) (int, []byte) {
		resp, b := roundTrip(t, nil, newRequest(t, http.MethodGet, url, "", nil))
		return resp.StatusCode, b
	}

	// The DEK never comes out of /v1/reveal.
	resp, body := post(support, "/v1/reveal", map[string]any{"tokens": []string{tok.Encode()}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"denied"`) {
		t.Fatalf("reveal of a blob token = %d %s, want denied", resp.StatusCode, body)
	}
	// Another app's principal gets no link.
	if resp, _ := post(other, "/v1/blobs/link", map[string]any{"token": tok.Encode()}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("link for another app's principal = %d, want 403", resp.StatusCode)
	}
	// Over 60 minutes is refused.
	if resp, _ := post(support, "/v1/blobs/link", map[string]any{"token": tok.Encode(), "ttl_seconds": 3601}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("link of 61 min = %d, want 400", resp.StatusCode)
	}
	resp, body = post(support, "/v1/blobs/link", map[string]any{"token": tok.Encode()})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("link = %d %s", resp.StatusCode, body)
	}
	var link struct {
		URL     string    `json:"url"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal(body, &link); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(link.Expires); d < 14*time.Minute || d > 15*time.Minute+time.Second {
		t.Errorf("default link life = %v, want 15 min", d)
	}
	code, got := get(base + link.URL)
	if code != http.StatusOK || !bytes.Equal(got, media) {
		t.Fatalf("fetching the link = %d, %d bytes; want 200 and the %d media bytes", code, len(got), len(media))
	}
	tampered := link.URL[:len(link.URL)-2] + "AA"
	if code, _ := get(base + tampered); code != http.StatusForbidden {
		t.Errorf("tampered link = %d, want 403", code)
	}
	e.clock.Advance(16 * time.Minute)
	if code, _ := get(base + link.URL); code != http.StatusGone {
		t.Errorf("expired link = %d, want 410", code)
	}

	recs, raw := e.auditRecords(5)
	statuses := map[string]int{}
	for i, r := range recs {
		statuses[r.Source+":"+r.Status]++
		if bytes.Contains(raw[i], []byte("CANARY")) || bytes.Contains(raw[i], []byte(tok.Encode())) {
			t.Errorf("audit record carries a value or the token: %s", raw[i])
		}
	}
	for _, want := range []string{"api:denied", "api:link:denied", "api:link:link_issued", "signed-link:ok"} {
		if statuses[want] == 0 {
			t.Errorf("no audit record %s (got %v)", want, statuses)
		}
	}
}
