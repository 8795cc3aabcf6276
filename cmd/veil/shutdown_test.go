package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
)

// veilGoroutines returns the stacks of the goroutines (other than the caller's) running code of
// veil's packages, by goroutine header ("goroutine 12 [select]:").
func veilGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller
		}
		for _, line := range strings.Split(g, "\n")[1:] {
			// Frames, not "created by" lines: a goroutine a veil function started in a library
			// (the key cache's ticker) is the library's.
			if strings.HasPrefix(line, "github.com/veil-project/veil/") ||
				strings.HasPrefix(line, "main.") && !strings.HasPrefix(line, "main.main(") {
				header, _, _ := strings.Cut(g, "\n")
				id, _, _ := strings.Cut(header, " [")
				out[id] = g
				break
			}
		}
	}
	return out
}

// TestRunLeavesNoGoroutine: once veil run returned (SIGTERM, here a cancelled ctx), none of its
// actors is still running: processor, egress stage, analytics sink, reveal API, console sampler,
// principals watcher, operations server, key janitor, lag and key-store watchers were all waited
// for, and the components closed after them. Before the run group, the janitor and watchers were
// cancelled but not waited for.
func TestRunLeavesNoGoroutine(t *testing.T) {
	addrs := externalBroker(t)
	dir := t.TempDir()
	metrics, api := testsvc.FreeAddr(t), testsvc.FreeAddr(t)
	yaml := fmt.Sprintf(`kafka: {brokers: [%s], transactional_id: veil-stop}
data_dir: %s
apps: {app-1: {}}
analytics: {flush_interval: 1s}
listen: {metrics: %q, api: %q}
dev: {plain_http: true}
integrations:
  desk: {kind: other, ledgers: [event], topic: out.desk}
`, addrs[0], filepath.Join(dir, "data"), metrics, api)
	cfg := writeConfig(t, dir, yaml)
	before := veilGoroutines()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.Buffer
	done := runInProcess(ctx, cfg, nil, &logs)
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get("http://" + metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("veil run never got ready; log:\n%s", logs.String())
		}
	}
	running := len(veilGoroutines()) - len(before)
	t.Logf("%d veil goroutines while running", running)
	if running < 8 {
		t.Fatalf("%d veil goroutines while running, want at least one per actor (8)", running)
	}
	cancel()
	waitExit(t, done, 60*time.Second, exitOK, &logs)
	for id, g := range veilGoroutines() {
		if _, ok := before[id]; !ok {
			t.Errorf("left running after veil run returned:\n%s", g)
		}
	}
	if !strings.Contains(logs.String(), "veil stopped") {
		t.Errorf("no 'veil stopped' in the log:\n%s", logs.String())
	}
}

// TestRunReportsAnalyticsFailure: an analytics directory that cannot be written (replaced by a
// file while veil runs: root ignores permissions) is retried, not fatal, while veil runs; at
// SIGTERM the sink cannot write its buffered rows within its shutdown timeout, and veil run exits
// 1 with the sink and the cause in the log (the rows stay uncommitted, read again next start).
func TestRunReportsAnalyticsFailure(t *testing.T) {
	addrs := externalBroker(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "analytics")
	yaml := fmt.Sprintf(`kafka: {brokers: [%s]}
data_dir: %s
apps: {app-1: {}}
analytics: {dir: %q, flush_interval: 1s}
listen: {metrics: ""}
`, addrs[0], filepath.Join(dir, "data"), out)
	cfg := writeConfig(t, dir, yaml)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.Buffer
	done := runInProcess(ctx, cfg, nil, &logs)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "veil running"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("veil run did not start; log:\n%s", logs.String())
		}
	}
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	entry := `{"id":"e1","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` +
		time.Now().UTC().Format(time.RFC3339) + `","thread":{"mode":"agent"},"data":{"text":"hello"}}`
	if err := produceFranzGo(ctx, addrs, "event", "t1", []byte(entry)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "analytics: flush failed"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sink never tried to write; log:\n%s", logs.String())
		}
	}
	select {
	case code := <-done:
		t.Fatalf("veil run exited %d on a retried analytics failure; log:\n%s", code, logs.String())
	default:
	}
	cancel()
	// The log names the sink and the cause.
	waitExit(t, done, 60*time.Second, exitFailure, &logs, `"component":"analytics sink"`, "not a directory")
}
