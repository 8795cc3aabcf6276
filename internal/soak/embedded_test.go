package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
)

// TestEmbeddedBrokerRestarts runs veil on its embedded broker (no kafka.brokers) and stops the
// whole process, broker included, again and again: SIGKILL right after a producer's writes were
// acknowledged (most of them not processed yet), and SIGTERM once everything is processed. After
// every restart: each acknowledged entry comes out exactly once in encrypted.* and redacted.*,
// every output record keeps the offset it had, and at the end every entry is one Parquet row and
// no canary is found in the data directory, the temp directory or the log. The time from each
// restart until every entry so far is out is reported.
func TestEmbeddedBrokerRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	rounds, per := 4, 150
	if *soakFlag {
		rounds, per = 16, 2000
	}
	veilBin, _ := binaries(t)
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := veilConfig{DataDir: filepath.Join(dir, "data"), Metrics: testsvc.FreeAddr(t), TxnID: "veil-embedded", EmbeddedAddr: testsvc.FreeAddr(t)}
	cfgPath, logPath := filepath.Join(dir, "veil.yaml"), filepath.Join(dir, "veil.log")
	if err := os.WriteFile(cfgPath, []byte(cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := veilEnv(tmp)
	addrs := []string{cfg.EmbeddedAddr}
	start := func() *veilProc {
		p := startVeil(t, veilBin, env, cfgPath, logPath)
		t.Cleanup(p.kill)
		waitFor(t, 60*time.Second, "the embedded broker", func() bool {
			c, err := net.DialTimeout("tcp", cfg.EmbeddedAddr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return p
	}
	want := map[string]bool{}
	seed := uint64(500)
	produce := func() {
		seed++
		ld := newLoad(seed, per, 0)
		for _, rec := range ld.recs {
			rec.Value = []byte(replaceID(string(rec.Value), seed))
			want[entryID(rec.Value)] = true
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordDeliveryTimeout(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		if err := prod.ProduceSync(ctx, ld.recs...).FirstErr(); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
	// at maps topic/partition/offset to the entry id first seen there.
	at := map[string]string{}
	check := func(round int) {
		t.Helper()
		out := consumeTopics(t, addrs, 2*len(want), 90*time.Second, outputTopics()...)
		if bad := exactlyOnce(t, out, want); bad > 0 {
			t.Fatalf("round %d: %d exactly-once violations among %d outputs (want %d); warnings:\n%s", round, bad, len(out), 2*len(want), warnings(logPath, 20))
		}
		moved := 0
		for _, r := range out {
			k := fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
			id := entryID(r.Value)
			if prev, ok := at[k]; ok && prev != id {
				if moved++; moved <= 5 {
					t.Errorf("round %d: %s held %s, now %s", round, k, prev, id)
				}
			}
			at[k] = id
		}
	}

	p := start()
	var stalls []time.Duration
	for round := range rounds {
		before := len(want)
		produce()
		kill := round%2 == 0
		if kill {
			// Acknowledged, and processing under way: killed as soon as the first output of
			// this round is out, most of the round not processed yet.
			if countOutputs(t, addrs, 2*before+1, 60*time.Second) <= 2*before {
				t.Fatalf("round %d: no output within 60 s", round)
			}
			p.kill()
		} else {
			check(round)
			p.stop(t)
		}
		began := time.Now()
		p = start()
		if n := countOutputs(t, addrs, 2*len(want), 120*time.Second); n < 2*len(want) {
			t.Fatalf("round %d: %d of %d outputs 120 s after the restart; log tail:\n%s", round, n, 2*len(want), tail(logPath, 6000))
		}
		stalls = append(stalls, time.Since(began))
		check(round)
		how := "SIGTERM"
		if kill {
			how = "SIGKILL"
		}
		t.Logf("round %d: %s, %d entries so far, every one out %v after the restart", round, how, len(want), stalls[len(stalls)-1].Round(10*time.Millisecond))
	}
	analyticsDir := filepath.Join(cfg.DataDir, "analytics")
	waitParquet(t, analyticsDir, want, 90*time.Second)
	p.stop(t)
	rows, _ := parquetRows(t, analyticsDir)
	for id, c := range rowCounts(rows) {
		if c != 1 || !want[id] {
			t.Errorf("Parquet holds row %s %d times (input %v)", id, c, want[id])
		}
	}
	s := &scan{t: t}
	s.parquet(analyticsDir)
	for _, root := range []string{cfg.DataDir, tmp, logPath} {
		s.tree(root)
	}
	if s.found > 0 {
		t.Fatalf("%d canaries found", s.found)
	}
	sort.Slice(stalls, func(i, j int) bool { return stalls[i] < stalls[j] })
	t.Logf("%d restarts (%d SIGKILL), %d entries exactly once in encrypted.*, redacted.* and Parquet (%d rows), %d output offsets unchanged; time to every entry out after a restart: median %v, max %v; scanned %d places, 0 canaries",
		rounds, (rounds+1)/2, len(want), len(rows), len(at), stalls[len(stalls)/2].Round(10*time.Millisecond), stalls[len(stalls)-1].Round(10*time.Millisecond), s.places)
}

// countOutputs reads the output topics (read_committed) with one consumer until it has seen want
// records or d passed, and returns how many it saw: the caller times the wait.
func countOutputs(t *testing.T, addrs []string, want int, d time.Duration) int {
	t.Helper()
	cl := testkit.Reader(t, addrs, outputTopics(), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n := 0
	for n < want && ctx.Err() == nil {
		n += cl.PollFetches(ctx).NumRecords()
	}
	return n
}
