package reveal_test

import (
	"context"
	"crypto/tls"
	"net/http"
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
