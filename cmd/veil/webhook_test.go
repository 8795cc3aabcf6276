package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/egress"
	"github.com/veil-project/veil/internal/leakcheck"
)

// TestRunDeliversToWebhook: `veil run` with an integration of delivery webhook (URL and CA file
// from the YAML, the secret from the environment) POSTs a sensitive entry decrypted and signed to
// a real HTTPS server, and the value reaches no topic, log or data file on the way.
func TestRunDeliversToWebhook(t *testing.T) {
	const secret = "a-webhook-secret-of-32-bytes-xyz"
	got := make(chan []byte, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !egress.Verify([]byte(secret), r.Header.Get(egress.HeaderTimestamp), body, r.Header.Get(egress.HeaderSignature)) || r.Header.Get(egress.HeaderIdempotencyKey) == "" {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		got <- body
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	addrs := externalBroker(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "hook-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VEIL_INTEGRATIONS_HOOK_SECRET", secret)
	cfgPath := writeIntegrationsConfig(t, dir, addrs[0], "veil-wh",
		fmt.Sprintf("  hook: {kind: messaging, ledgers: [event], delivery: webhook, url: %q, ca_file: %s}\n", srv.URL+"/in", ca))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := runInProcess(ctx, cfgPath, nil, &logs)

	produceSay(t, addrs, "t1", "e-wh", "SECRET-webhook-1")
	select {
	case b := <-got:
		if !bytes.Contains(b, []byte(`"text":"SECRET-webhook-1"`)) || bytes.Contains(b, []byte("veil:v1:")) {
			t.Errorf("webhook received %s, want the decrypted text and no token", b)
		}
	case code := <-done:
		t.Fatalf("veil run stopped with exit %d\n%s", code, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the webhook received nothing; log:\n%s", logs.String())
	}
	cancel()
	waitExit(t, done, 60*time.Second, exitOK, &logs)
	if strings.Contains(logs.String(), "SECRET") {
		t.Errorf("plaintext in the log")
	}
	if leakcheck.Dir(t, dir, "the delivered plaintext", []byte("SECRET-webhook-1")) == 0 {
		t.Errorf("scanned no files")
	}
	// No topic of veil's holds the decrypted entry.
	for _, r := range consumeTopics(t, addrs, 1, 5*time.Second, broker.EncryptedTopic("event"), broker.RedactedTopic("event"), broker.AuditTopic, broker.DeadLetterTopic) {
		if bytes.Contains(r.Value, []byte("SECRET-webhook-1")) {
			t.Errorf("plaintext on %s", r.Topic)
		}
	}
}
