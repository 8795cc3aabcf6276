package egress_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/egress"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
)

var hookSecret = []byte("0123456789abcdef-webhook-secret")

// hookServer is the integration's side: a real TLS 1.2+ HTTPS server that checks every
// signature independently of egress.Sign, keeps every request by idempotency key, and follows a
// script of failures.
type hookServer struct {
	srv *httptest.Server

	mu        sync.Mutex
	bodies    map[string][][]byte // by Idempotency-Key, every request
	ok        map[string]bool     // keys answered 2xx
	badSigs   int
	requests  int
	rejectID  string        // entry id answered 422 for good
	failAt    map[int]int   // request number → status (0: drop the connection)
	blockAt   int           // request number that blocks until release is closed (0: none)
	blockKey  string        // its key
	blocked   chan struct{} // closed when the blockAt request arrived
	release   chan struct{}
	okChanged chan struct{} // receives (without blocking) on each new 2xx key
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{
		bodies: map[string][][]byte{}, ok: map[string]bool{}, failAt: map[int]int{},
		blocked: make(chan struct{}), release: make(chan struct{}), okChanged: make(chan struct{}, 1),
	}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	h.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.srv.StartTLS()
	t.Cleanup(func() {
		h.mu.Lock()
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		h.mu.Unlock()
		h.srv.Close()
	})
	return h
}

func (h *hookServer) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(h.srv.Certificate())
	return p
}

func (h *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key, ts, sig := r.Header.Get(egress.HeaderIdempotencyKey), r.Header.Get(egress.HeaderTimestamp), r.Header.Get(egress.HeaderSignature)
	m := hmac.New(sha256.New, hookSecret)
	m.Write([]byte(ts + "." + string(body)))
	valid := r.TLS != nil && r.TLS.Version >= tls.VersionTLS12 && key != "" &&
		hmac.Equal([]byte(sig), []byte("v1="+hex.EncodeToString(m.Sum(nil))))

	h.mu.Lock()
	h.requests++
	n := h.requests
	if !valid {
		h.badSigs++
		h.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	h.bodies[key] = append(h.bodies[key], body)
	status, scripted := h.failAt[n]
	block := n == h.blockAt
	if block {
		h.blockKey = key
	}
	reject := h.rejectID != "" && bytes.Contains(body, []byte(`"id":"`+h.rejectID+`"`))
	h.mu.Unlock()

	switch {
	case block:
		close(h.blocked)
		<-h.release // veil gives up waiting (it is stopped) before this answer
		return
	case scripted && status == 0:
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
		return
	case scripted:
		http.Error(w, "try later: "+string(body), status) // echoes plaintext
		return
	case reject:
		http.Error(w, "unprocessable: "+string(body), http.StatusUnprocessableEntity) // echoes plaintext
		return
	}
	h.mu.Lock()
	if !h.ok[key] {
		h.ok[key] = true
		select {
		case h.okChanged <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookServer) delivered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ok)
}

// syncLog collects the stages' logs.
type syncLog = testkit.Buffer

// TestWebhookDelivery: a decrypting integration receives every entry over HTTPS, decrypted and
// signed, exactly once by idempotency key — across 503s, a dropped connection and a restart in
// the middle of a batch and a replay that re-emits an entry (the redelivered entries carry the
// same key and body); an entry the
// integration refuses with 422 is dead-lettered with the reason and its key, never its content,
// and the rest still flow; every decrypt is audited before its value leaves; no plaintext reaches
// the logs, the dead letters or the audit.
func TestWebhookDelivery(t *testing.T) {
	h := newHarness(t, nil)
	const n = 120
	_, byID, canaries := h.pipelined(21, n)
	enc := h.encrypted(n)
	tokens := 0
	var rejectID string
	for _, r := range enc {
		e := decode(t, r)
		tokens += countTokens(e.Data)
		if rejectID == "" && countTokens(e.Data) > 0 {
			rejectID = e.ID
		}
	}

	hook := newHookServer(t)
	hook.rejectID = rejectID
	hook.failAt[3] = http.StatusServiceUnavailable
	hook.failAt[4] = http.StatusServiceUnavailable
	hook.failAt[9] = 0 // dropped connection
	hook.failAt[17] = http.StatusTooManyRequests
	hook.blockAt = 50

	var logs syncLog
	in := egress.Integration{Name: "hook", Kind: reveal.KindSupport, Ledgers: allLedgers, Delivery: egress.DeliveryWebhook, URL: hook.srv.URL + "/veil?tenant=x"}
	cfg := egress.Config{
		Integration: in, TransactionalID: "veil-test", MaxPoll: 16, Workers: 2,
		Webhook: egress.WebhookConfig{Secret: hookSecret, RootCAs: hook.roots(), Timeout: 10 * time.Second},
		Logger:  slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	stop := h.runStage(cfg)
	select {
	case <-hook.blocked:
	case <-time.After(60 * time.Second):
		t.Fatalf("the first run never reached request %d (%d delivered)", hook.blockAt, hook.delivered())
	}
	stop() // a restart in the middle of a batch: its delivered entries are not committed
	hook.mu.Lock()
	close(hook.release)
	hook.mu.Unlock()
	before := hook.delivered()
	h.runStage(cfg)

	want := n - 1 // the rejected entry
	deadline := time.After(90 * time.Second)
	for hook.delivered() < want {
		select {
		case <-hook.okChanged:
		case <-deadline:
			t.Fatalf("delivered %d distinct entries, want %d", hook.delivered(), want)
		}
	}
	// A replay re-emits an encrypted entry (same veil-source header, new offset): the integration
	// gets it under the key it already has.
	var again *kgo.Record
	for _, r := range enc {
		if decode(t, r).ID != rejectID {
			again = r
			break
		}
	}
	againKey := egress.IdempotencyKey(in.Name, string(testkit.Header(again, pipeline.HeaderSource)), decode(t, again).ID)
	hook.mu.Lock()
	sentBefore := len(hook.bodies[againKey])
	hook.mu.Unlock()
	if sentBefore == 0 {
		t.Fatalf("entry %s was not delivered under the key its source gives", decode(t, again).ID)
	}
	h.produce(&kgo.Record{Topic: again.Topic, Key: again.Key, Value: again.Value, Headers: again.Headers})
	for sent := sentBefore; sent == sentBefore; {
		select {
		case <-deadline:
			t.Fatalf("the re-emitted entry was never delivered again")
		case <-time.After(20 * time.Millisecond):
		}
		hook.mu.Lock()
		sent = len(hook.bodies[againKey])
		hook.mu.Unlock()
	}

	dls := h.consume(1, 30*time.Second, broker.DeadLetterTopic)
	as := audits(t, h.consume(tokens, 30*time.Second, broker.AuditTopic), in.Name)

	hook.mu.Lock()
	defer hook.mu.Unlock()
	t.Logf("%d requests, %d distinct keys, %d delivered before the restart", hook.requests, len(hook.bodies), before)
	if hook.badSigs != 0 {
		t.Errorf("%d requests failed the signature or TLS check", hook.badSigs)
	}
	if len(hook.ok) != want {
		t.Errorf("integration saw %d distinct delivered keys, want %d", len(hook.ok), want)
	}
	retried := 0
	ids := map[string]string{} // entry id → key
	for key, bodies := range hook.bodies {
		if len(bodies) > 1 {
			retried++
		}
		for _, b := range bodies[1:] {
			if !bytes.Equal(b, bodies[0]) {
				t.Errorf("key %s: a redelivery carried another body", key)
			}
		}
		e, err := schemas.Decode(bodies[0], schemas.Limits{MaxBytes: 64 << 20})
		if err != nil {
			t.Fatalf("delivered body does not decode: %v", err)
		}
		if prev, ok := ids[e.ID]; ok {
			t.Errorf("entry %s delivered under two keys %s and %s", e.ID, prev, key)
		}
		ids[e.ID] = key
		if bytes.Contains(bodies[0], []byte("veil:v1:")) {
			t.Errorf("entry %s delivered with a token where its value belongs", e.ID)
		}
		if orig := byID[e.ID]; orig == nil {
			t.Errorf("delivered an entry %s that was never produced", e.ID)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct entries reached the integration, want %d", len(ids), n)
	}
	// The entry in flight at the restart was processed by the integration, but veil never saw the
	// answer: it came again, with the same key and body.
	if got := len(hook.bodies[hook.blockKey]); got < 2 {
		t.Errorf("the entry in flight at the restart was sent %d times, want again after the restart under the same key", got)
	}
	if retried < 4 {
		t.Errorf("%d keys were sent more than once, want at least 4 (two 503s, a dropped connection, a 429, a restart)", retried)
	}
	// Decrypted values reached the integration (and only it).
	sawCanary := false
	for _, bodies := range hook.bodies {
		if testkit.ContainsAny(bodies[0], canaries) != "" {
			sawCanary = true
			break
		}
	}
	if !sawCanary {
		t.Errorf("no decrypted value reached the integration")
	}

	// The refused entry: dead-lettered by key, without its content.
	var dl struct {
		Reason, Integration, Source, IdempotencyKey string
		Status                                      int
	}
	found := false
	for _, r := range dls {
		if c := testkit.ContainsAny(r.Value, canaries); c != "" {
			t.Errorf("plaintext %q in a dead letter", c)
		}
		if err := json.Unmarshal(r.Value, &dl, json.MatchCaseInsensitiveNames(true)); err == nil && dl.Reason == egress.ReasonWebhookRejected {
			found = true
			if dl.Status != http.StatusUnprocessableEntity || dl.Integration != "hook" || dl.IdempotencyKey != ids[rejectID] || !strings.HasPrefix(dl.Source, broker.EncryptedPrefix) {
				t.Errorf("dead letter = %+v, want 422 from hook for key %s", dl, ids[rejectID])
			}
		}
	}
	if !found {
		t.Errorf("no %s dead letter for the refused entry", egress.ReasonWebhookRejected)
	}
	if hook.ok[ids[rejectID]] {
		t.Errorf("the refused entry was answered 2xx")
	}

	if len(as) < tokens {
		t.Errorf("%d audit records, want at least %d (one per token; a redelivered batch is audited again)", len(as), tokens)
	}
	for _, a := range as {
		b, _ := json.Marshal(a)
		if c := testkit.ContainsAny(b, canaries); c != "" {
			t.Errorf("plaintext %q in an audit record", c)
		}
	}
	if c := testkit.ContainsAny([]byte(logs.String()), canaries); c != "" {
		t.Errorf("plaintext %q in the logs", c)
	}
	if strings.Contains(logs.String(), "tenant=x") || strings.Contains(logs.String(), "/veil") {
		t.Errorf("the webhook URL's path or query reached the logs")
	}
	if !strings.Contains(logs.String(), "webhook delivery failed, retrying") {
		t.Errorf("no retry was logged")
	}
}

// hitCounter is a server that answers 200 and counts the requests it receives.
type hitCounter struct{ n atomic.Int64 }

func (h *hitCounter) ServeHTTP(http.ResponseWriter, *http.Request) { h.n.Add(1) }

// TestWebhookRefusesOldTLS: a server that offers only TLS 1.1 never receives an entry.
func TestWebhookRefusesOldTLS(t *testing.T) {
	h := newHarness(t, nil)
	h.pipelined(3, 4)
	var got hitCounter
	srv := httptest.NewUnstartedServer(&got)
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	handshake := make(chan struct{}, 1)
	srv.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("TLS handshake error")) {
			select {
			case handshake <- struct{}{}:
			default:
			}
		}
		return len(p), nil
	}), "", 0)
	srv.StartTLS()
	defer srv.Close()
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	stop := h.runStage(egress.Config{
		Integration: egress.Integration{Name: "old", Kind: reveal.KindSupport, Ledgers: allLedgers, Delivery: egress.DeliveryWebhook, URL: srv.URL},
		Webhook:     egress.WebhookConfig{Secret: hookSecret, RootCAs: p},
	})
	select {
	case <-handshake:
	case <-time.After(60 * time.Second):
		t.Fatal("no TLS handshake was attempted")
	}
	stop()
	if n := got.n.Load(); n != 0 {
		t.Errorf("a TLS 1.1 server received %d requests", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestWebhookRules: a webhook integration needs an https URL without credentials, no topic, and a
// secret of at least 16 bytes; the signature helpers agree with an independent HMAC.
func TestWebhookRules(t *testing.T) {
	base := egress.Integration{Name: "w", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Delivery: egress.DeliveryWebhook, URL: "https://hooks.example/veil"}
	tests := []struct {
		name string
		mod  func(*egress.Integration)
		ok   bool
	}{
		{"valid", func(*egress.Integration) {}, true},
		{"plain http", func(i *egress.Integration) { i.URL = "http://hooks.example/veil" }, false},
		{"no url", func(i *egress.Integration) { i.URL = "" }, false},
		{"relative", func(i *egress.Integration) { i.URL = "/veil" }, false},
		{"user info", func(i *egress.Integration) { i.URL = "https://u:p@hooks.example/veil" }, false},
		{"upper-case scheme", func(i *egress.Integration) { i.URL = "HTTPS://hooks.example/veil" }, true},
		{"no host", func(i *egress.Integration) { i.URL = "https:///veil" }, false},
		{"with topic", func(i *egress.Integration) { i.Topic = "out.x" }, false},
		{"unknown delivery", func(i *egress.Integration) { i.Delivery = "email" }, false},
		{"url on a topic delivery", func(i *egress.Integration) { i.Delivery = ""; i.Topic = "out.x" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.mod(&in)
			err := in.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, egress.ErrInvalidIntegration) {
				t.Errorf("Validate(%s) = %v, want ErrInvalidIntegration", tt.name, err)
			}
		})
	}
	if _, err := egress.New(egress.Config{Integration: base, Opener: &reveal.Opener{}, Webhook: egress.WebhookConfig{Secret: []byte("short")}}); err == nil {
		t.Errorf("New with a 5-byte secret = nil error")
	}

	body := []byte(`{"id":"e-1"}`)
	sig := egress.Sign(hookSecret, "1700000000", body)
	m := hmac.New(sha256.New, hookSecret)
	m.Write([]byte("1700000000." + string(body)))
	if sig != "v1="+hex.EncodeToString(m.Sum(nil)) {
		t.Errorf("Sign = %s, want the HMAC-SHA256 of timestamp.body", sig)
	}
	if !egress.Verify(hookSecret, "1700000000", body, sig) {
		t.Errorf("Verify(own signature) = false")
	}
	for name, args := range map[string][3]string{
		"other timestamp": {"1700000001", string(body), sig},
		"other body":      {"1700000000", `{"id":"e-2"}`, sig},
		"truncated":       {"1700000000", string(body), sig[:len(sig)-1]},
	} {
		if egress.Verify(hookSecret, args[0], []byte(args[1]), args[2]) {
			t.Errorf("Verify(%s) = true", name)
		}
	}
	if egress.Verify([]byte("another secret of 16+ bytes"), "1700000000", body, sig) {
		t.Errorf("Verify(other secret) = true")
	}
	k := egress.IdempotencyKey("hook", "ledger.event/1/42", "e-1")
	if k != egress.IdempotencyKey("hook", "ledger.event/1/42", "e-1") || len(k) != 32 {
		t.Errorf("IdempotencyKey is not a stable 32-character key: %q", k)
	}
	for _, other := range []string{
		egress.IdempotencyKey("hook2", "ledger.event/1/42", "e-1"),
		egress.IdempotencyKey("hook", "ledger.http/1/42", "e-1"),
		egress.IdempotencyKey("hook", "ledger.event/2/42", "e-1"),
		egress.IdempotencyKey("hook", "ledger.event/1/43", "e-1"),
		egress.IdempotencyKey("hook", "ledger.event/1/42", "e-2"),
		egress.IdempotencyKey("hook", "ledger.event/1/4", "2e-1"), // no ambiguity across fields
	} {
		if other == k {
			t.Errorf("IdempotencyKey collides across integration, source or entry")
		}
	}
}

// TestWebhookRedirectNotFollowed: a webhook that redirects (here to plain HTTP) is not followed:
// the entry is dead-lettered with the 3xx status and the redirect target receives nothing.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	h := newHarness(t, nil)
	_, _, canaries := h.pipelined(8, 1)
	var plainHits hitCounter
	plain := httptest.NewServer(&plainHits)
	defer plain.Close()
	hook := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	hook.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	hook.StartTLS()
	defer hook.Close()
	p := x509.NewCertPool()
	p.AddCert(hook.Certificate())
	h.runStage(egress.Config{
		Integration: egress.Integration{Name: "redir", Kind: reveal.KindSupport, Ledgers: allLedgers, Delivery: egress.DeliveryWebhook, URL: hook.URL},
		Webhook:     egress.WebhookConfig{Secret: hookSecret, RootCAs: p},
	})
	dls := h.consume(1, 60*time.Second, broker.DeadLetterTopic)
	found := false
	for _, r := range dls {
		if c := testkit.ContainsAny(r.Value, canaries); c != "" {
			t.Errorf("plaintext %q in a dead letter", c)
		}
		var dl struct {
			Reason string
			Status int
		}
		if json.Unmarshal(r.Value, &dl, json.MatchCaseInsensitiveNames(true)) == nil && dl.Reason == egress.ReasonWebhookRejected && dl.Status == http.StatusTemporaryRedirect {
			found = true
		}
	}
	if !found {
		t.Errorf("no %s dead letter with status 307", egress.ReasonWebhookRejected)
	}
	if n := plainHits.n.Load(); n != 0 {
		t.Errorf("the redirect target received %d requests", n)
	}
}
