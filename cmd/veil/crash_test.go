package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
)

// buildVeil builds the real binary into the test's temp dir (each call links it again; the Go
// build cache keeps that to a few seconds for the five tests that run the binary).
func buildVeil(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "veil")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building veil: %v\n%s", err, out)
	}
	return bin
}

// externalBroker starts kfake in the test process (so it survives veil being killed) and creates
// veil's topics with the ledger retention.
func externalBroker(t *testing.T) []string {
	t.Helper()
	c := testkit.Kafka(t)
	cl := testkit.Client(t, c)
	var lt []broker.LedgerTTL
	for _, l := range ledgers.All() {
		lt = append(lt, broker.LedgerTTL{Name: l.Name, TTL: l.TTL})
	}
	if err := broker.EnsureTopics(context.Background(), kadm.NewClient(cl), lt, 3); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

type veilProc struct {
	cmd    *exec.Cmd
	stderr *os.File
	log    string
}

func startVeil(t *testing.T, bin, cfgPath, logPath string) *veilProc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &veilProc{cmd: cmd, stderr: f, log: logPath}
}

func (p *veilProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.stderr.Close()
}

func (p *veilProc) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("veil exited after SIGTERM with %v", err)
		}
	case <-time.After(20 * time.Second):
		// Ask the Go runtime for a goroutine dump, so the hang can be diagnosed from the log.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		b, _ := os.ReadFile(p.log)
		if i := bytes.Index(b, []byte("goroutine ")); i >= 0 {
			b = b[i:]
		}
		t.Errorf("veil did not stop within 20s of SIGTERM; goroutines:\n%s", b[:min(len(b), 20000)])
	}
	p.stderr.Close()
}

// TestCrashExactlyOnce kills the real veil binary with SIGKILL at random moments while traffic
// flows, restarts it each time, and then checks with read_committed that every input appears
// exactly once in the encrypted and redacted topics, and that no canary reached any output, the
// data directory or the logs.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildVeil(t)
	addrs := externalBroker(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "veil.log")
	cfg := fmt.Sprintf("kafka:\n  brokers: [%s]\n  transactional_id: veil-crash-test\ndata_dir: %s\napps:\n  app-1: {}\n  app-2: {}\nlisten:\n  metrics: \"\"\n", addrs[0], dataDir)
	cfgPath := writeConfig(t, dir, cfg)

	const n, chunks, kills = 3000, 10, 6
	gen := sample.New(sample.Options{Seed: 99, Canaries: true})
	var canaries []string
	var recs []*kgo.Record
	for range n {
		e := gen.Next()
		canaries = append(canaries, e.Canaries...)
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	p := startVeil(t, bin, cfgPath, logPath)
	per := n / chunks
	killed := 0
	for i := range chunks {
		if err := prod.ProduceSync(context.Background(), recs[i*per:(i+1)*per]...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if killed < kills && i%2 == 1 || killed < kills && i >= chunks-kills+killed {
			time.Sleep(time.Duration(200+rng.IntN(1200)) * time.Millisecond)
			p.kill()
			killed++
			p = startVeil(t, bin, cfgPath, logPath)
		}
	}
	out := consumeAll(t, addrs, 2*n, 120*time.Second)
	p.stop(t)
	if dl := consumeTopics(t, addrs, 0, time.Second, broker.DeadLetterTopic); len(dl) != 0 {
		t.Errorf("%d sample entries dead-lettered, first: %.200s", len(dl), dl[0].Value)
	}

	seen := map[string]int{}
	for _, r := range out {
		var src string
		for _, h := range r.Headers {
			if h.Key == pipeline.HeaderSource {
				src = string(h.Value)
			}
		}
		seen[r.Topic[:strings.IndexByte(r.Topic, '.')]+"|"+src]++
		if bytes.Contains(r.Value, []byte(sample.CanaryPrefix)) {
			t.Fatalf("canary leaked into %s", r.Topic)
		}
	}
	dups := 0
	for k, c := range seen {
		if c != 1 {
			dups++
			t.Errorf("%s appears %d times", k, c)
		}
	}
	if len(out) != 2*n || len(seen) != 2*n {
		t.Fatalf("outputs = %d (%d distinct), want %d; veil's warnings:\n%s", len(out), len(seen), 2*n, warnings(logPath, 30))
	}
	scanned, bytesScanned := scanForCanaries(t, []string{dataDir, logPath}, canaries)
	t.Logf("%d entries, %d SIGKILLs survived, %d outputs exactly once; scanned %d files (%d bytes) for %d canaries: none found",
		n, killed, len(out), scanned, bytesScanned, len(canaries))
}

// warnings returns up to n WARN or ERROR lines of a veil log (they carry no values).
func warnings(path string, n int) string { return testkit.Warnings(path, n) }

func consumeAll(t *testing.T, addrs []string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	return consumeTopics(t, addrs, want, timeout, testkit.OutputTopics()...)
}

// produceSay produces one sensitive say entry of app-1 on ledger event, timed now, under record
// key key (none if "").
func produceSay(t *testing.T, addrs []string, key, id, text string) {
	t.Helper()
	entry := `{"id":"` + id + `","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` +
		time.Now().UTC().Format(time.RFC3339) + `","thread":{"mode":"agent"},"data":{"text":"` + text + `"}}`
	r := &kgo.Record{Topic: broker.RawTopic("event"), Value: []byte(entry)}
	if key != "" {
		r.Key = []byte(key)
	}
	testkit.Produce(t, addrs, r)
}

// consumeTopics reads topics with read_committed until want records arrived or timeout passed,
// then one more second for stragglers (duplicates).
func consumeTopics(t *testing.T, addrs []string, want int, timeout time.Duration, topics ...string) []*kgo.Record {
	t.Helper()
	return testkit.Consume(t, addrs, want, timeout, time.Second, topics...)
}

// scanForCanaries reads every file under roots and fails on any canary marker.
func scanForCanaries(t *testing.T, roots []string, canaries []string) (files int, total int64) {
	t.Helper()
	for _, root := range roots {
		err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			total += int64(len(b))
			if bytes.Contains(b, []byte(sample.CanaryPrefix)) {
				t.Errorf("canary marker found in %s", path)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scanning %s: %v", root, err)
		}
	}
	return files, total
}
