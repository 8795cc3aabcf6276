package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("store:\n  kind: floppy\n"), 0o600)
	unknownKey := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknownKey, []byte("nonsense: 1\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want int
		out  string
	}{
		{"no args", nil, exitUsage, "Usage"},
		{"help", []string{"--help"}, exitOK, "Commands:"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"version", []string{"version"}, exitOK, "veil "},
		{"run help", []string{"run", "--help"}, exitOK, "-config"},
		{"bad flag", []string{"run", "--no-such-flag"}, exitUsage, "no-such-flag"},
		{"invalid config value", []string{"run", "-config", bad}, exitConfig, "store.kind"},
		{"unknown config key", []string{"run", "-config", unknownKey}, exitConfig, "nonsense"},
		{"missing config file", []string{"run", "-config", filepath.Join(dir, "nope.yaml")}, exitConfig, "nope.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := runMain(tt.args, &stdout, &stderr)
			if got != tt.want {
				t.Errorf("runMain(%q) = %d, want %d\nstdout: %s\nstderr: %s", tt.args, got, tt.want, stdout.String(), stderr.String())
			}
			if all := stdout.String() + stderr.String(); !strings.Contains(all, tt.out) {
				t.Errorf("runMain(%q) output lacks %q:\n%s", tt.args, tt.out, all)
			}
		})
	}
}

// waitExit waits up to within for the exit code on done (runInProcess) and checks that it is code
// and that log holds every string of want.
func waitExit(t *testing.T, done <-chan int, within time.Duration, code int, log fmt.Stringer, want ...string) {
	t.Helper()
	select {
	case got := <-done:
		if got != code {
			t.Errorf("veil run exited %d, want %d; log:\n%s", got, code, log)
		}
		for _, w := range want {
			if !strings.Contains(log.String(), w) {
				t.Errorf("the log does not hold %s:\n%s", w, log)
			}
		}
	case <-time.After(within):
		t.Fatalf("veil run did not stop within %v; log:\n%s", within, log)
	}
}

// runInProcess runs `veil run -config cfg` in this process until ctx is cancelled, printing its
// banner to where (when not nil) and its logs to logs. The channel gets the exit code once the
// service is closed: a test's TempDir is removed right after it reads the code, and a store still
// closing in it made that removal fail ("directory not empty").
func runInProcess(ctx context.Context, cfg string, where, logs io.Writer) <-chan int {
	done := make(chan int, 1)
	go func() {
		c, err := parseConfig("run", []string{"-config", cfg}, io.Discard, nil)
		if err != nil {
			done <- exitCode(err, io.Discard)
			return
		}
		svc, err := start(ctx, c, logs)
		if err != nil {
			done <- exitCode(err, io.Discard)
			return
		}
		if where != nil {
			svc.printWhere(where)
		}
		code := exitCode(svc.serve(ctx), io.Discard)
		svc.close(context.Background())
		done <- code
	}()
	return done
}

// writeConfig writes yaml to dir/veil.yaml and returns the file's path.
func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	path := filepath.Join(dir, "veil.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAndClose starts veil run's components on the config file at path, logging to log, and
// closes them at once; it returns start's error: what veil run checks before it runs anything.
func startAndClose(t *testing.T, path string, log io.Writer) error {
	t.Helper()
	cfg, err := parseConfig("run", []string{"-config", path}, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := start(context.Background(), cfg, log)
	if err == nil {
		s.close(context.Background())
	}
	return err
}

// writeIntegrationsConfig writes dir/veil.yaml for `veil run` on broker with app-1, its data in
// dir/data, transactional id txnID, analytics off, no metrics listener and the integrations given
// as YAML lines (indented under integrations:), and returns the file's path.
func writeIntegrationsConfig(t *testing.T, dir, broker, txnID, integrations string) string {
	t.Helper()
	return writeConfig(t, dir, fmt.Sprintf(`kafka: {brokers: [%s], transactional_id: %s}
data_dir: %s
apps: {app-1: {}}
analytics: {enabled: false}
listen: {metrics: ""}
integrations:
%s`, broker, txnID, filepath.Join(dir, "data"), integrations))
}

// TestRunServesHealthAndMetrics starts `veil run` against a broker and checks the operations
// endpoints: ready once keys, store and broker work, and metrics counting processed entries.
func TestRunServesHealthAndMetrics(t *testing.T) {
	addrs := externalBroker(t)
	dir := t.TempDir()
	metrics := testsvc.FreeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf("kafka:\n  brokers: [%s]\ndata_dir: %s\napps: {app-1: {}}\nanalytics: {flush_interval: 1s}\nlisten:\n  metrics: %s\n", addrs[0], filepath.Join(dir, "data"), metrics))
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := runInProcess(ctx, cfg, &stdout, &stderr)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metrics + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	produceSay(t, addrs, "", "e1", "hello")
	var code int
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code, body = get("/metrics"); strings.Contains(body, `veil_entries_sensitive_total{ledger="event"} 1`) {
			break
		}
	}
	for _, m := range []string{`veil_entries_in_total{ledger="event"} 1`, `veil_entries_sensitive_total{ledger="event"} 1`, "veil_transaction_commits_total", `veil_kms_calls_total{op="GenerateDataKey"}`} {
		if code != http.StatusOK || !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s (status %d)", m, code)
		}
	}
	// The analytics sink writes the redacted row as Parquet within its flush interval.
	var files []string
	for deadline := time.Now().Add(20 * time.Second); len(files) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "data", "analytics", "app=app-1", "ledger=event", "date=*", "hour=*", "*.parquet"))
	}
	if len(files) == 0 {
		t.Errorf("no Parquet file written by the analytics sink")
	}
	cancel()
	if got := <-done; got != exitOK {
		t.Errorf("run exited %d, want 0; stderr:\n%s", got, stderr.String())
	}
}

// TestRunOnDynamoDBAndRedis starts veil's service on each production store (real dynalite and
// redis-server on loopback) and checks that an entry is sealed into it and its token reopens.
func TestRunOnDynamoDBAndRedis(t *testing.T) {
	addrs := externalBroker(t)
	for i, kind := range []string{"dynamodb", "redis"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			var storeCfg string
			switch kind {
			case "dynamodb":
				t.Setenv("AWS_ACCESS_KEY_ID", "test")
				t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
				storeCfg = fmt.Sprintf("store:\n  kind: dynamodb\n  dynamodb: {table: veil-%d, region: us-east-1, endpoint: %q, create_table: true}\n", time.Now().UnixNano(), testsvc.Dynalite(t))
			case "redis":
				storeCfg = fmt.Sprintf("store:\n  kind: redis\n  redis: {addr: %q}\n", testsvc.Redis(t))
			}
			yaml := fmt.Sprintf("kafka:\n  brokers: [%s]\n  group: g-%s\n  transactional_id: veil-%s\ndata_dir: %s\napps: {app-1: {}}\nanalytics: {enabled: false}\nlisten: {metrics: \"\"}\n%s",
				addrs[0], kind, kind, filepath.Join(dir, "data"), storeCfg)
			path := writeConfig(t, dir, yaml)
			cfg, err := parseConfig("run", []string{"-config", path}, io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			svc, err := start(ctx, cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer svc.close(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.serve(ctx) }()
			id := "e-" + kind
			produceSay(t, addrs, "", id, "hello "+kind)
			var token string
			// The topic is shared by the subtests: the i-th one finds i+1 records.
			for _, r := range consumeTopics(t, addrs, i+1, 30*time.Second, broker.EncryptedTopic("event")) {
				if strings.Contains(string(r.Value), id) {
					i := strings.Index(string(r.Value), "veil:v1:")
					token = string(r.Value)[i : i+strings.IndexByte(string(r.Value)[i:], '"')]
				}
			}
			if token == "" {
				t.Fatalf("no encrypted output for %s", id)
			}
			v, status, err := svc.opener.Open(ctx, token)
			if err != nil || string(v) != `"hello `+kind+`"` {
				t.Fatalf("token on %s opens to %s %s %v", kind, v, status, err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
}
