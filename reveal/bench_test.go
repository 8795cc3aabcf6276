package reveal_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-project/veil/reveal"
)

// BenchmarkReveal32 measures the latency of revealing one token with 32 concurrent clients over
// TLS 1.3 on loopback (keep-alive connections), with the audit record written to kfake before the
// answer, as in production. It reports p50 and p99 in microseconds.
func BenchmarkReveal32(b *testing.B) {
	const clients = 32
	e := newEnv(b)
	p := newPrincipal(b, "bench", reveal.KindSupport, false, "app-1")
	certFile, keyFile, pool := writeCert(b)
	url := e.serve(reveal.ServerConfig{
		Principals: principalSet(b, p), CertFile: certFile, KeyFile: keyFile,
		RatePerSecond: 1e9, Burst: 1 << 30,
	})
	var toks []string
	for _, tk := range e.seal("app-1", time.Hour, secretValue, `"+1 555 0100"`, `{"street":"1 Main St"}`) {
		toks = append(toks, tk.Encode())
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: clients,
	}}
	c := &reveal.Client{BaseURL: url, Key: p.key, HTTPClient: hc}
	ctx := context.Background()
	// Warm up: connections, the app key cache, the audit producer.
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			if _, err := c.Reveal(ctx, toks[:1]); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()

	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				start := time.Now()
				res, err := c.Reveal(ctx, toks[i%int64(len(toks)):][:1])
				lat[i] = time.Since(start)
				if err != nil || res[0].Status != reveal.StatusOK {
					b.Errorf("Reveal = %v, %v", res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkHandler measures the server's own work for one POST /v1/reveal of 1 and 100 tokens,
// in process (no network, no TLS), with an auditor that accepts at once: request parsing,
// authorization, store reads, opening, audit records and the response. b.ReportAllocs guards
// the allocations per request.
func BenchmarkHandler(b *testing.B) {
	e := newEnv(b)
	p := newPrincipal(b, "bench", reveal.KindSupport, false, "app-1")
	s, err := reveal.NewServer(reveal.ServerConfig{
		Opener: e.opener, Principals: principalSet(b, p), PlainHTTP: true, Addr: "127.0.0.1:0",
		RatePerSecond: 1e9, Burst: 1 << 30,
		Auditor: reveal.AuditorFunc(func(_ context.Context, recs []reveal.AuditRecord) error {
			for _, r := range recs {
				if _, err := r.KafkaRecord(); err != nil {
					return err
				}
			}
			return nil
		}),
	})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	var toks []string
	for range 34 {
		for _, tk := range e.seal("app-1", time.Hour, secretValue, `"+1 555 0100"`, `{"street":"1 Main St","city":"Springfield"}`) {
			toks = append(toks, tk.Encode())
		}
	}
	for _, n := range []int{1, 100} {
		body, err := json.Marshal(map[string][]string{"tokens": toks[:n]})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			w := &discardWriter{h: http.Header{}}
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/reveal", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+string(p.key))
				clear(w.h)
				w.code = 0
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// discardWriter is an http.ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }
