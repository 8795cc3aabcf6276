package soak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/internal/kmsfake"
	"github.com/veil-project/veil/internal/testsvc"
)

// faultRig is veil (the real binary) on the broker process, with a metrics listener for
// readiness, and the inputs produced so far.
type faultRig struct {
	t                      *testing.T
	veilBin                string
	b                      *brokerProc
	cfg                    veilConfig
	dir, cfgPath, logPath  string
	tmpDir                 string
	env                    []string
	p                      *veilProc
	want                   map[string]bool
	seed                   uint64
	produced, faultsRidden int
}

func newFaultRig(t *testing.T, setup func(*veilConfig)) *faultRig {
	t.Helper()
	veilBin, brokerBin := binaries(t)
	dir := t.TempDir()
	r := &faultRig{t: t, veilBin: veilBin, dir: dir, want: map[string]bool{}, seed: 100,
		cfgPath: filepath.Join(dir, "veil.yaml"), logPath: filepath.Join(dir, "veil.log"), tmpDir: filepath.Join(dir, "tmp")}
	if err := os.MkdirAll(r.tmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	r.b = startBroker(t, brokerBin, filepath.Join(dir, "broker"), filepath.Join(dir, "broker.log"))
	r.cfg = veilConfig{Brokers: r.b.addrs(), DataDir: filepath.Join(dir, "data"), Metrics: testsvc.FreeAddr(t), TxnID: "veil-fault"}
	if setup != nil {
		setup(&r.cfg)
	}
	if err := os.WriteFile(r.cfgPath, []byte(r.cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.env = veilEnv(r.tmpDir)
	return r
}

func (r *faultRig) start() {
	p := startVeil(r.t, r.veilBin, r.env, r.cfgPath, r.logPath)
	r.p = p
	r.t.Cleanup(p.kill)
	r.t.Cleanup(func() {
		if !r.t.Failed() {
			return
		}
		// The end of veil's log says why (it holds no plaintext: the leak scan covers it).
		b, _ := os.ReadFile(r.logPath)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		r.t.Logf("veil log, last lines:\n%s", strings.Join(lines, "\n"))
	})
}

// produce sends n sample entries (no malformed ones: every input has outputs).
func (r *faultRig) produce(n int) {
	r.t.Helper()
	r.seed++
	ld := newLoad(r.seed, n, 0)
	// Ids repeat across generators (e-00000001…): make them unique per batch.
	for _, rec := range ld.recs {
		rec.Value = []byte(replaceID(string(rec.Value), r.seed))
		id := entryID(rec.Value)
		if r.want[id] {
			r.t.Fatalf("entry id %s generated twice", id)
		}
		r.want[id] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A fresh producer each time: an idempotent producer's id does not survive a broker restart.
	prod, err := kgo.NewClient(kgo.SeedBrokers(r.b.addrs()...), kgo.RecordDeliveryTimeout(time.Minute))
	if err != nil {
		r.t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, ld.recs...).FirstErr(); err != nil {
		r.t.Fatalf("producing: %v", err)
	}
	r.produced += n
}

// outputs reads the outputs until every input produced so far is there (or timeout).
func (r *faultRig) outputs(timeout time.Duration) []*kgo.Record {
	return consumeTopics(r.t, r.b.addrs(), 2*len(r.allWant()), timeout, outputTopics()...)
}

// checkOnce asserts every input so far is in the outputs exactly once, and scans the outputs,
// data, temp directory and logs for canaries.
func (r *faultRig) checkOnce(timeout time.Duration) {
	r.t.Helper()
	out := r.outputs(timeout)
	if bad := exactlyOnce(r.t, out, r.allWant()); bad > 0 {
		r.t.Fatalf("%d exactly-once violations among %d outputs (want %d); veil's warnings:\n%s", bad, len(out), 2*len(r.allWant()), warnings(r.logPath, 20))
	}
	s := &scan{t: r.t}
	s.records(out)
	for _, root := range []string{r.cfg.DataDir, r.tmpDir, r.logPath} {
		s.tree(root)
	}
	if s.found > 0 {
		r.t.Fatalf("%d canaries found", s.found)
	}
	r.t.Logf("%d entries exactly once; scanned %d places, %d bytes: 0 canaries", len(r.allWant()), s.places, s.bytes)
}

func (r *faultRig) allWant() map[string]bool { return r.want }

// steady starts veil, produces 300 entries and waits until every one is out exactly once and veil
// is ready: the state each fault is injected into.
func (r *faultRig) steady() {
	r.t.Helper()
	r.start()
	r.produce(300)
	r.checkOnce(60 * time.Second)
	waitReady(r.t, r.cfg.Metrics, 30*time.Second)
}

// recovered asserts that, the fault over, every entry so far is out exactly once, veil is ready
// again and never exited; then it stops veil.
func (r *faultRig) recovered() {
	r.t.Helper()
	r.checkOnce(90 * time.Second)
	waitReady(r.t, r.cfg.Metrics, 60*time.Second)
	r.alive()
	r.p.stop(r.t)
}

// alive fails the test if veil exited by itself.
func (r *faultRig) alive() {
	r.t.Helper()
	if done, err := r.p.exited(); done {
		r.t.Fatalf("veil exited during the fault (%v); log tail:\n%s", err, tail(r.logPath, 3000))
	}
}

// stalled asserts that no output appears for a while: nothing is committed during the fault.
func (r *faultRig) stalled(have int) {
	r.t.Helper()
	if got := len(consumeTopics(r.t, r.b.addrs(), have+1, 2*time.Second, outputTopics()...)); got != have {
		r.t.Fatalf("%d outputs during the fault, want %d (those from before it)", got, have)
	}
}

func replaceID(v string, seed uint64) string {
	const k = `"id":"e-`
	i := indexOf(v, k)
	if i < 0 {
		return v
	}
	return v[:i] + fmt.Sprintf(`"id":"s%d-e-`, seed) + v[i+len(k):]
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestFaultKMSUnreachable: veil on AWS KMS (the fake, served here) restarts while the KMS is
// down; readiness names the keys, nothing is produced, and veil resumes by itself when the KMS
// returns. (The keyring caches unwrapped keys, so a KMS outage under a warm cache changes
// nothing; a restart is when veil needs the KMS.)
func TestFaultKMSUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	fake := kmsfake.New(kmsfake.Config{KeyIDs: []string{"soak-key"}})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	r := newFaultRig(t, func(c *veilConfig) { c.KMSEndpoint = srv.URL })
	r.steady()

	r.p.kill()
	fake.SetDown(true)
	r.start()
	r.produce(300)
	waitNotReady(t, r.cfg.Metrics, "keys", 60*time.Second)
	r.alive()
	r.stalled(2 * 300)
	fake.SetDown(false)
	r.recovered()
	t.Logf("KMS outage survived: readiness 503 naming keys, resumed after, %d GenerateDataKey calls", fake.Calls(kmsfake.OpGenerateDataKey))
}

// TestFaultStoreDown: redis-server is killed while veil runs; readiness names the store, nothing
// is produced, and veil resumes by itself when Redis is back on the same address.
func TestFaultStoreDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	rs := testsvc.StartRedisServer(t)
	// The keys stay in a file: with keys.store on the same Redis (the default), the key store is
	// what fails first, and readiness names keys instead (also 503, also nothing produced).
	r := newFaultRig(t, func(c *veilConfig) { c.RedisAddr = rs.Addr(); c.KeysStore = "file" })
	r.steady()

	rs.Kill()
	r.produce(300)
	waitNotReady(t, r.cfg.Metrics, "store", 60*time.Second)
	r.alive()
	r.stalled(2 * 300)
	rs.Restart()
	r.recovered()
}

// TestFaultBrokerRestart: the broker (kfake with its kept state) stops and starts again on the
// same address while veil runs. Readiness names the broker while it is away, veil reconnects by
// itself, and every entry is in the outputs exactly once. "No data lost" here is what the broker
// keeps: the output topics and group offsets survive its restart; raw topics live in memory only
// (by design: they hold plaintext), so the test lets veil finish the first batch before the
// restart and produces the second after it.
func TestFaultBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	r := newFaultRig(t, nil)
	r.steady()

	r.b.stop(t)
	waitNotReady(t, r.cfg.Metrics, "broker", 60*time.Second)
	r.alive()
	r.b.start(t)
	ensureTopics(t, r.b.addrs())
	r.produce(300)
	r.recovered()
}

// TestFaultAnalyticsDiskFull: the Parquet directory fills up (a 1 MiB tmpfs filled to the brim;
// where mounting is not allowed, the directory is replaced by a regular file). The sink retries
// and holds its commit, readiness names analytics, and once space returns every row is written
// exactly once.
func TestFaultAnalyticsDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	dir := filepath.Join(t.TempDir(), "parquet")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mounted := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).Run() == nil
	if mounted {
		t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	}
	r := newFaultRig(t, func(c *veilConfig) { c.AnalyticsDir = dir })
	r.start()
	r.produce(300)
	r.checkOnce(60 * time.Second)
	waitParquet(t, dir, r.want, 60*time.Second)
	waitReady(t, r.cfg.Metrics, 30*time.Second)

	var restore func()
	if mounted {
		restore = fillDisk(t, dir)
	} else {
		restore = blockDir(t, dir)
	}
	r.produce(300)
	waitNotReady(t, r.cfg.Metrics, "analytics", 60*time.Second)
	r.alive()
	r.checkOnce(60 * time.Second) // the pipeline itself keeps going
	restore()
	waitParquet(t, dir, r.want, 90*time.Second)
	waitReady(t, r.cfg.Metrics, 60*time.Second)
	r.alive()
	r.p.stop(t)
	rows, _ := parquetRows(t, dir)
	for id, c := range rowCounts(rows) {
		if c != 1 || !r.want[id] {
			t.Errorf("Parquet holds row %s %d times (input %v)", id, c, r.want[id])
		}
	}
	s := &scan{t: t}
	s.parquet(dir)
	s.tree(dir)
	t.Logf("disk full (tmpfs: %v) survived: %d Parquet rows exactly once, %d canaries", mounted, len(rows), s.found)
}

// waitParquet waits until the Parquet rows under dir cover want.
func waitParquet(t *testing.T, dir string, want map[string]bool, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%d rows in Parquet", len(want)), func() bool {
		rows, _ := parquetRows(t, dir)
		c := rowCounts(rows)
		for id := range want {
			if c[id] == 0 {
				return false
			}
		}
		return true
	})
}

// fillDisk fills the file system of dir and returns the function that frees it.
func fillDisk(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// blockDir puts a regular file where dir was (as root, permissions stop nothing) and returns the
// function that puts the directory back.
func blockDir(t *testing.T, dir string) func() {
	t.Helper()
	if err := os.Rename(dir, dir+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir+".aside", dir); err != nil {
			t.Fatal(err)
		}
	}
}

var _ = http.StatusOK
