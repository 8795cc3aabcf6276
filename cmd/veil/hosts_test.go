package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/store"
)

var soakHosts = flag.Bool("soak", false, "run the long variants (make soak): 20,000 entries over several hosts")

// propagationBound is what issue 11 promises: a rotation or an erasure done on any process takes
// effect on every running process within it.
const propagationBound = 10 * time.Second

// TestSeveralHosts is the proof of issue 11: three `veil run` processes (the real binary) with
// their own data dirs, on one broker, one shared store (Redis, then DynamoDB on dynalite) and one
// KMS key (local-kms, a real KMS emulator). It checks that every token sealed by any process
// reveals through every process's API, that a rotation and an erasure done once reach every
// process within propagationBound, that a SIGKILLed process loses and duplicates nothing, and that
// the KMS generates one data key per (app, version), not one per process. The figures go to the
// test log.
func TestSeveralHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three real processes")
	}
	bin := buildVeil(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	lk := testsvc.StartLocalKMS(t)
	n := 2000
	if *soakHosts {
		n = 20000
	}
	t.Run("redis", func(t *testing.T) { // default keys: 15-minute windows
		addr := testsvc.Redis(t)
		severalHosts(t, bin, lk, fmt.Sprintf("store:\n  kind: redis\n  redis: {addr: %q}\n", addr), n)
	})
	t.Run("redis with 24 h period keys", func(t *testing.T) {
		addr := testsvc.Redis(t)
		severalHosts(t, bin, lk, fmt.Sprintf("store:\n  kind: redis\n  redis: {addr: %q}\nkeys: {window: 0s}\n", addr), n/4)
	})
	t.Run("dynamodb", func(t *testing.T) {
		ep := testsvc.Dynalite(t)
		severalHosts(t, bin, lk, fmt.Sprintf("store:\n  kind: dynamodb\n  dynamodb: {table: veil, region: eu-west-1, endpoint: %q, create_table: true}\n", ep), n/4)
	})
}

type host struct {
	name, cfg, data, api, log string
	p                         *veilProc
}

// arrival is one output record and when the test's consumer read it.
type arrival struct {
	at  time.Time
	rec *kgo.Record
}

// collector reads every encrypted and redacted topic (read_committed) from the start.
type collector struct {
	mu   sync.Mutex
	recs []arrival
}

func (c *collector) snapshot() []arrival {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recs)
}

func collect(t *testing.T, addrs []string) *collector {
	var topics []string
	for _, l := range ledgers.All() {
		topics = append(topics, broker.EncryptedTopic(l.Name), broker.RedactedTopic(l.Name))
	}
	cl := testkit.Reader(t, addrs, topics)
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			c.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { c.recs = append(c.recs, arrival{now, r}) })
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return c
}

func source(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == pipeline.HeaderSource {
			return string(h.Value)
		}
	}
	return ""
}

var tokenRE = regexp.MustCompile(`veil:v1:[A-Za-z0-9_-]+`)

// owners maps "topic/partition" of the raw topics to the index of the process consuming it, from
// the group's assignment (instance id veil-host-<i>, static across restarts).
func owners(t *testing.T, addrs []string) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	gs, err := kadm.NewClient(cl).DescribeGroups(context.Background(), "veil")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range gs["veil"].Members {
		var i int
		if m.InstanceID == nil {
			continue
		}
		if _, err := fmt.Sscanf(*m.InstanceID, "veil-host-%d", &i); err != nil {
			continue
		}
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, tp := range a.Topics {
			for _, p := range tp.Partitions {
				out[fmt.Sprintf("%s/%d", tp.Topic, p)] = i
			}
		}
	}
	return out
}

// ownerOf returns the process that consumed the input of an output record.
func ownerOf(own map[string]int, r *kgo.Record) int {
	src := source(r)
	if i := strings.LastIndexByte(src, '/'); i > 0 {
		if o, ok := own[src[:i]]; ok {
			return o
		}
	}
	return -1
}

func severalHosts(t *testing.T, bin string, lk *testsvc.LocalKMS, storeYAML string, n int) {
	ctx := context.Background()
	gen0 := lk.Calls("GenerateDataKey")
	addrs := externalBroker(t)
	dir := t.TempDir()
	principals := filepath.Join(dir, "shared", "principals.yaml")
	hosts := make([]*host, 3)
	for i := range hosts {
		h := &host{
			name: string(rune('A' + i)), data: filepath.Join(dir, fmt.Sprintf("data-%d", i)), api: testsvc.FreeAddr(t),
			cfg: filepath.Join(dir, fmt.Sprintf("veil-%d.yaml", i)), log: filepath.Join(dir, fmt.Sprintf("veil-%d.log", i)),
		}
		yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  transactional_id: veil-host-%d
data_dir: %s
kms:
  provider: aws
  key_id: %s
  aws: {region: %s, endpoint: %q}
%sapps: {app-1: {}, app-2: {}}
analytics: {enabled: false}
listen: {api: %q, metrics: ""}
dev: {plain_http: true}
reveal: {principals_file: %q, rate_per_second: 100000, burst: 100000}
blob: {dir: %q}
`, addrs[0], i, h.data, lk.Alias, lk.Region, lk.Endpoint, storeYAML, h.api, principals, filepath.Join(dir, "shared", "blobs"))
		if i == 0 {
			// Only A delivers to the integration: it must open what B and C sealed. Every
			// ledger but blob, so that every process owns some of the integration's input
			// partitions whatever the group assigns after C's restart (with event alone, all
			// three raw.event partitions could end with A and B: a flake, not a finding).
			yaml += "integrations:\n  desk: {kind: support, apps: [app-1], ledgers: [event, bot, http, ws, log, presence, thread, user], topic: out.desk}\n"
		}
		if err := os.WriteFile(h.cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	cli := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runMain(args, &out, &errb); code != exitOK {
			t.Fatalf("veil %s = exit %d: %s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	// One principal, added once, for every process (a shared principals file).
	key := reveal.APIKey(strings.TrimSpace(cli("principals", "add", "-config", hosts[0].cfg, "--name", "ops", "--kind", "admin", "--apps", "*")))

	for _, h := range hosts {
		h.p = startVeil(t, bin, h.cfg, h.log)
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			h.p.stop(t)
		}
	})
	revealVia := func(h *host, toks []string) ([]reveal.Result, error) {
		c := reveal.Client{BaseURL: "http://" + h.api, Key: key}
		var out []reveal.Result
		for len(toks) > 0 {
			k := min(len(toks), 200)
			rs, err := c.Reveal(ctx, toks[:k])
			if err != nil {
				return nil, err
			}
			out, toks = append(out, rs...), toks[k:]
		}
		return out, nil
	}
	for _, h := range hosts {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := revealVia(h, []string{"veil:v1:x"}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("host %s's reveal API never answered; its warnings:\n%s", h.name, warnings(h.log, 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	col := collect(t, addrs)
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	sent := map[string]time.Time{} // source → when produced
	var sentMu sync.Mutex
	produce := func(recs []*kgo.Record) {
		t.Helper()
		at := time.Now()
		res := prod.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		sentMu.Lock()
		for _, r := range res {
			sent[fmt.Sprintf("%s/%d/%d", r.Record.Topic, r.Record.Partition, r.Record.Offset)] = at
		}
		sentMu.Unlock()
	}
	gen := sample.New(sample.Options{Seed: 11})
	entries := func(n int, apps ...string) []*kgo.Record {
		g := gen
		if len(apps) > 0 {
			g = sample.New(sample.Options{Seed: uint64(time.Now().UnixNano()), Apps: apps})
		}
		var out []*kgo.Record
		for range n {
			e := g.Next()
			out = append(out, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
		}
		return out
	}
	// waitOutputs waits until every produced source has both its outputs.
	waitOutputs := func(what string, timeout time.Duration) []arrival {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			recs := col.snapshot()
			have := map[string]int{}
			for _, a := range recs {
				have[source(a.rec)]++
			}
			sentMu.Lock()
			missing := 0
			for src := range sent {
				if have[src] < 2 {
					missing++
				}
			}
			sentMu.Unlock()
			if missing == 0 {
				return recs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d inputs still without both outputs after %s; warnings of A:\n%s\nB:\n%s\nC:\n%s", what, missing, timeout,
					warnings(hosts[0].log, 10), warnings(hosts[1].log, 10), warnings(hosts[2].log, 10))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Phase 1: n entries over every ledger, host C SIGKILLed half-way and restarted a second later.
	const chunks = 20
	recs := entries(n)
	var killAt time.Time
	for i := range chunks {
		produce(recs[i*n/chunks : (i+1)*n/chunks])
		if i == chunks/2 {
			hosts[2].p.kill()
			killAt = time.Now()
			time.Sleep(time.Second)
			hosts[2].p = startVeil(t, bin, hosts[2].cfg, hosts[2].log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := waitOutputs("after the SIGKILL", 120*time.Second)
	// Exactly once, read_committed, per output kind and source.
	seen := map[string]int{}
	for _, a := range out {
		seen[a.rec.Topic[:strings.IndexByte(a.rec.Topic, '.')]+"|"+source(a.rec)]++
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s appears %d times", k, c)
		}
	}
	if len(seen) != 2*n {
		t.Fatalf("distinct outputs = %d, want %d", len(seen), 2*n)
	}
	var stall time.Duration
	for _, a := range out {
		if at, ok := sent[source(a.rec)]; ok && !at.Before(killAt.Add(-time.Second)) {
			stall = max(stall, a.at.Sub(at))
		}
	}
	if dl := consumeTopics(t, addrs, 0, time.Second, broker.DeadLetterTopic); len(dl) != 0 {
		t.Errorf("%d sample entries dead-lettered, first: %.200s", len(dl), dl[0].Value)
	}

	// The reveal matrix: tokens grouped by the process that sealed them (the owner of their
	// input's partition), revealed through every process.
	type tokenOf struct {
		tok, app string
	}
	own := owners(t, addrs)
	byProducer := map[int][]tokenOf{}
	for _, a := range out {
		// Blob tokens open to media keys, which the API never hands out (denied): media go
		// through signed links. Every other token must reveal.
		if !strings.HasPrefix(a.rec.Topic, "encrypted.") || a.rec.Topic == broker.EncryptedTopic("blob") {
			continue
		}
		var e struct {
			App string `json:"app_id"`
		}
		_ = json.Unmarshal(a.rec.Value, &e)
		pid := ownerOf(own, a.rec)
		for _, tok := range tokenRE.FindAllString(string(a.rec.Value), -1) {
			byProducer[pid] = append(byProducer[pid], tokenOf{tok, e.App})
		}
	}
	producers := []int{0, 1, 2}
	for _, i := range producers {
		if len(byProducer[i]) == 0 {
			t.Fatalf("process %s sealed no token; partitions by process: %v", hosts[i].name, own)
		}
	}
	matrix := &strings.Builder{}
	fmt.Fprintf(matrix, "sealed by \\ revealed via: A B C\n")
	for i, pid := range producers {
		toks := byProducer[pid]
		if len(toks) > 60 {
			toks = toks[:60]
		}
		var list []string
		for _, tk := range toks {
			list = append(list, tk.tok)
		}
		fmt.Fprintf(matrix, "  process %s (%d tokens):", hosts[i].name, len(list))
		for _, h := range hosts {
			rs, err := revealVia(h, list)
			if err != nil {
				t.Fatalf("reveal via %s: %v", h.name, err)
			}
			ok := 0
			for _, r := range rs {
				if r.Status == reveal.StatusOK {
					ok++
				}
			}
			if ok != len(rs) {
				t.Errorf("tokens sealed by process %s revealed via %s: %d of %d ok, want all", hosts[i].name, h.name, ok, len(rs))
			}
			fmt.Fprintf(matrix, " %d/%d ok", ok, len(rs))
		}
		matrix.WriteString("\n")
	}

	cfg0, err := config.Load(hosts[0].cfg, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, cfg0, newLogger(io.Discard, "error"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	versionOf := func(app, tok string) int64 {
		t.Helper()
		tk, err := envelope.ParseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		it, err := st.Get(ctx, app, tk.Ref)
		if err != nil {
			t.Fatalf("store row of a token of %s: %v", app, err)
		}
		var rec envelope.Record
		if err := rec.UnmarshalBinary(it.Value); err != nil {
			t.Fatal(err)
		}
		return rec.Period
	}
	firstToken := func(a arrival) (string, string, bool) {
		var e struct {
			App string `json:"app_id"`
		}
		_ = json.Unmarshal(a.rec.Value, &e)
		tok := tokenRE.FindString(string(a.rec.Value))
		return e.App, tok, tok != "" && strings.HasPrefix(a.rec.Topic, "encrypted.")
	}

	// Egress on A opens the tokens B and C sealed: every app-1 entry (blob aside) reaches the
	// integration with its values, no token and no redacted view left.
	var want int
	for _, a := range out {
		if app, _, ok := firstToken(a); ok && app == "app-1" && a.rec.Topic != broker.EncryptedTopic("blob") {
			want++
		}
	}
	delivered := map[int]int{}
	for _, r := range consumeTopics(t, addrs, want, 60*time.Second, "out.desk") {
		if bytes.Contains(r.Value, []byte("veil:v1:")) || bytes.Contains(r.Value, []byte(envelope.Redacted)) {
			t.Errorf("the integration on A received a token or a redacted value: %.200s", r.Value)
		}
		delivered[ownerOf(own, r)]++
	}
	if delivered[1] == 0 || delivered[2] == 0 {
		t.Errorf("egress on A delivered %v entries by sealing process, want some sealed by B and C", delivered)
	}

	// A media link issued by one process streams the media through every other (one link key
	// for the deployment; the blob store is shared).
	var blobTok string
	for _, a := range out {
		if a.rec.Topic == broker.EncryptedTopic("blob") {
			var e struct {
				Data struct {
					Content string `json:"content"`
				} `json:"data"`
			}
			if json.Unmarshal(a.rec.Value, &e) == nil && strings.HasPrefix(e.Data.Content, "veil:v1:") {
				blobTok = e.Data.Content
				break
			}
		}
	}
	links := &strings.Builder{}
	if blobTok == "" {
		t.Errorf("no blob token to make a link of")
	}
	for i, issuer := range hosts {
		if blobTok == "" {
			break
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+issuer.api+"/v1/blobs/link", strings.NewReader(`{"token":"`+blobTok+`"}`))
		req.Header.Set("Authorization", "Bearer "+string(key))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var lr struct {
			URL string `json:"url"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&lr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || lr.URL == "" {
			t.Errorf("link from %s = %d", issuer.name, resp.StatusCode)
			continue
		}
		other := hosts[(i+1)%len(hosts)]
		g, err := http.Get("http://" + other.api + lr.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(g.Body)
		g.Body.Close()
		if g.StatusCode != http.StatusOK || string(body) != "hello world" {
			t.Errorf("link issued by %s fetched via %s = %d, %d bytes, want 200 and the media", issuer.name, other.name, g.StatusCode, len(body))
		}
		fmt.Fprintf(links, " issued by %s, fetched via %s: %d;", issuer.name, other.name, g.StatusCode)
	}

	// Rotation on one process (the CLI, as an operator runs it beside host A): every process
	// seals app-1 under the new generation within the bound.
	var oldV int64
	for _, a := range out {
		if app, tok, ok := firstToken(a); ok && app == "app-1" {
			oldV = max(oldV, versionOf(app, tok))
		}
	}
	// Traffic flows before, during and after the rotation, so every process is somewhere in its
	// poll interval when the rotation lands (an idle process would read the counter on its very
	// next call and show no lag at all).
	for warm := time.Now().Add(2500 * time.Millisecond); time.Now().Before(warm); {
		produce(entries(45, "app-1"))
		time.Sleep(200 * time.Millisecond)
	}
	rotated := len(col.snapshot())
	rotStart := time.Now()
	rotErr := make(chan error, 1)
	go func() {
		var out, errb bytes.Buffer
		if code := runMain([]string{"keys", "rotate", "-config", hosts[0].cfg, "--app", "app-1"}, &out, &errb); code != exitOK {
			rotErr <- fmt.Errorf("veil keys rotate = exit %d: %s", code, errb.String())
		}
		close(rotErr)
	}()
	lastOld := map[int]time.Time{}
	newSeen := map[int]int{}
	for deadline := time.Now().Add(3 * propagationBound); ; {
		produce(entries(45, "app-1"))
		time.Sleep(200 * time.Millisecond)
		now := col.snapshot()
		for _, a := range now[rotated:] {
			app, tok, ok := firstToken(a)
			if !ok || app != "app-1" {
				continue
			}
			sentMu.Lock()
			at := sent[source(a.rec)]
			sentMu.Unlock()
			p := ownerOf(own, a.rec)
			if v := versionOf(app, tok); v > oldV {
				newSeen[p]++
			} else if at.After(rotStart) && at.After(lastOld[p]) {
				lastOld[p] = at
			}
		}
		rotated = len(now)
		done := len(newSeen) == 3
		for _, c := range newSeen {
			done = done && c >= 3
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	if err := <-rotErr; err != nil {
		t.Fatal(err)
	}
	rotation := &strings.Builder{}
	for i, pid := range producers {
		lag := time.Duration(0)
		last := "no old-generation seal after it began"
		if at, ok := lastOld[pid]; ok {
			lag = at.Sub(rotStart)
			last = fmt.Sprintf("last old-generation seal of an input sent %v after it began", lag.Round(time.Millisecond))
		}
		fmt.Fprintf(rotation, " process %s: %s, %d new-generation seals;", hosts[i].name, last, newSeen[pid])
		if lag > propagationBound || newSeen[pid] == 0 {
			t.Errorf("process %s: sealed under the old generation %v after the rotation (bound %v), %d under the new one", hosts[i].name, lag, propagationBound, newSeen[pid])
		}
	}

	// Erasure on one process: every process answers expired for app-2 within the bound, even for
	// store rows restored from a backup (so it is the keys that are gone, not just the rows).
	var erasedToks []string
	var backup []store.Item
	erasedVersions := map[int64]bool{}
	for _, pid := range producers {
		k := 0
		for _, tk := range byProducer[pid] {
			if tk.app != "app-2" || k == 10 {
				continue
			}
			t2, _ := envelope.ParseToken(tk.tok)
			it, err := st.Get(ctx, "app-2", t2.Ref)
			if err != nil {
				continue
			}
			erasedVersions[versionOf("app-2", tk.tok)] = true
			backup = append(backup, it)
			erasedToks = append(erasedToks, tk.tok)
			k++
		}
	}
	if len(erasedToks) == 0 {
		t.Fatal("no token of app-2 to erase")
	}
	// Every process opens them before the erasure (and so holds the keys in its cache).
	for _, h := range hosts {
		rs, err := revealVia(h, erasedToks)
		if err != nil || rs[0].Status != reveal.StatusOK {
			t.Fatalf("before erasure, reveal via %s = %v, %v", h.name, rs, err)
		}
	}
	eraseStart := time.Now()
	cli("keys", "erase", "-config", hosts[0].cfg, "--app", "app-2", "--yes")
	eraseTook := time.Since(eraseStart)
	if err := st.Put(ctx, backup); err != nil {
		t.Fatalf("restoring app-2's rows: %v", err)
	}
	erasure := &strings.Builder{}
	for _, h := range hosts {
		deadline := time.Now().Add(3 * propagationBound)
		for {
			rs, err := revealVia(h, erasedToks)
			expired := err == nil
			for _, r := range rs {
				expired = expired && r.Status == reveal.StatusExpired
			}
			if expired {
				took := time.Since(eraseStart)
				fmt.Fprintf(erasure, " %s: all %d expired %v after the erasure began;", h.name, len(rs), took.Round(time.Millisecond))
				if took > propagationBound {
					t.Errorf("host %s answered expired for erased app-2 only %v after the erasure (bound %v)", h.name, took, propagationBound)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("host %s still opens erased app-2 data %v after the erasure", h.name, 3*propagationBound)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// New app-2 data is sealed under fresh keys, never an erased one, and opens everywhere.
	before := len(col.snapshot())
	produce(entries(60, "app-2"))
	after := waitOutputs("after the erasure", 60*time.Second)
	var fresh []string
	for _, a := range after[before:] {
		if app, tok, ok := firstToken(a); ok && app == "app-2" {
			if erasedVersions[versionOf(app, tok)] {
				t.Errorf("a process sealed app-2 under an erased key version after the erasure")
			}
			if a.rec.Topic != broker.EncryptedTopic("blob") {
				fresh = append(fresh, tok)
			}
		}
	}
	for _, h := range hosts {
		rs, err := revealVia(h, fresh)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Status != reveal.StatusOK {
				t.Errorf("post-erasure app-2 token via %s = %s, want ok", h.name, r.Status)
				break
			}
		}
	}

	// KMS: one GenerateDataKey per (app, version) of the deployment, plus its one shared secret
	// (the media-link key), however many processes asked.
	// (With key windows a prefetch of the next window may be in flight: its claim is not listed
	// until its key is stored, so look again for a few seconds.)
	var rows []keyInfoJSON
	var generated int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		rows = nil
		if err := json.Unmarshal([]byte(cli("keys", "list", "-config", hosts[0].cfg, "--json")), &rows); err != nil {
			t.Fatal(err)
		}
		generated = lk.Calls("GenerateDataKey") - gen0
		if generated == len(rows)+1 || time.Now().After(deadline) {
			break
		}
	}
	if generated != len(rows)+1 {
		t.Errorf("KMS GenerateDataKey calls = %d, want %d (one per stored key version, erased ones included, + the media-link key)", generated, len(rows)+1)
	}
	var states []string
	for _, r := range rows {
		name := fmt.Sprintf("%s/g%d:%s", r.App, r.Generation, r.State)
		if !r.WindowEnd.IsZero() {
			name = fmt.Sprintf("%s/window-%s/g%d:%s", r.App, r.WindowEnd.Format("15:04"), r.Generation, r.State)
		}
		states = append(states, name)
	}
	t.Logf("%d entries over 3 processes; SIGKILL of C + restart after 1s: every input exactly once (%d outputs), stall %v", n, len(seen), stall.Round(time.Millisecond))
	t.Logf("reveal matrix (60 tokens per sealing process, sample):\n%s", matrix)
	t.Logf("egress on A (integration desk, app-1, every ledger but blob): entries delivered with every value opened, by sealing process (0=A, 1=B, 2=C) %v; media links:%s", delivered, links)
	t.Logf("rotation (keys rotate on one process):%s", rotation)
	t.Logf("erasure (keys erase took %v; rows restored from backup after it):%s", eraseTook.Round(time.Millisecond), erasure)
	t.Logf("KMS: %d GenerateDataKey for %d key versions %v + the media-link key; %d Decrypt", generated, len(rows), states, lk.Calls("Decrypt"))
}
