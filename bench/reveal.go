package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/store"
)

const revealClients = 32

// revealNoAudit drops the audit write (an experiment to see what the rest of a request costs;
// veil itself never reveals without its audit record).
var revealNoAudit bool

var tokenRE = regexp.MustCompile(`veil:v1:[A-Za-z0-9_-]+`)

// tokenSample keeps up to max tokens from the pipeline's encrypted outputs, for the reveal phase.
type tokenSample struct {
	mu   sync.Mutex
	max  int
	toks []string
}

func (s *tokenSample) add(value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.toks) >= s.max {
		return
	}
	for _, m := range tokenRE.FindAll(value, -1) {
		s.toks = append(s.toks, string(m))
	}
}

type revealResult struct {
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	PerS     float64 `json:"requests_per_s"`
	// Where a 1-token request's time goes, timed inside the server's own process: the audit
	// write (to the broker, before the answer) and the store read, per call.
	AuditP50Ms float64 `json:"audit_p50_ms"`
	AuditP99Ms float64 `json:"audit_p99_ms"`
	StoreP50Ms float64 `json:"store_get_p50_ms"`
	StoreP99Ms float64 `json:"store_get_p99_ms"`
	NewConns   int64   `json:"new_connections"` // requests that paid a TCP+TLS handshake (the rest reused a connection)
	// CPU time of this process (server and clients; not the broker child) per request, and per
	// token in the batch phase: steadier than latency on a shared machine.
	CPUUsPerRequest    float64 `json:"cpu_us_per_request"`
	BatchCPUUsPerToken float64 `json:"batch_cpu_us_per_token"`
	// Batch requests: BatchSize tokens per request, same clients.
	BatchSize     int     `json:"batch_size"`
	BatchRequests int     `json:"batch_requests"`
	BatchP50Ms    float64 `json:"batch_p50_ms"`
	BatchP99Ms    float64 `json:"batch_p99_ms"`
	TokensPerS    float64 `json:"batch_tokens_per_s"`
}

// revealBatch is the number of tokens per request of the batch phase; revealBatchRequests how
// many such requests it makes.
const (
	revealBatch         = 100
	revealBatchRequests = 2_000
)

// timings collects durations from many goroutines.
type timings struct {
	mu sync.Mutex
	d  []time.Duration
}

func (t *timings) add(d time.Duration) { t.mu.Lock(); t.d = append(t.d, d); t.mu.Unlock() }

// quantiles returns p50 and p99 in ms and forgets what was collected.
func (t *timings) quantiles() (p50, p99 float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.d) == 0 {
		return 0, 0
	}
	slices.Sort(t.d)
	p50, p99 = ms(t.d[len(t.d)/2]), ms(t.d[len(t.d)*99/100])
	t.d = t.d[:0]
	return p50, p99
}

// timedStore times every Get of the store it wraps.
type timedStore struct {
	store.Store
	gets *timings
}

func (s timedStore) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	t0 := time.Now()
	it, err := s.Store.Get(ctx, app, ref)
	s.gets.add(time.Since(t0))
	return it, err
}

// benchReveal serves the reveal API over TLS on loopback, on the pipeline's store and keys with
// the audit going to the broker, and has 32 clients reveal one token per request, then 100
// tokens per request. The audit writes and store reads are timed inside the server, and the
// client counts the requests that opened a new connection (a TLS handshake) rather than reusing
// one. With cpuProfile set, the 1-token phase is CPU-profiled into that file and the batch phase
// into that file + ".batch".
func benchReveal(ctx context.Context, dir string, brokers []string, st store.Store, sealer *envelope.Sealer, toks []string, requests int, cpuProfile string) (revealResult, error) {
	if len(toks) == 0 {
		return revealResult{}, fmt.Errorf("reveal: no tokens to reveal")
	}
	certFile, keyFile, pool, err := writeCert(dir)
	if err != nil {
		return revealResult{}, err
	}
	key, err := reveal.NewAPIKey()
	if err != nil {
		return revealResult{}, err
	}
	apps := map[string]bool{}
	for _, s := range toks {
		if t, err := envelope.ParseToken(s); err == nil {
			apps[t.App] = true
		}
	}
	ps, err := reveal.NewPrincipals([]reveal.Principal{{Name: "bench", Kind: reveal.KindSupport,
		Apps: slices.Sorted(maps.Keys(apps)), KeySHA256: reveal.HashKey(key)}})
	if err != nil {
		return revealResult{}, err
	}
	aud, err := reveal.DialKafkaAuditor(brokers)
	if err != nil {
		return revealResult{}, err
	}
	defer aud.Close(context.Background())
	var audits, gets timings
	timedAud := reveal.AuditorFunc(func(ctx context.Context, recs []reveal.AuditRecord) error {
		t0 := time.Now()
		var err error
		if !revealNoAudit {
			err = aud.Audit(ctx, recs)
		}
		audits.add(time.Since(t0))
		return err
	})
	srv, err := reveal.NewServer(reveal.ServerConfig{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile,
		Opener: &reveal.Opener{Store: timedStore{st, &gets}, Sealer: sealer}, Principals: ps, Auditor: timedAud,
		RatePerSecond: 1e9, Burst: 1 << 30})
	if err != nil {
		return revealResult{}, err
	}
	ln, err := srv.Listen()
	if err != nil {
		return revealResult{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx, ln); close(done) }()
	defer func() { cancel(); <-done }()

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: revealClients,
	}}
	c := &reveal.Client{BaseURL: "https://" + ln.Addr().String(), Key: key, HTTPClient: hc}
	var newConns atomic.Int64
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			newConns.Add(1)
		}
	}})
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range revealClients { // warm up connections, key cache and audit producer
		wg.Go(func() {
			if _, err := c.Reveal(ctx, toks[i%len(toks):][:1]); err != nil {
				failed.Store(err)
			}
		})
	}
	wg.Wait()
	audits.quantiles()
	gets.quantiles()
	// phase has the clients make requests of size tokens each; it returns each request's latency.
	phase := func(requests, size int) ([]time.Duration, time.Duration) {
		lat := make([]time.Duration, requests)
		var next atomic.Int64
		start := time.Now()
		for range revealClients {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(requests) {
						return
					}
					batch := make([]string, size)
					for j := range batch {
						batch[j] = toks[(int(i)*size+j)%len(toks)]
					}
					t0 := time.Now()
					res, err := c.Reveal(tctx, batch)
					lat[i] = time.Since(t0)
					if err != nil {
						failed.Store(err)
						return
					}
					for _, r := range res {
						if r.Status != reveal.StatusOK {
							failed.Store(fmt.Errorf("reveal status %s", r.Status))
							return
						}
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		return lat, elapsed
	}
	stopProf := func() error { return nil }
	if cpuProfile != "" {
		if stopProf, err = startProfiles(profileFiles{cpu: cpuProfile}); err != nil {
			return revealResult{}, err
		}
	}
	cpu0 := cpuTime()
	lat, elapsed := phase(requests, 1)
	cpu1 := cpuTime()
	if err := stopProf(); err != nil {
		return revealResult{}, err
	}
	if err, _ := failed.Load().(error); err != nil {
		return revealResult{}, fmt.Errorf("revealing: %w", err)
	}
	r := revealResult{Clients: revealClients, Requests: requests, P50Ms: ms(lat[len(lat)/2]),
		P99Ms: ms(lat[len(lat)*99/100]), PerS: float64(requests) / elapsed.Seconds(), NewConns: newConns.Load(),
		CPUUsPerRequest: float64((cpu1 - cpu0).Microseconds()) / float64(requests)}
	r.AuditP50Ms, r.AuditP99Ms = audits.quantiles()
	r.StoreP50Ms, r.StoreP99Ms = gets.quantiles()

	if cpuProfile != "" {
		if stopProf, err = startProfiles(profileFiles{cpu: cpuProfile + ".batch"}); err != nil {
			return revealResult{}, err
		}
	}
	cpu0 = cpuTime()
	lat, elapsed = phase(revealBatchRequests, revealBatch)
	cpu1 = cpuTime()
	if err := stopProf(); err != nil {
		return revealResult{}, err
	}
	if err, _ := failed.Load().(error); err != nil {
		return revealResult{}, fmt.Errorf("revealing batches: %w", err)
	}
	r.BatchSize, r.BatchRequests = revealBatch, revealBatchRequests
	r.BatchP50Ms, r.BatchP99Ms = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
	r.TokensPerS = float64(revealBatch*revealBatchRequests) / elapsed.Seconds()
	r.BatchCPUUsPerToken = float64((cpu1 - cpu0).Microseconds()) / float64(revealBatch*revealBatchRequests)
	return r, nil
}

func writeCert(dir string) (certFile, keyFile string, pool *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "veil bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool, nil
}

// benchSeal is the seal micro-benchmark: one realistic sensitive entry (three fields: a 256-byte
// message, a 40-byte email, a 120-byte object) per op, tokens encoded, with crypto/rand.
func benchSeal(key *envelope.AppKey) float64 {
	h := envelope.Header{App: key.App, Ledger: "event", Ref: envelope.RefID{1, 2, 3}, Expiry: time.Now().Add(24 * time.Hour)}
	text := make([]byte, 256)
	for i := range text {
		text[i] = 'a' + byte(i%26)
	}
	fields := []envelope.Field{
		{Path: "data.text", Value: append(append([]byte{'"'}, text[:254]...), '"')},
		{Path: "data.context.email", Value: []byte(`"jane.doe@example.com"`)},
		{Path: "data.data", Value: []byte(`{"action":"track","order":88412,"items":["blue jacket","scarf"],"note":"leave at the door please"}`)},
	}
	var sink int
	r := testing.Benchmark(func(b *testing.B) {
		for b.Loop() {
			_, toks, err := envelope.SealWith(key, rand.Reader, h, fields)
			if err != nil {
				b.Fatal(err)
			}
			for i := range toks {
				sink += len(toks[i].Encode())
			}
		}
	})
	_ = sink
	return float64(r.NsPerOp()) / 1000
}
