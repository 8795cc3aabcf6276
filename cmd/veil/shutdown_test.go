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
	metrics, api := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "veil.yaml")
	yaml := fmt.Sprintf(`kafka: {brokers: [%s], transactional_id: veil-stop}
data_dir: %s
apps: {app-1: {}}
analytics: {flush_interval: 1s}
listen: {metrics: %q, api: %q}
dev: {plain_http: true}
integrations:
  desk: {kind: other, ledgers: [event], topic: out.desk}
`, addrs[0], filepath.Join(dir, "data"), metrics, api)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
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
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("veil run exited %d, want 0; log:\n%s", code, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("veil run did not stop; log:\n%s", logs.String())
	}
	for id, g := range veilGoroutines() {
		if _, ok := before[id]; !ok {
			t.Errorf("left running after veil run returned:\n%s", g)
		}
	}
	if !strings.Contains(logs.String(), "veil stopped") {
		t.Errorf("no 'veil stopped' in the log:\n%s", logs.String())
	}
}
