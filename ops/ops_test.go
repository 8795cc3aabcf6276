package ops

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	m := NewMetrics()
	r := NewReadiness("broker", "kms", "store")
	srv := httptest.NewServer(NewServer("", m, r).Handler)
	defer srv.Close()

	if code, body := get(t, srv, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
	}

	type readyBody struct {
		Ready   bool        `json:"ready"`
		Failing []Condition `json:"failing"`
	}
	tests := []struct {
		name        string
		set         func()
		wantCode    int
		wantFailing []string
	}{
		{"starting", func() {}, 503, []string{"broker", "kms", "store"}},
		{"kms down", func() {
			r.Set("broker", true, "")
			r.Set("store", true, "")
			r.Set("kms", false, "kms unreachable")
		}, 503, []string{"kms"}},
		{"all up", func() { r.Set("kms", true, "ignored when ok") }, 200, nil},
		{"store fails again", func() { r.Set("store", false, "put failed") }, 503, []string{"store"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.set()
			code, body := get(t, srv, "/readyz")
			if code != tt.wantCode {
				t.Errorf("GET /readyz = %d, want %d", code, tt.wantCode)
			}
			var rb readyBody
			if err := json.Unmarshal([]byte(body), &rb); err != nil {
				t.Fatalf("/readyz body %q: %v", body, err)
			}
			var names []string
			for _, c := range rb.Failing {
				names = append(names, c.Name)
				if c.Reason == "" {
					t.Errorf("failing condition %s has no reason", c.Name)
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.wantFailing, ",") || rb.Ready != (tt.wantCode == 200) {
				t.Errorf("/readyz = %s, want failing %v", body, tt.wantFailing)
			}
		})
	}
	if ok, _ := NewReadiness().Ready(); ok {
		t.Error("empty Readiness is ready, want not ready")
	}

	m.EntriesIn.WithLabelValues("event").Add(3)
	m.EntriesOut.WithLabelValues("event", "redacted").Inc()
	m.Sensitive.WithLabelValues("event").Inc()
	m.DeadLettered.WithLabelValues("malformed_json").Inc()
	m.SealSeconds.Observe(0.0002)
	m.TxnCommits.Inc()
	m.TxnAborts.Inc()
	m.SetLag("ledger.event", 2, 17)
	m.KMSCalls.WithLabelValues("generate_data_key").Inc()
	m.KeyCacheHits.Inc()
	m.KeyCacheMisses.Inc()
	m.StoreWrites.Inc()
	m.StoreErrors.WithLabelValues("put").Inc()
	code, body := get(t, srv, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`veil_entries_in_total{ledger="event"} 3`,
		`veil_entries_out_total{ledger="event",view="redacted"} 1`,
		`veil_entries_sensitive_total{ledger="event"} 1`,
		`veil_deadlettered_total{reason="malformed_json"} 1`,
		`veil_seal_seconds_count 1`,
		`veil_transaction_commits_total 1`,
		`veil_transaction_aborts_total 1`,
		`veil_consumer_lag{partition="2",topic="ledger.event"} 17`,
		`veil_kms_calls_total{op="generate_data_key"} 1`,
		`veil_key_cache_hits_total 1`,
		`veil_key_cache_misses_total 1`,
		`veil_store_writes_total 1`,
		`veil_store_errors_total{op="put"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Two Metrics do not collide: each has its own registry.
	if NewMetrics().Registry == m.Registry {
		t.Error("NewMetrics shares a registry")
	}
	if code, _ := get(t, srv, "/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level     string
		debug     bool
		info      bool
		wantLines int
	}{
		{"debug", true, true, 3},
		{"info", false, true, 2},
		{"", false, true, 2},
		{"warn", false, false, 1},
		{"error", false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			l := NewLogger(&buf, tt.level)
			l.Debug("d")
			l.Info("i", "ledger", "event")
			l.Warn("w")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != tt.wantLines {
				t.Fatalf("NewLogger(%q) wrote %d lines, want %d: %s", tt.level, len(lines), tt.wantLines, buf.String())
			}
			for _, line := range lines {
				var v map[string]any
				if err := json.Unmarshal([]byte(line), &v); err != nil {
					t.Errorf("log line %q is not JSON: %v", line, err)
				}
			}
		})
	}
}
