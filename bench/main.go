// Command bench is veil's end-to-end benchmark (make bench). It preloads a deterministic, realistic
// mix of entries on a Kafka-protocol broker running in its own process, then runs a pass-through
// copy and the full pipeline over the same records with the same transactions and batch settings,
// and reports throughput, CPU per entry and peak RSS of each phase. veil's own work is the
// pipeline's CPU time; the broker's CPU is in the child process and is not counted.
package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
	"github.com/veil-project/veil/sinks/store/badgerstore"
)

const defaultJSON = "bench/results/latest.json"

func main() {
	var (
		n          = flag.Int("entries", 200_000, "entries to preload and process")
		partitions = flag.Int("partitions", 3, "partitions per topic")
		maxPoll    = flag.Int("max-poll", 2000, "records per poll and transaction")
		out        = flag.String("json", defaultJSON, "where to write the results as JSON (empty: nowhere)")
		child      = flag.Bool("broker-child", false, "internal: run only the broker and print its address")
		cpuProf    = flag.String("cpuprofile", "", "write a CPU profile of the pipeline phase to this file")
		memProf    = flag.String("memprofile", "", "write an allocation profile of the pipeline phase to this file")
		rates      = flag.String("rates", "1000,10000,30000", "latency sweep: fixed rates in entries/s (empty: no sweep)")
		sweep      = flag.Bool("sweep", true, "latency sweep: after the fixed rates, raise the rate until p99 exceeds 100 ms")
		rateFor    = flag.Duration("rate-duration", 5*time.Second, "latency sweep: producing time per rate")
		linger     = flag.Duration("pipeline-linger", 0, "the pipeline producer's linger, as kafka.linger (default 0 like veil's; negative: the franz-go default, 10ms)")
		revealProf = flag.String("reveal-cpuprofile", "", "write a CPU profile of the 1-token reveal phase to this file (and of the 100-token phase to this file + .batch)")
		noAudit    = flag.Bool("reveal-no-audit", false, "experiment: reveal without writing audit records, to see what the rest of a request costs (never what veil does)")
		revealOnly = flag.Bool("reveal-only", false, "run only the reveal phases, on tokens of 20,000 sample entries sealed into the store")
		latOnly    = flag.Bool("latency-only", false, "run only the latency sweep (no preload, throughput, reveal or seal phases)")
	)
	flag.Parse()
	if *child {
		runBroker()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	profiles = profileFiles{cpu: *cpuProf, mem: *memProf}
	so := sweepOpts{Sweep: *sweep, MaxRate: 200_000, Duration: *rateFor, P99Limit: 100 * time.Millisecond, MaxPoll: *maxPoll}
	for _, f := range strings.Split(*rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.Atoi(f)
		if err != nil || r <= 0 {
			fmt.Fprintln(os.Stderr, "bench: -rates: not a positive number:", f)
			os.Exit(2)
		}
		so.Rates = append(so.Rates, r)
	}
	if *linger >= 0 {
		so.Opts = append(so.Opts, kgo.ProducerLinger(*linger))
	}
	revealCPUProfile, revealNoAudit = *revealProf, *noAudit
	if *revealOnly {
		if err := runRevealOnly(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *latOnly {
		if *out == defaultJSON {
			*out = "bench/results/latency.json" // latest.json keeps the last full run
		}
		if err := runLatencyOnly(ctx, so, *out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, *n, *partitions, *maxPoll, *out, so); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runBroker serves kfake until stdin closes (the parent exits).
func runBroker() {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Println(c.ListenAddrs()[0])
	_, _ = io.Copy(io.Discard, os.Stdin)
}

type phase struct {
	Name        string  `json:"name"`
	Entries     int     `json:"entries"`
	Seconds     float64 `json:"seconds"`
	EntriesPerS float64 `json:"entries_per_s"`
	MBPerS      float64 `json:"mb_per_s"`
	CPUUsPerE   float64 `json:"cpu_us_per_entry"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	PeakAnonMiB float64 `json:"peak_anon_rss_mib"` // sampled every 20 ms: RSS less file-backed (mapped) pages
	Sensitive   int     `json:"sensitive,omitempty"`
	KMSCalls    int64   `json:"kms_calls,omitempty"`
}

type results struct {
	When       time.Time      `json:"when"`
	GoVersion  string         `json:"go_version"`
	Cores      int            `json:"cores"`
	Entries    int            `json:"entries"`
	InputMB    float64        `json:"input_mb"`
	Partitions int            `json:"partitions"`
	MaxPoll    int            `json:"max_poll"`
	Phases     []phase        `json:"phases"`
	Ratio      float64        `json:"pipeline_over_passthrough"`
	OwnCPUUs   float64        `json:"veil_cpu_us_per_entry_over_passthrough"`
	SealUs     float64        `json:"seal_us_per_entry"`
	Reveal     *revealResult  `json:"reveal,omitempty"`
	Latency    *latencyResult `json:"latency,omitempty"`
	Targets    []target       `json:"targets"`
}

type target struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Goal  string `json:"goal"`
	Met   bool   `json:"met"`
}

func run(ctx context.Context, n, partitions, maxPoll int, out string, so sweepOpts) error {
	addr, stopBroker, err := startBrokerChild()
	if err != nil {
		return err
	}
	defer stopBroker()
	brokers := []string{addr}
	if err := createTopics(ctx, brokers, partitions); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "preloading %d entries on %s …\n", n, addr)
	inputBytes, err := preload(ctx, brokers, n)
	if err != nil {
		return err
	}
	res := results{When: time.Now().UTC(), GoVersion: runtime.Version(), Cores: runtime.NumCPU(), Entries: n,
		InputMB: float64(inputBytes) / 1e6, Partitions: partitions, MaxPoll: maxPoll}

	copyTopics := func(ledger string) (string, string) { return "bench.copy.a." + ledger, "bench.copy.b." + ledger }
	pt, err := runPhase(ctx, "pass-through", brokers, n, inputBytes, maxPoll, so.Opts, pipeline.PassThrough{Topics: copyTopics}, nil)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, pt)

	v, err := newVeil()
	if err != nil {
		return err
	}
	defer v.close()
	dir, st, sealer, tr := v.dir, v.st, v.sealer, v.tr
	pl, err := runPhase(ctx, "pipeline", brokers, n, inputBytes, maxPoll, so.Opts, tr, st)
	if err != nil {
		return err
	}
	pl.KMSCalls = v.kmsCalls.Load()
	res.Phases = append(res.Phases, pl)
	res.Ratio = pl.EntriesPerS / pt.EntriesPerS
	res.OwnCPUUs = pl.CPUUsPerE - pt.CPUUsPerE

	fmt.Fprintf(os.Stderr, "reveal: %d requests, %d clients …\n", revealRequests, revealClients)
	rv, err := benchReveal(ctx, dir, brokers, st, sealer, lastTokens.toks, revealRequests, revealCPUProfile)
	if err != nil {
		return err
	}
	res.Reveal = &rv
	fmt.Fprintln(os.Stderr, "seal micro-benchmark …")
	kek := make([]byte, 32)
	_, _ = crand.Read(kek)
	appKey, err := envelope.NewAppKey("bench-app", time.Now().Unix()/86400, kek)
	if err != nil {
		return err
	}
	res.SealUs = benchSeal(appKey)
	if len(so.Rates) > 0 {
		// The sweep starts from what -latency-only starts from: its own broker process and a
		// fresh store. The throughput phases' broker (gigabytes of records) and Badger store
		// (compacting its 600,000 items in the background) are gone first, so their leftovers
		// do not land in the sweep's tail latencies.
		v.close()
		stopBroker()
		lat, err := latencySweep(ctx, so)
		if err != nil {
			return err
		}
		res.Latency = &lat
	}
	res.Targets = targets(res, pt, pl)

	printTable(os.Stdout, res)
	if out != "" {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "results written to %s\n", out)
	}
	return nil
}

// veil is the pipeline's transform and store, as in production on the embedded defaults: the
// local KMS, a file key store, Badger.
type veil struct {
	dir      string
	kmsCalls *atomic.Int64
	kr       *keyring.Keyring
	st       *badgerstore.Store
	sealer   *envelope.Sealer
	tr       *pipeline.Transformer
}

func newVeil() (*veil, error) {
	dir, err := os.MkdirTemp("", "veil-bench-")
	if err != nil {
		return nil, err
	}
	v := &veil{dir: dir, kmsCalls: new(atomic.Int64)}
	fail := func(err error) (*veil, error) { v.close(); return nil, err }
	kms, err := kmslocal.Open(filepath.Join(dir, "root.key"))
	if err != nil {
		return fail(err)
	}
	ks, err := keyring.NewFileKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		return fail(err)
	}
	v.kr, err = keyring.New(keyring.Config{KMS: kms, KeyID: kmslocal.DefaultKeyID, Store: ks, OnKMSCall: func(string) { v.kmsCalls.Add(1) }})
	if err != nil {
		return fail(err)
	}
	v.st, err = badgerstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		return fail(err)
	}
	table, _ := ledgers.NewTable(nil)
	v.sealer = envelope.NewSealer(v.kr)
	v.tr = &pipeline.Transformer{Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: v.sealer, Store: v.st,
		Apps: func(string) (ledgers.AppSettings, bool) { return ledgers.DefaultAppSettings, true }}
	return v, nil
}

// close closes the store and the key ring and removes the data directory; it may be called again.
func (v *veil) close() {
	if v.st != nil {
		v.st.Close(context.Background())
		v.st = nil
	}
	if v.kr != nil {
		v.kr.Close(context.Background())
		v.kr = nil
	}
	os.RemoveAll(v.dir)
}

// processor returns what builds the latency sweep's pipeline: the production transform and
// store, the bench's batch size, and the sweep's extra Kafka options.
func (v *veil) processor(so sweepOpts) func([]string) (*pipeline.Processor, error) {
	return func(brokers []string) (*pipeline.Processor, error) {
		var names []string
		for _, l := range ledgers.All() {
			names = append(names, l.Name)
		}
		return pipeline.New(pipeline.Config{Brokers: brokers, Group: "bench-latency", TransactionID: "bench-latency",
			Ledgers: names, MaxPoll: so.MaxPoll, KafkaOpts: so.Opts, Transformer: v.tr, Store: v.st,
			Logger: slog.New(slog.DiscardHandler)})
	}
}

// latencySweep runs the latency sweep on a veil of its own (a fresh store; benchLatency starts
// the broker process), closed when the sweep is done.
func latencySweep(ctx context.Context, so sweepOpts) (latencyResult, error) {
	v, err := newVeil()
	if err != nil {
		return latencyResult{}, err
	}
	defer v.close()
	return benchLatency(ctx, so, v.processor(so))
}

// runLatencyOnly runs the latency sweep alone and prints it.
func runLatencyOnly(ctx context.Context, so sweepOpts, out string) error {
	lat, err := latencySweep(ctx, so)
	if err != nil {
		return err
	}
	printLatency(os.Stdout, lat)
	if out != "" {
		b, _ := json.MarshalIndent(struct {
			When    time.Time     `json:"when"`
			Latency latencyResult `json:"latency"`
		}{time.Now().UTC(), lat}, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// revealCPUProfile names the CPU profile of the 1-token reveal phase; empty: none.
var revealCPUProfile string

func printReveal(w io.Writer, r revealResult) {
	fmt.Fprintf(w, "reveal API: %d clients, %d requests of 1 token over TLS on loopback: p50 %.2f ms, p99 %.2f ms (%.0f req/s; %.1f µs CPU per request, server and clients)\n",
		r.Clients, r.Requests, r.P50Ms, r.P99Ms, r.PerS, r.CPUUsPerRequest)
	fmt.Fprintf(w, "  inside: audit write p50 %.2f ms, p99 %.2f ms; store read p50 %.3f ms, p99 %.3f ms; %d requests opened a new TLS connection\n",
		r.AuditP50Ms, r.AuditP99Ms, r.StoreP50Ms, r.StoreP99Ms, r.NewConns)
	fmt.Fprintf(w, "  %d requests of %d tokens: p50 %.2f ms, p99 %.2f ms, %.0f tokens/s (%.1f µs CPU per token, server and clients)\n",
		r.BatchRequests, r.BatchSize, r.BatchP50Ms, r.BatchP99Ms, r.TokensPerS, r.BatchCPUUsPerToken)
}

// runRevealOnly seals 20,000 sample entries into a fresh store (Transform and Put, as the
// pipeline does, without Kafka in between), then runs the reveal phases on their tokens with the
// audit going to a broker process of its own.
func runRevealOnly(ctx context.Context) error {
	v, err := newVeil()
	if err != nil {
		return err
	}
	defer v.close()
	addr, stopBroker, err := startBrokerChild()
	if err != nil {
		return err
	}
	defer stopBroker()
	brokers := []string{addr}
	if err := createTopics(ctx, brokers, 3); err != nil {
		return err
	}
	gen := sample.New(sample.Options{Seed: 2026, Now: time.Now})
	toks := &tokenSample{max: 2000}
	var items []store.Item
	for i := range 20_000 {
		e := gen.Next()
		out, err := v.tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic(e.Ledger), Offset: int64(i)}, e.Key, e.Value)
		if err != nil {
			return err
		}
		if out.Item != nil {
			items = append(items, *out.Item)
			toks.add(out.Encrypted.Value)
		}
	}
	if err := v.st.Put(ctx, items); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "reveal: %d requests, %d clients …\n", revealRequests, revealClients)
	rv, err := benchReveal(ctx, v.dir, brokers, v.st, v.sealer, toks.toks, revealRequests, revealCPUProfile)
	if err != nil {
		return err
	}
	fmt.Printf("load average %s\n", loadAverage())
	printReveal(os.Stdout, rv)
	return nil
}

func startBrokerChild() (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "-broker-child")
	// GOMEMLIMIT set for the bench is meant for veil's side: the broker holds every record in
	// memory, and a limit below that would make its collector run without pause.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting broker process: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return "", nil, fmt.Errorf("reading broker address: %w", err)
	}
	var once sync.Once
	return strings.TrimSpace(line), func() { once.Do(func() { stdin.Close(); _ = cmd.Wait() }) }, nil
}

func createTopics(ctx context.Context, brokers []string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var lt []broker.LedgerTTL
	var extra []string
	for _, l := range ledgers.All() {
		lt = append(lt, broker.LedgerTTL{Name: l.Name, TTL: l.TTL})
		extra = append(extra, "bench.copy.a."+l.Name, "bench.copy.b."+l.Name)
	}
	if err := broker.EnsureTopics(ctx, adm, lt, partitions); err != nil {
		return err
	}
	_, err = adm.CreateTopics(ctx, int32(partitions), 1, nil, extra...)
	return err
}

func preload(ctx context.Context, brokers []string, n int) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	gen := sample.New(sample.Options{Seed: 2026, Now: time.Now})
	var total int64
	var failed atomic.Value
	for range n {
		e := gen.Next()
		total += int64(len(e.Value))
		cl.Produce(ctx, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	if err, _ := failed.Load().(error); err != nil {
		return 0, fmt.Errorf("preloading: %w", err)
	}
	return total, nil
}

// counter is an Observer counting committed entries.
type counter struct {
	done      atomic.Int64
	sensitive atomic.Int64
	tokens    *tokenSample // nil: keep none
}

func (c *counter) Batch(outs []pipeline.Output, committed bool) {
	if !committed {
		return
	}
	s := 0
	for i := range outs {
		if outs[i].Sensitive {
			s++
		}
	}
	c.sensitive.Add(int64(s))
	if c.tokens != nil {
		for i := range outs {
			if outs[i].Encrypted != nil && outs[i].Sensitive {
				c.tokens.add(outs[i].Encrypted.Value)
			}
		}
	}
	c.done.Add(int64(len(outs)))
}
func (c *counter) Dependency(string, bool) {}

func runPhase(ctx context.Context, name string, brokers []string, n int, inputBytes int64, maxPoll int, opts []kgo.Opt, stage pipeline.Stage, st pipelineStore) (phase, error) {
	var ledgerNames []string
	for _, l := range ledgers.All() {
		ledgerNames = append(ledgerNames, l.Name)
	}
	cnt := &counter{}
	if name == "pipeline" {
		lastTokens = &tokenSample{max: 2000}
		cnt.tokens = lastTokens
	}
	cfg := pipeline.Config{Brokers: brokers, Group: "bench-" + name, TransactionID: "bench-" + name, Ledgers: ledgerNames,
		MaxPoll: maxPoll, KafkaOpts: opts, Transformer: stage, Observer: cnt, Logger: slog.New(slog.DiscardHandler)}
	if st != nil {
		cfg.Store = st
	} else {
		cfg.Store = nopStore{}
	}
	p, err := pipeline.New(cfg)
	if err != nil {
		return phase{}, err
	}
	defer p.Close(context.WithoutCancel(ctx))
	debug.FreeOSMemory() // what the preload or the previous phase left is not this phase's
	stopProfiles := func() error { return nil }
	if name == "pipeline" {
		if stopProfiles, err = startProfiles(profiles); err != nil {
			return phase{}, err
		}
	}
	resetPeakRSS()
	cpu0 := cpuTime()
	start := time.Now()
	pctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- p.Run(pctx) }()
	last := time.Now()
	var peakAnon int64
	for cnt.done.Load() < int64(n) {
		peakAnon = max(peakAnon, anonRSS())
		select {
		case err := <-errc:
			cancel()
			return phase{}, fmt.Errorf("%s stopped early: %v", name, err)
		case <-ctx.Done():
			cancel()
			return phase{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(last) > time.Second {
			last = time.Now()
			d := cnt.done.Load()
			fmt.Fprintf(os.Stderr, "  %s: %d/%d (%.0f/s)\n", name, d, n, float64(d)/time.Since(start).Seconds())
		}
	}
	elapsed := time.Since(start).Seconds()
	cpu := cpuTime() - cpu0
	peak := peakRSS()
	cancel()
	<-errc
	if err := stopProfiles(); err != nil {
		return phase{}, err
	}
	return phase{
		Name: name, Entries: n, Seconds: elapsed, EntriesPerS: float64(n) / elapsed,
		MBPerS: float64(inputBytes) / 1e6 / elapsed, CPUUsPerE: cpu.Seconds() * 1e6 / float64(n),
		PeakRSSMiB: float64(peak) / (1 << 20), PeakAnonMiB: float64(peakAnon) / (1 << 20), Sensitive: int(cnt.sensitive.Load()),
	}, nil
}

func printTable(w io.Writer, r results) {
	fmt.Fprintf(w, "veil bench: %d entries (%.1f MB), %d partitions, max poll %d, %d cores, %s\n\n", r.Entries, r.InputMB, r.Partitions, r.MaxPoll, r.Cores, r.GoVersion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tentries/s\tMB/s\tCPU µs/entry\tpeak RSS MiB\tpeak anon MiB\tsensitive\tKMS calls\t")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%.0f\t%.0f\t%d\t%d\t\n", p.Name, p.EntriesPerS, p.MBPerS, p.CPUUsPerE, p.PeakRSSMiB, p.PeakAnonMiB, p.Sensitive, p.KMSCalls)
	}
	tw.Flush()
	fmt.Fprintf(w, "\npipeline / pass-through throughput: %.2f\nveil's own CPU per entry (pipeline − pass-through): %.1f µs\n", r.Ratio, r.OwnCPUUs)
	fmt.Fprintf(w, "seal: %.2f µs per entry (3 fields, tokens encoded)\n", r.SealUs)
	if r.Reveal != nil {
		printReveal(w, *r.Reveal)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tgoal\tmet")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", t.Name, t.Value, t.Goal, t.Met)
	}
	tw.Flush()
	if r.Latency != nil {
		fmt.Fprintln(w)
		printLatency(w, *r.Latency)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets the kernel's high-water mark of this process's RSS (Linux ≥ 4.0), so each
// phase reports its own peak.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSS() int64 { return procStatus("VmHWM:") }

// anonRSS is the resident memory that is not file-backed: the heap, stacks and anonymous maps,
// without the pages of memory-mapped files (Badger's tables and value log), which are page cache
// the kernel can reclaim.
func anonRSS() int64 { return procStatus("RssAnon:") + procStatus("RssShmem:") }

func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// revealRequests is how many reveal requests the reveal phase makes.
const revealRequests = 20_000

// lastTokens holds tokens from the pipeline phase's encrypted outputs.
var lastTokens = &tokenSample{}

// targets are the goals of issue 15 (performance, round 2), met or not.
func targets(r results, pt, pl phase) []target {
	f := func(format string, v ...any) string { return fmt.Sprintf(format, v...) }
	ts := []target{
		{"pipeline / pass-through throughput", f("%.2f", r.Ratio), "≥ 0.75", r.Ratio >= 0.75},
		{"veil CPU per entry", f("%.1f µs", r.OwnCPUUs), "≤ 7 µs", r.OwnCPUUs <= 7},
		{"seal per entry", f("%.2f µs", r.SealUs), "≤ 1.2 µs", r.SealUs <= 1.2},
		{"pipeline peak anonymous RSS", f("%.0f MiB (RSS %.0f)", pl.PeakAnonMiB, pl.PeakRSSMiB), "≤ 200 MiB", pl.PeakAnonMiB <= 200},
		{"KMS calls", f("%d for %d entries", pl.KMSCalls, pl.Entries), "apps × periods", pl.KMSCalls <= 2*int64(len(sampleApps))},
	}
	if r.Reveal != nil {
		ts = append(ts, target{"reveal p99 at 32 clients", f("%.2f ms", r.Reveal.P99Ms), "≤ 2 ms", r.Reveal.P99Ms <= 2},
			target{"reveal, 100-token requests", f("%.0f tokens/s", r.Reveal.TokensPerS), "≥ 50,000 tokens/s", r.Reveal.TokensPerS >= 50_000})
	}
	if r.Latency != nil {
		for _, g := range []struct {
			rate  int
			limit float64
		}{{10_000, 15}, {30_000, 25}} {
			for _, x := range r.Latency.Rates {
				if x.Rate == g.rate {
					ts = append(ts, target{f("latency p99 at %d entries/s", g.rate), f("%.1f ms", x.P99Ms), f("≤ %.0f ms", g.limit), x.P99Ms <= g.limit && x.Lost == 0})
				}
			}
		}
	}
	return ts
}

// sampleApps are the apps the sample generator uses by default.
var sampleApps = []string{"app-1", "app-2"}
