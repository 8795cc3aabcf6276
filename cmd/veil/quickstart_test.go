package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
)

// TestQuickStart runs the README's quick start on the real binary, in a fresh directory, as a
// newcomer would: `veil demo` (which serves the reveal API over TLS with its own certificate and
// prints a demo key and a reveal command), then the printed `veil reveal` command, then
// `veil principals add` and `veil reveal` with the new key. Both reveals must answer ok with the
// original value the demo printed. The only settings are free ports, so the test can run beside
// other tests.
func TestQuickStart(t *testing.T) {
	bin := buildVeil(t)
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VEIL_") {
			env = append(env, kv)
		}
	}
	env = append(env, "VEIL_KAFKA_EMBEDDED_ADDR="+testsvc.FreeAddr(t), "VEIL_LISTEN_API="+testsvc.FreeAddr(t), "VEIL_LISTEN_METRICS="+testsvc.FreeAddr(t))
	veil := func(extraEnv []string, args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, append(env, extraEnv...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running veil %v: %v", args, err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}

	// 1. veil demo, until it prints the reveal command.
	demo := exec.Command(bin, "demo", "--entries", "100")
	demo.Dir, demo.Env = dir, env
	out, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var demoErr lockedBuffer
	demo.Stderr = &demoErr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var printed lockedBuffer
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		sent := false
		for sc.Scan() {
			printed.Write([]byte(sc.Text() + "\n"))
			if !sent && strings.Contains(sc.Text(), " reveal 'veil:v1:") {
				lines <- sc.Text()
				sent = true
			}
		}
		io.Copy(io.Discard, out)
		exited <- demo.Wait()
	}()
	t.Cleanup(func() {
		demo.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			demo.Process.Kill()
		}
	})
	var line string
	select {
	case line = <-lines:
	case err := <-exited:
		t.Fatalf("veil demo exited before printing a reveal command: %v\nstdout:\n%s\nstderr:\n%s", err, printed.String(), demoErr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("veil demo printed no reveal command:\n%s\nstderr:\n%s", printed.String(), demoErr.String())
	}
	m := regexp.MustCompile(`VEIL_API_KEY=(\S+) (\S+) reveal '([^']+)'`).FindStringSubmatch(line)
	if m == nil || m[2] != bin {
		t.Fatalf("reveal command %q is not 'VEIL_API_KEY=K %s reveal TOKEN'", line, bin)
	}
	demoKey, token := m[1], m[3]

	// 2. The printed command, as printed: it finds the demo's URL and certificate by itself.
	code, stdout, stderr := veil([]string{"VEIL_API_KEY=" + demoKey}, "reveal", token)
	if code != exitOK {
		t.Fatalf("printed reveal command: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	value := checkRevealedOriginal(t, stdout, printed.String())

	// 3. A principal of one's own, and a reveal with its key (the running demo reloads the
	// principals file within a second).
	code, stdout, stderr = veil(nil, "principals", "add", "--name", "me", "--kind", "support", "--apps", "app-1,app-2")
	if code != exitOK {
		t.Fatalf("principals add: exit %d: %s", code, stderr)
	}
	myKey := strings.TrimSpace(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, stdout, stderr = veil([]string{"VEIL_API_KEY=" + myKey}, "reveal", token, "--json")
		if code == exitOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != exitOK {
		t.Fatalf("reveal with the new principal: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var res struct {
		Results []struct {
			Token  string          `json:"token"`
			Status string          `json:"status"`
			Value  json.RawMessage `json:"value"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res.Results) != 1 {
		t.Fatalf("reveal --json = %q (%v), want one result", stdout, err)
	}
	if r := res.Results[0]; r.Token != token || r.Status != "ok" || !bytes.Equal(compactJSON(t, r.Value), compactJSON(t, []byte(value))) {
		t.Errorf("reveal --json = %+v, want token %s ok with %s", r, token, value)
	}

	// 4. Not every token ok: exit 5, one status line per token.
	code, stdout, _ = veil([]string{"VEIL_API_KEY=" + myKey}, "reveal", token, "veil:v1:forged")
	if code != exitNotOK || !strings.HasPrefix(stdout, "ok\t") || !strings.HasSuffix(stdout, "\ninvalid\n") {
		t.Errorf("reveal of a good and a forged token = exit %d, %q; want 5, ok then invalid", code, stdout)
	}
	// A wrong key: the request fails (exit 1), nothing on stdout.
	code, stdout, _ = veil([]string{"VEIL_API_KEY=vk_wrong"}, "reveal", token)
	if code != exitFailure || stdout != "" {
		t.Errorf("reveal with a wrong key = exit %d, %q; want 1 and nothing", code, stdout)
	}
	// 5. The console link the demo printed signs the demo principal in, once.
	checkConsoleLink(t, printed.String())
}

// checkRevealedOriginal checks that out is "ok\t<json>" and that the value is the one the demo
// printed in its original entry; it returns the value.
func checkRevealedOriginal(t *testing.T, out, demoOut string) string {
	t.Helper()
	status, value, ok := strings.Cut(strings.TrimSuffix(out, "\n"), "\t")
	if !ok || status != "ok" || strings.Contains(value, "\n") {
		t.Fatalf("veil reveal printed %q, want one line ok<TAB>value", out)
	}
	orig := demoOut[strings.Index(demoOut, "── original"):strings.Index(demoOut, "── encrypted")]
	orig = orig[strings.Index(orig, "{"):]
	var entry map[string]any
	if err := json.Unmarshal([]byte(orig), &entry); err != nil {
		t.Fatalf("parsing the demo's original entry: %v\n%s", err, orig)
	}
	want := compactJSON(t, []byte(value))
	found := false
	for v := range testkit.JSONValues(entry["data"]) {
		b, _ := json.Marshal(v)
		if bytes.Equal(compactJSON(t, b), want) {
			found = true
		}
	}
	if !found {
		t.Fatalf("revealed value %s is not a value of the original entry's data:\n%s", value, orig)
	}
	return value
}

func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	out, _ := json.Marshal(v)
	return out
}

type lockedBuffer = testkit.Buffer
