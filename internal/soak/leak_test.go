package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/reveal"
)

var (
	entriesFlag = flag.Int("entries", 0, "entries of the leak scan (default 100,000; 300,000 with -soak)")
	killsFlag   = flag.Int("kills", 0, "SIGKILLs during the leak scan (default 10; 30 with -soak)")
)

// TestLeakScanUnderCrashes runs the real binary on Redis with blobs, analytics and the reveal API
// over a mixed load with canaries, killing it with SIGKILL at random moments and restarting it.
// Then: the read_committed outputs hold every well-formed input exactly once and every malformed
// one is dead-lettered once; the Parquet files hold every row once; every token reveals through
// the API to its value; and no canary appears in any output topic, the dead-letter and audit
// topics, Redis, the blob directory, the Parquet rows, the logs, the data directory, the broker's
// kept state or veil's temporary directory.
func TestLeakScanUnderCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary under load")
	}
	n, kills := 100_000, 10
	if *soakFlag {
		n, kills = 300_000, 30
	}
	if *entriesFlag > 0 {
		n = *entriesFlag
	}
	if *killsFlag > 0 {
		kills = *killsFlag
	}
	veilBin, brokerBin := binaries(t)
	dir := t.TempDir()
	dataDir, tmpDir, brokerDir := filepath.Join(dir, "data"), filepath.Join(dir, "tmp"), filepath.Join(dir, "broker")
	logPath, brokerLog := filepath.Join(dir, "veil.log"), filepath.Join(dir, "broker.log")
	for _, d := range []string{tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	redisAddr := testsvc.Redis(t)
	b := startBroker(t, brokerBin, brokerDir, brokerLog)
	cfg := veilConfig{Brokers: b.addrs(), DataDir: dataDir, RedisAddr: redisAddr, Metrics: testsvc.FreeAddr(t), API: testsvc.FreeAddr(t), TxnID: "veil-soak"}
	cfgPath := filepath.Join(dir, "veil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := veilEnv(tmpDir)
	key := strings.TrimSpace(runVeilCmd(t, veilBin, env, "principals", "add", "-config", cfgPath, "--name", "soak", "--kind", "admin", "--apps", "*"))

	start := time.Now()
	ld := newLoad(7, n, 50)
	t.Logf("generated %d entries (%d malformed, %d canaries) in %v", n, ld.malformed, ld.canaries, time.Since(start).Round(time.Millisecond))

	prod, err := kgo.NewClient(kgo.SeedBrokers(b.addrs()...), kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedRecords(20000))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	start = time.Now()
	p := startVeil(t, veilBin, env, cfgPath, logPath)
	produced := make(chan error, 1)
	go func() {
		const batch = 5000
		for lo := 0; lo < len(ld.recs); lo += batch {
			if err := prod.ProduceSync(context.Background(), ld.recs[lo:min(lo+batch, len(ld.recs))]...).FirstErr(); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()
	// SIGKILL at random moments while the load is produced and worked through; each restart
	// must pick up where the last committed transaction ended.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	killed := 0
	for killed < kills {
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		if done, err := p.exited(); done {
			t.Fatalf("veil exited by itself: %v\n%s", err, warnings(logPath, 20))
		}
		p.kill()
		killed++
		p = startVeil(t, veilBin, env, cfgPath, logPath)
	}
	if err := <-produced; err != nil {
		t.Fatalf("producing the load: %v", err)
	}
	valid := len(ld.valid)
	out := consumeTopics(t, b.addrs(), 2*valid, 3*time.Minute, outputTopics()...)
	elapsed := time.Since(start)
	dl := consumeTopics(t, b.addrs(), ld.malformed, 30*time.Second, broker.DeadLetterTopic)
	if bad := exactlyOnce(t, out, ld.valid); bad > 0 {
		t.Fatalf("%d exactly-once violations among %d outputs (want %d); veil's warnings:\n%s", bad, len(out), 2*valid, warnings(logPath, 20))
	}
	dlSources := map[string]int{}
	for _, r := range dl {
		dlSources[header(r, "veil-source")]++
	}
	if len(dl) != ld.malformed || len(dlSources) != ld.malformed {
		t.Errorf("dead letters = %d (%d distinct sources), want %d", len(dl), len(dlSources), ld.malformed)
	}
	t.Logf("%d entries through %d SIGKILLs in %v (%.0f entries/s): %d outputs exactly once, %d dead letters",
		n, killed, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), len(out), len(dl))

	// Analytics: every well-formed entry's row once, after the sink caught up.
	analyticsDir := filepath.Join(dataDir, "analytics")
	var counts map[string]int
	waitFor(t, 90*time.Second, "every row in Parquet", func() bool {
		rows, _ := parquetRows(t, analyticsDir)
		counts = rowCounts(rows)
		return len(counts) >= valid
	})
	rows, _ := parquetRows(t, analyticsDir)
	counts = rowCounts(rows)
	for id, c := range counts {
		if c != 1 || !ld.valid[id] {
			t.Errorf("Parquet holds row %s %d times (input %v)", id, c, ld.valid[id])
		}
	}

	// Every token reveals to its value (each sealed value carries a canary) through the API,
	// which audits each request.
	// Blob entries' media tokens open to the media key, which the API refuses (denied) by design:
	// their media are fetched through signed links instead.
	var tokens []string
	media := map[string]bool{}
	for _, r := range out {
		if strings.HasPrefix(r.Topic, "encrypted.") {
			for _, tok := range tokensOf(r.Value) {
				tokens = append(tokens, tok)
				media[tok] = r.Topic == broker.EncryptedTopic("blob")
			}
		}
	}
	code, _ := readyz(cfg.Metrics)
	if code != http.StatusOK {
		waitReady(t, cfg.Metrics, 30*time.Second)
	}
	start = time.Now()
	requests, mediaToks := revealAll(t, "http://"+cfg.API, reveal.APIKey(key), tokens, media)
	linked := fetchMedia(t, "http://"+cfg.API, key, mediaToks[:min(len(mediaToks), 100)])
	requests += 2 * linked // a link is audited when issued and when fetched
	t.Logf("revealed %d tokens in %d API requests in %v; %d media through signed links", len(tokens)-len(mediaToks), requests, time.Since(start).Round(time.Millisecond), linked)
	p.stop(t)
	audit := consumeTopics(t, b.addrs(), requests, 30*time.Second, broker.AuditTopic)
	if len(audit) < requests {
		t.Errorf("audit records = %d, want at least %d (one per request)", len(audit), requests)
	}
	b.stop(t) // writes the broker's kept state, scanned below

	// The scan. Control first: the scanner sees the canaries in the raw input.
	marked := 0
	for _, r := range ld.recs {
		if hasMarker(r.Value) {
			marked++
		}
	}
	if marked < ld.malformed+valid/3 {
		t.Fatalf("the scanner sees canaries in %d of %d raw inputs, want at least %d", marked, n, ld.malformed+valid/3)
	}
	s := &scan{t: t}
	s.records(out)
	s.records(dl)
	s.records(audit)
	redisKeys := s.redisDump(context.Background(), redisAddr)
	parquetRowsScanned := s.parquet(analyticsDir)
	for _, root := range []string{filepath.Join(dataDir, "blobs"), dataDir, tmpDir, brokerDir, logPath, brokerLog} {
		s.tree(root)
	}
	t.Logf("leak scan: %d places, %d bytes (%d output/dead-letter/audit records, %d Redis keys, %d Parquet rows, blobs, logs, data, broker and temp directories): %d canaries found",
		s.places, s.bytes, len(out)+len(dl)+len(audit), redisKeys, parquetRowsScanned, s.found)
	if s.found > 0 {
		t.Fatalf("%d canaries found", s.found)
	}
}

// revealAll reveals tokens through the API, 256 a request on 4 connections, and checks that each
// opens to a value carrying a canary, or is a media token (which the API refuses). It returns the
// number of requests and the media tokens.
func revealAll(t *testing.T, url string, key reveal.APIKey, tokens []string, media map[string]bool) (int, []string) {
	t.Helper()
	c := &reveal.Client{BaseURL: url, Key: key, HTTPClient: &http.Client{Timeout: time.Minute}}
	var (
		mu        sync.Mutex
		requests  int
		failed    int
		mediaToks []string
		wg        sync.WaitGroup
	)
	work := make(chan []string)
	for range 4 {
		wg.Go(func() {
			for batch := range work {
				res, err := c.Reveal(context.Background(), batch)
				mu.Lock()
				requests++
				mu.Unlock()
				if err != nil {
					t.Errorf("revealing %d tokens: %v", len(batch), err)
					continue
				}
				for i, r := range res {
					if r.Status == reveal.StatusDenied && media[batch[i]] {
						mu.Lock()
						mediaToks = append(mediaToks, batch[i])
						mu.Unlock()
						continue
					}
					if r.Status != reveal.StatusOK || !hasMarker(decodeValue(r.Value)) {
						mu.Lock()
						if failed++; failed <= 5 {
							t.Errorf("token revealed %s, want ok with its canary", r.Status)
						}
						mu.Unlock()
					}
				}
			}
		})
	}
	for lo := 0; lo < len(tokens); lo += 256 {
		work <- tokens[lo:min(lo+256, len(tokens))]
	}
	close(work)
	wg.Wait()
	if failed > 0 {
		t.Fatalf("%d of %d tokens did not reveal", failed, len(tokens))
	}
	return requests, mediaToks
}

// fetchMedia asks for a signed link to each media token and fetches it: the media must open to
// bytes carrying their canary. It returns the number of media fetched.
func fetchMedia(t *testing.T, url, key string, tokens []string) int {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, tok := range tokens {
		body, _ := json.Marshal(map[string]string{"token": tok})
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/blobs/link", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("asking for a media link: %v", err)
		}
		var link struct {
			URL string `json:"url"`
		}
		err = json.NewDecoder(resp.Body).Decode(&link)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("POST /v1/blobs/link = %d (%v), want 200 with a link", resp.StatusCode, err)
		}
		resp, err = hc.Get(url + link.URL)
		if err != nil {
			t.Fatalf("fetching a media link: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !hasMarker(b) {
			t.Fatalf("GET media link = %d, %d bytes; want 200 and the media with their canary", resp.StatusCode, len(b))
		}
	}
	return len(tokens)
}

// decodeValue returns a revealed JSON value with base64 strings (inline media) also decoded, so
// the canary check sees both.
func decodeValue(v []byte) []byte {
	return append(bytes.Clone(v), []byte(b64decode(v))...)
}
