package reveal_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// env is the reveal side of veil on real components: kfake, the local KMS, the file key store and
// Badger.
type env struct {
	t       testing.TB
	clock   *testkit.Clock
	cluster *kfake.Cluster
	addrs   []string
	store   store.Store
	sealer  *envelope.Sealer
	opener  *reveal.Opener
	auditor *reveal.KafkaAuditor
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := testkit.Kafka(t, kfake.SeedTopics(1, broker.AuditTopic))
	s := testkit.NewSealing(t, t.TempDir())
	aud, err := reveal.DialKafkaAuditor(c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aud.Close(context.Background()) })
	return &env{
		t: t, clock: s.Clock, cluster: c, addrs: c.ListenAddrs(), store: s.Store, sealer: s.Sealer,
		opener: &reveal.Opener{Store: s.Store, Sealer: s.Sealer}, auditor: aud,
	}
}

// seal stores one record of app with the given JSON values (one field each) expiring after ttl,
// and returns its tokens.
func (e *env) seal(app string, ttl time.Duration, values ...string) []envelope.Token {
	e.t.Helper()
	var ref envelope.RefID
	rand.Read(ref[:])
	expiry := e.clock.Now().Add(ttl)
	fields := make([]envelope.Field, len(values))
	for i, v := range values {
		fields[i] = envelope.Field{Path: "f" + string(rune('a'+i)), Value: []byte(v)}
	}
	ctx := context.Background()
	rec, toks, err := e.sealer.Seal(ctx, envelope.Header{App: app, Ledger: "event", Ref: ref, Expiry: expiry}, fields)
	if err != nil {
		e.t.Fatalf("sealing: %v", err)
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Put(ctx, []store.Item{{App: app, Ref: ref, Expiry: rec.Expiry, Value: b}}); err != nil {
		e.t.Fatalf("storing: %v", err)
	}
	return toks
}

// principal is a principal with its key.
type principal struct {
	reveal.Principal
	key reveal.APIKey
}

func newPrincipal(t testing.TB, name string, kind reveal.Kind, override bool, apps ...string) principal {
	t.Helper()
	k, err := reveal.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return principal{reveal.Principal{Name: name, Kind: kind, Override: override, Apps: apps, KeySHA256: reveal.HashKey(k)}, k}
}

func principalSet(t testing.TB, ps ...principal) *reveal.Principals {
	t.Helper()
	var list []reveal.Principal
	for _, p := range ps {
		list = append(list, p.Principal)
	}
	set, err := reveal.NewPrincipals(list)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// addPrincipal adds a principal of kind for apps to the principals file at path and returns its
// key; an error fails t.
func addPrincipal(t testing.TB, path, name string, kind reveal.Kind, apps ...string) reveal.APIKey {
	t.Helper()
	key, err := reveal.AddPrincipal(path, reveal.Principal{Name: name, Kind: kind, Apps: apps})
	if err != nil {
		t.Fatalf("AddPrincipal(%s): %v", name, err)
	}
	return key
}

// serveSupport starts an env and a server whose one principal is a support principal of app-1
// named name; it returns the env, the principal and the server's base URL.
func serveSupport(t testing.TB, name string) (*env, principal, string) {
	t.Helper()
	e := newEnv(t)
	p := newPrincipal(t, name, reveal.KindSupport, false, "app-1")
	return e, p, e.serve(reveal.ServerConfig{Principals: principalSet(t, p)})
}

// newRequest is a request to url with body; auth, when not empty, is its Authorization header.
func newRequest(t testing.TB, method, url, auth string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// bearer is the Authorization header value of p's key.
func bearer(p principal) string { return "Bearer " + string(p.key) }

// roundTrip sends req with hc (http.DefaultClient when nil) and returns the response with its
// whole body read and closed; an error sending fails t.
func roundTrip(t testing.TB, hc *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	return resp, b
}

// serve starts a server for cfg (Opener, Auditor, Addr and PlainHTTP filled in when unset) and
// returns its base URL.
func (e *env) serve(cfg reveal.ServerConfig) string {
	e.t.Helper()
	if cfg.Opener == nil {
		cfg.Opener = e.opener
	}
	if cfg.Auditor == nil {
		cfg.Auditor = e.auditor
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.CertFile == "" {
		cfg.PlainHTTP = true
	}
	s, err := reveal.NewServer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		e.t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Serve(ctx, ln); err != nil {
			e.t.Errorf("Serve: %v", err)
		}
	})
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	scheme := "http"
	if !cfg.PlainHTTP {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String()
}

// auditRecords reads veil.audit until want records arrived (or 10 s passed), then briefly more.
func (e *env) auditRecords(want int) ([]reveal.AuditRecord, [][]byte) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addrs...), kgo.ConsumeTopics(broker.AuditTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var recs []reveal.AuditRecord
	var raw [][]byte
	deadline := time.Now().Add(10 * time.Second)
	grace := time.Time{}
	for {
		limit := deadline
		if len(recs) >= want {
			if grace.IsZero() {
				grace = time.Now().Add(200 * time.Millisecond)
			}
			limit = grace
		}
		if time.Now().After(limit) {
			break
		}
		ctx, cancel := context.WithDeadline(context.Background(), limit)
		f := cl.PollFetches(ctx)
		cancel()
		f.EachRecord(func(r *kgo.Record) {
			var a reveal.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil {
				e.t.Errorf("audit record is not JSON: %v", err)
			}
			recs = append(recs, a)
			raw = append(raw, r.Value)
		})
	}
	return recs, raw
}

// writeCert writes a self-signed certificate for 127.0.0.1 and returns the file paths and pool.
func writeCert(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "veil test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// blobService is a blob service on a fresh blob directory, on the env's store, sealer and clock,
// auditing link issues and fetches to the env's auditor.
func (e *env) blobService() (*blob.Service, *blob.Dir) {
	e.t.Helper()
	objects, err := blob.NewDir(filepath.Join(e.t.TempDir(), "blobs"))
	if err != nil {
		e.t.Fatal(err)
	}
	svc, err := blob.New(blob.Config{Objects: objects, Store: e.store, Sealer: e.sealer, Now: e.clock.Now,
		Audit: reveal.LinkAudit(e.auditor, e.clock.Now)})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc, objects
}

// sealBlob seals media with svc as a blob of app-a (ref: first byte refByte, the rest zero),
// expiring in 24 h, stores its item, and returns the media token.
func (e *env) sealBlob(svc *blob.Service, refByte byte, media io.Reader) envelope.Token {
	e.t.Helper()
	var ref envelope.RefID
	ref[0] = refByte
	tok, item, _, err := svc.Seal(context.Background(), "app-a", "blob", ref, time.Now().Add(24*time.Hour).Truncate(time.Second), media)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Put(context.Background(), []store.Item{item}); err != nil {
		e.t.Fatal(err)
	}
	return tok
}
