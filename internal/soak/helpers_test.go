package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
)

var soakFlag = flag.Bool("soak", false, "run the long variants (make soak)")

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the veil binary and the broker process once per test binary.
func binaries(t *testing.T) (veil, brokerBin string) {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if binDir, buildErr = os.MkdirTemp("", "veil-soak-bin"); buildErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{{"veil", "./cmd/veil"}, {"soakbroker", "./internal/soak/soakbroker"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "veil"), filepath.Join(binDir, "soakbroker")
}

// brokerProc is the embedded broker in a process of its own, on a fixed address.
type brokerProc struct {
	bin, addr, dataDir, log string
	cmd                     *exec.Cmd
	done                    chan struct{}
}

func startBroker(t *testing.T, bin, dataDir, logPath string) *brokerProc {
	t.Helper()
	b := &brokerProc{bin: bin, addr: testsvc.FreeAddr(t), dataDir: dataDir, log: logPath}
	b.start(t)
	t.Cleanup(func() { b.stop(t) })
	ensureTopics(t, []string{b.addr})
	return b
}

func (b *brokerProc) start(t *testing.T) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err = b.try(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting broker on %s: %v", b.addr, err)
	}
}

func (b *brokerProc) try() error {
	f, err := os.OpenFile(b.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Raw topics kept sealed under a root key beside (not in) the data directory, which the leak
	// scan covers.
	cmd := exec.Command(b.bin, "-addr", b.addr, "-data", b.dataDir, "-rootkey", b.dataDir+".kms/root.key")
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("broker did not start (see %s)", b.log)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(b.done)
	return nil
}

// stop stops the broker cleanly (it writes its kept state); a no-op when stopped.
func (b *brokerProc) stop(t *testing.T) {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Errorf("broker did not stop within 30s of SIGTERM")
	}
	b.cmd = nil
}

func (b *brokerProc) addrs() []string { return []string{b.addr} }

// ensureTopics creates veil's topics with the ledger retention, three partitions each.
func ensureTopics(t *testing.T, addrs []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var lt []broker.LedgerTTL
	for _, l := range ledgers.All() {
		lt = append(lt, broker.LedgerTTL{Name: l.Name, TTL: l.TTL})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), lt, 3); err != nil {
		t.Fatal(err)
	}
}

// veilConfig is what the tests vary in veil's configuration.
type veilConfig struct {
	Brokers      []string
	DataDir      string
	RedisAddr    string // empty: the embedded Badger store
	KeysStore    string // keys.store; empty: the store's backend
	Metrics      string // listen.metrics
	API          string // listen.api with dev.plain_http; empty: API off
	KMSEndpoint  string // kms.provider aws at this endpoint; empty: local root key
	AnalyticsDir string // empty: <data_dir>/analytics
	TxnID        string
	EmbeddedAddr string // with no Brokers: where veil's embedded broker listens
}

func (c veilConfig) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  transactional_id: %s\n  retention_check: warn\n", strings.Join(c.Brokers, ","), c.TxnID)
	if c.EmbeddedAddr != "" {
		fmt.Fprintf(&b, "  embedded: {addr: %q}\n", c.EmbeddedAddr)
	}
	fmt.Fprintf(&b, "data_dir: %s\napps:\n  app-1: {}\n  app-2: {}\n", c.DataDir)
	fmt.Fprintf(&b, "analytics:\n  flush_interval: 1s\n")
	if c.AnalyticsDir != "" {
		fmt.Fprintf(&b, "  dir: %s\n", c.AnalyticsDir)
	}
	if c.RedisAddr != "" {
		fmt.Fprintf(&b, "store:\n  kind: redis\n  redis: {addr: %q}\n", c.RedisAddr)
	}
	if c.KeysStore != "" {
		fmt.Fprintf(&b, "keys:\n  store: %s\n", c.KeysStore)
	}
	if c.KMSEndpoint != "" {
		fmt.Fprintf(&b, "kms:\n  provider: aws\n  key_id: soak-key\n  aws: {region: us-east-1, endpoint: %q}\n", c.KMSEndpoint)
	}
	fmt.Fprintf(&b, "listen:\n  metrics: %q\n", c.Metrics)
	if c.API != "" {
		fmt.Fprintf(&b, "  api: %q\ndev: {plain_http: true}\nreveal: {rate_per_second: 10000, burst: 10000}\n", c.API)
	}
	return b.String()
}

// veilProc is one run of the real binary; stdout and stderr go to one log file.
type veilProc struct {
	cmd  *exec.Cmd
	out  *os.File
	log  string
	done chan struct{} // closed when the process ended
	err  error         // its Wait error, set before done is closed
	once sync.Once
}

// veilEnv is the environment of every veil process: TMPDIR in the test's directory, so the
// scan covers whatever veil writes there, and AWS credentials for the fake KMS.
func veilEnv(tmp string) []string {
	return append(os.Environ(), "TMPDIR="+tmp, "AWS_ACCESS_KEY_ID=AKIDSOAK", "AWS_SECRET_ACCESS_KEY=soak-secret", "AWS_REGION=us-east-1")
}

func runVeilCmd(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("veil %s: %v\n%s", args[0], err, stderr.String())
	}
	return stdout.String()
}

func startVeil(t *testing.T, bin string, env []string, cfgPath, logPath string) *veilProc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &veilProc{cmd: cmd, out: f, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

// exited reports whether the process ended by itself, and how.
func (p *veilProc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// kill ends the process with SIGKILL; a no-op once it ended.
func (p *veilProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.once.Do(func() { p.out.Close() })
}

func (p *veilProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("veil exited after SIGTERM with %v", p.err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		t.Errorf("veil did not stop within 30s of SIGTERM; log tail:\n%s", tail(p.log, 4000))
	}
	p.once.Do(func() { p.out.Close() })
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	return string(b[max(0, len(b)-n):])
}

// warnings returns up to n WARN or ERROR lines of a veil log (they carry no values).
func warnings(path string, n int) string { return testkit.Warnings(path, n) }

// readyz returns /readyz's status code and its failing condition names.
func readyz(addr string) (int, []string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body struct {
		Failing []struct {
			Name   string `json:"name"`
			Reason string `json:"reason"`
		} `json:"failing"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	var names []string
	for _, f := range body.Failing {
		names = append(names, f.Name)
	}
	return resp.StatusCode, names
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "/readyz 200", func() bool { code, _ := readyz(addr); return code == http.StatusOK })
}

// waitNotReady polls /readyz until it answers 503 naming cond.
func waitNotReady(t *testing.T, addr, cond string, d time.Duration) {
	t.Helper()
	var code int
	var failing []string
	waitFor(t, d, "/readyz 503 naming "+cond, func() bool {
		code, failing = readyz(addr)
		return code == http.StatusServiceUnavailable && contains(failing, cond)
	}, func() string { return fmt.Sprintf("last answer %d naming %v", code, failing) })
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, last ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range last {
				what += " (" + l() + ")"
			}
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outputTopics are the encrypted and redacted topics of every ledger.
func outputTopics() []string { return testkit.OutputTopics() }

// consumeTopics reads topics with read_committed until want records arrived or timeout passed,
// then one more second for stragglers (duplicates).
func consumeTopics(t *testing.T, addrs []string, want int, timeout time.Duration, topics ...string) []*kgo.Record {
	t.Helper()
	return testkit.Consume(t, addrs, want, timeout, time.Second, topics...)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// entryID reads the id of an output entry (encrypted or redacted views keep it in the clear).
func entryID(v []byte) string {
	var e struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(v, &e)
	return e.ID
}

// exactlyOnce checks that outs hold each id of want exactly once in the encrypted and once in
// the redacted topics, and nothing else. It returns the number of problems reported.
func exactlyOnce(t *testing.T, outs []*kgo.Record, want map[string]bool) int {
	t.Helper()
	seen := map[string]int{}
	for _, r := range outs {
		kind := r.Topic[:strings.IndexByte(r.Topic, '.')]
		seen[kind+"|"+entryID(r.Value)]++
	}
	bad := 0
	for k, c := range seen {
		id := k[strings.IndexByte(k, '|')+1:]
		if c != 1 || !want[id] {
			if bad++; bad <= 10 {
				t.Errorf("%s appears %d times (expected input: %v)", k, c, want[id])
			}
		}
	}
	for id := range want {
		for _, kind := range []string{"encrypted", "redacted"} {
			if seen[kind+"|"+id] == 0 {
				if bad++; bad <= 10 {
					t.Errorf("%s|%s missing", kind, id)
				}
			}
		}
	}
	return bad
}

// Markers a leak would show: the canary prefix in the clear, and base64-encoded at the start of a
// value (inline media are base64 in the input).
var markers = [][]byte{[]byte(sample.CanaryPrefix), []byte(base64.StdEncoding.EncodeToString([]byte(sample.CanaryPrefix)))}

func hasMarker(b []byte) bool {
	for _, m := range markers {
		if bytes.Contains(b, m) {
			return true
		}
	}
	return false
}

// scan counts the places and bytes looked at and the canaries found.
type scan struct {
	t      *testing.T
	places int
	bytes  int64
	found  int
}

// check looks at one place's bytes.
func (s *scan) check(place string, b []byte) {
	s.places++
	s.bytes += int64(len(b))
	if hasMarker(b) {
		s.found++
		if s.found <= 20 {
			s.t.Errorf("canary found in %s", place)
		}
	}
}

// tree checks every file under root.
func (s *scan) tree(root string) {
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s.check(path, b)
		return nil
	})
	if err != nil {
		s.t.Fatalf("scanning %s: %v", root, err)
	}
}

// records checks records' values, keys and headers.
func (s *scan) records(recs []*kgo.Record) {
	for _, r := range recs {
		s.check(fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset), r.Value)
		s.bytes += int64(len(r.Key))
		if hasMarker(r.Key) {
			s.found++
			s.t.Errorf("canary found in the key of %s[%d]@%d", r.Topic, r.Partition, r.Offset)
		}
		for _, h := range r.Headers {
			s.bytes += int64(len(h.Value))
			if hasMarker(h.Value) {
				s.found++
				s.t.Errorf("canary found in header %s of %s[%d]@%d", h.Key, r.Topic, r.Partition, r.Offset)
			}
		}
	}
}

var _ = pipeline.HeaderSource
