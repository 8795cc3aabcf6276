package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
)

// TestHelp: every command's --help goes to stdout with exit 0, shows a usage line, one example,
// flags spelled --name, and only flags the command takes.
func TestHelp(t *testing.T) {
	cmds := [][]string{{"--help"}, {"version", "--help"}, {"principals", "--help"}, {"keys", "--help"}}
	for name := range helps {
		cmds = append(cmds, append(strings.Fields(name), "--help"))
	}
	for _, args := range cmds {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runMain(args, &stdout, &stderr); code != exitOK || stderr.Len() > 0 {
				t.Fatalf("veil %v = %d, stderr %q; want 0 and nothing on stderr", args, code, stderr.String())
			}
			out := stdout.String()
			if !strings.Contains(out, "Usage") || !strings.Contains(out, "Example") {
				t.Errorf("veil %v help lacks a usage line or an example:\n%s", args, out)
			}
			if strings.Contains(out, "\n  -") && !strings.Contains(out, "\n  --") {
				t.Errorf("veil %v help spells flags with one dash:\n%s", args, out)
			}
			// The usage line spells each flag and its argument as the flag list does.
			if !strings.Contains(out, "\nFlags:\n") {
				return // a group of subcommands: each has its own
			}
			usageLine, _, _ := strings.Cut(strings.TrimPrefix(out, "Usage:\n"), "\n")
			for _, m := range usageFlag.FindAllStringSubmatch(usageLine, -1) {
				want := "\n  --" + m[1]
				if m[2] != "" {
					want += " " + m[2]
				}
				if !strings.Contains(out, want+"\n") && (m[2] != "" || !strings.Contains(out, want+" ")) {
					t.Errorf("veil %v: the usage line has %q, the flag list does not", args, strings.TrimPrefix(want, "\n  "))
				}
			}
		})
	}
	// Only the flags a command uses: principals list reads a file, it takes no broker address.
	var stdout bytes.Buffer
	runMain([]string{"principals", "list", "--help"}, &stdout, &bytes.Buffer{})
	for _, unused := range []string{"--brokers", "--listen-api", "--listen-metrics"} {
		if strings.Contains(stdout.String(), unused) {
			t.Errorf("principals list --help offers %s, which it does not use", unused)
		}
	}
	stdout.Reset()
	if code := runMain([]string{"--version"}, &stdout, &bytes.Buffer{}); code != exitOK || !strings.HasPrefix(stdout.String(), "veil ") {
		t.Errorf("veil --version = %d %q", code, stdout.String())
	}
}

// TestUsageErrors: bad command lines exit 2, print the error once on stderr and nothing on
// stdout; read-only commands do not create a data dir.
func TestUsageErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		args []string
		want int
		msg  string
	}{
		{[]string{"principals", "add", "--name", "x", "--kind", "wizard", "--apps", "a", "--data-dir", missing}, exitUsage, `--kind "wizard"`},
		{[]string{"principals", "frob"}, exitUsage, "unknown principals subcommand"},
		{[]string{"run", "--bogus"}, exitUsage, "bogus"},
		{[]string{"run", "stray"}, exitUsage, "unexpected arguments: stray"},
		{[]string{"completion", "tcsh"}, exitUsage, "tcsh"},
		{[]string{"certs"}, exitUsage, "--dir"},
		{[]string{"principals", "list", "--data-dir", missing}, exitFailure, "no data directory"},
		{[]string{"keys", "list", "--data-dir", missing}, exitFailure, "no data directory"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := runMain(tt.args, &stdout, &stderr)
		if code != tt.want || !strings.Contains(stderr.String(), tt.msg) || strings.Count(stderr.String(), tt.msg) != 1 || stdout.Len() > 0 {
			t.Errorf("veil %v = %d, stdout %q, stderr %q; want %d and %q once on stderr", tt.args, code, stdout.String(), stderr.String(), tt.want, tt.msg)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a read-only command created %s (%v)", missing, err)
	}
}

// TestDefaultLoggersJSON: what goes through the log package or slog.Default (libraries, the
// embedded broker's default) comes out as JSON, like the service's own lines.
func TestDefaultLoggersJSON(t *testing.T) {
	var stderr lockedBuffer
	prev := slog.Default()
	setupLogging(&stderr)
	t.Cleanup(func() { setupLogging(os.Stderr); slog.SetDefault(prev) })
	log.Print("from the log package")
	slog.Default().Warn("from slog.Default")
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("stderr = %q, want two lines", stderr.String())
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("not a JSON line: %q", l)
		}
	}
}

// TestCompletion: the scripts parse in their shell (when installed) and offer each command's own
// flags.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var stdout, stderr bytes.Buffer
		if code := runMain([]string{"completion", sh}, &stdout, &stderr); code != exitOK {
			t.Fatalf("completion %s = %d: %s", sh, code, stderr.String())
		}
		out := stdout.String()
		for _, want := range []string{"demo", "principals", "entries", "kind", "json"} {
			if !strings.Contains(out, want) {
				t.Errorf("completion %s lacks %s", sh, want)
			}
		}
		bin, err := exec.LookPath(sh)
		if err != nil {
			t.Logf("%s not installed: script not parsed", sh)
			continue
		}
		cmd := exec.Command(bin, "-n")
		if sh == "fish" {
			cmd = exec.Command(bin, "--no-execute")
		}
		cmd.Stdin = strings.NewReader(out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, b)
		}
	}
	if !strings.Contains(completionFor(t, "bash"), `"principals add") flags="--apps --config --data-dir --kind --name --override --help"`) {
		t.Error("bash completion does not offer principals add its flags")
	}
}

func completionFor(t *testing.T, sh string) string {
	var stdout bytes.Buffer
	runMain([]string{"completion", sh}, &stdout, io.Discard)
	return stdout.String()
}

// TestCerts: veil certs writes a key only its owner reads, keeps the certificate on a second run
// (clients that trust it keep working), and replaces it with --force.
func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	run := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := runMain(append([]string{"certs", "--dir", dir, "--host", "veil-1,127.0.0.1"}, args...), &stdout, &stderr); code != exitOK {
			t.Fatalf("certs = %d: %s", code, stderr.String())
		}
		fp, err := certFingerprint(filepath.Join(dir, certFileName))
		if err != nil || !strings.Contains(stdout.String(), fp) {
			t.Fatalf("certs printed %q, fingerprint %s (%v)", stdout.String(), fp, err)
		}
		return fp
	}
	first := run()
	if fi, err := os.Stat(filepath.Join(dir, keyFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode = %v (%v), want 0600", fi.Mode(), err)
	}
	if again := run(); again != first {
		t.Errorf("second run replaced the certificate: %s, was %s", again, first)
	}
	if forced := run("--force"); forced == first {
		t.Error("--force kept the certificate")
	}
}

// TestCheck: veil check prints one line per dependency and fails when one does not answer.
func TestCheck(t *testing.T) {
	c := testkit.Kafka(t)
	deadAddr := testsvc.FreeAddr(t) // nothing listens here now
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(yaml), 0o600)
		return p
	}
	good := write("good.yaml", fmt.Sprintf("kafka: {brokers: [%s]}\ndata_dir: %s\n", c.ListenAddrs()[0], dir))
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"check", "--config", good}, &stdout, &stderr); code != exitOK {
		t.Fatalf("check = %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"config      ok", "kafka       ok    1 broker(s)", "kms         ok", "store       ok", "key store   ok"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout.String())
		}
	}
	var redisLog lockedBuffer
	setupLogging(&redisLog)
	t.Cleanup(func() { setupLogging(os.Stderr) })
	bad := write("bad.yaml", fmt.Sprintf("kafka: {brokers: [%s]}\ndata_dir: %s\nstore: {kind: redis, redis: {addr: %q}}\n", c.ListenAddrs()[0], dir, deadAddr))
	stdout.Reset()
	stderr.Reset()
	if code := runMain([]string{"check", "--config", bad}, &stdout, &stderr); code != exitFailure || !strings.Contains(stdout.String(), "store       FAIL") {
		t.Errorf("check with an unreachable redis = %d\n%s%s; want 1 and a FAIL line", code, stdout.String(), stderr.String())
	}
	// The Redis client's own complaints are JSON log lines like every other (redis.SetLogger).
	redisLines := 0
	for _, line := range strings.Split(strings.TrimSpace(redisLog.String()), "\n") {
		if line == "" {
			continue
		}
		if !json.Valid([]byte(line)) {
			t.Errorf("stderr line is not JSON: %q", line)
		}
		redisLines++
	}
	if redisLines == 0 {
		t.Log("the Redis client logged nothing this time")
	}
	stdout.Reset()
	if code := runMain([]string{"check", "--ready", "--data-dir", dir}, &stdout, &stderr); code != exitFailure {
		t.Errorf("check --ready with no veil running = %d, want 1", code)
	}
}

// TestCheckAWS: veil check on the production shape (AWS KMS on local-kms, DynamoDB on dynalite,
// S3 on versitygw) answers ok for what exists and FAIL, without creating it, for what does not.
func TestCheckAWS(t *testing.T) {
	kms := testsvc.StartLocalKMS(t)
	ddb := testsvc.Dynalite(t)
	s3 := testsvc.VersityGW(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	c := testkit.Kafka(t)
	if err := os.Mkdir(filepath.Join(s3.Dir, "veil-blobs"), 0o755); err != nil { // a bucket of the posix backend
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`kafka: {brokers: [%s]}
data_dir: %s
kms: {provider: aws, key_id: %s, aws: {region: %s, endpoint: %q}}
store: {kind: dynamodb, dynamodb: {table: veil-items, region: %s, endpoint: %q}}
keys: {store: dynamodb}
analytics: {s3: {bucket: veil-analytics, region: %s, endpoint: %q, path_style: true}}
blob: {s3: {bucket: veil-blobs, region: %s, endpoint: %q, path_style: true}}
`, c.ListenAddrs()[0], dir, kms.Alias, kms.Region, kms.Endpoint, kms.Region, ddb, kms.Region, s3.Endpoint, s3.Region, s3.Endpoint))
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"check", "--config", cfg}, &stdout, &stderr)
	out := stdout.String()
	for _, want := range []string{
		"kafka       ok", "kms         ok    aws key " + kms.Alias + " enabled",
		"store       FAIL", "key store   FAIL", // no table yet, and check creates none
		"analytics   FAIL", // no such bucket
		"blob        ok    s3 bucket veil-blobs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s%s", want, out, stderr.String())
		}
	}
	if code != exitFailure {
		t.Errorf("check = %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(s3.Dir, "veil-analytics")); err == nil {
		t.Error("veil check created the analytics bucket")
	}
}
