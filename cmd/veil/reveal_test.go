package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/reveal"
)

// TestPrincipalsAndReveal: `veil principals add` prints a key, the file keeps only its hash, and
// the key reveals a token through the API that `veil serve` runs, with `veil reveal`; the reveal
// is audited.
func TestPrincipalsAndReveal(t *testing.T) {
	c := testkit.Kafka(t)
	dir := t.TempDir()
	api := testsvc.FreeAddr(t)
	yaml := fmt.Sprintf("kafka: {brokers: [%s]}\ndata_dir: %s\napps: {app-1: {}}\nlisten: {api: %q, metrics: \"\"}\ndev: {plain_http: true}\n",
		c.ListenAddrs()[0], filepath.Join(dir, "data"), api)
	cfgFile := writeConfig(t, dir, yaml)
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runMain(args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := run("principals", "add", "-config", cfgFile, "--name", "zendesk", "--kind", "support", "--apps", "app-1")
	if code != exitOK {
		t.Fatalf("principals add = %d: %s", code, errOut)
	}
	key := strings.TrimSpace(out)
	if !strings.HasPrefix(key, reveal.APIKeyPrefix) || strings.Count(out, "\n") != 1 {
		t.Fatalf("principals add printed %q, want one key line", out)
	}
	path := filepath.Join(dir, "data", "principals.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), key) || !strings.Contains(string(b), reveal.HashKey(reveal.APIKey(key))) {
		t.Errorf("principals file holds the key or lacks its hash:\n%s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("principals file mode = %v, want 0600", fi.Mode().Perm())
	}
	if code, _, _ := run("principals", "add", "-config", cfgFile, "--name", "bad", "--kind", "support", "--apps", "*"); code == exitOK {
		t.Errorf("principals add with apps * for support succeeded")
	}

	// The client's variables do not upset config loading.
	t.Setenv("VEIL_API_KEY", key)
	code, out, errOut = run("principals", "list", "-config", cfgFile)
	if code != exitOK || !strings.Contains(out, "zendesk") || !strings.Contains(out, "support") {
		t.Errorf("principals list = %d %q %s", code, out, errOut)
	}
	if strings.Contains(out, reveal.HashKey(reveal.APIKey(key))) {
		t.Errorf("principals list prints the key hash")
	}

	// The API as veil serve runs it, with one sealed value in its store.
	cfg, err := parseConfig("serve", []string{"-config", cfgFile}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := startService(ctx, cfg, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close(context.Background())
	if s.proc != nil {
		t.Errorf("serve started a stream processor")
	}
	var ref envelope.RefID
	rand.Read(ref[:])
	toks := testkit.SealStored(t, s.sealer, s.store, envelope.Header{App: "app-1", Ledger: "event", Ref: ref, Expiry: time.Now().Add(time.Hour)},
		envelope.Field{Path: "text", Value: []byte(`"alice@example.com"`)})
	g := newGroup(s.log)
	if err := s.openAPI(ctx, g); err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- g.run(gctx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("reveal API group = %v", err)
		}
	}()

	tok := toks[0].Encode()
	code, out, errOut = run("reveal", "--url", "http://"+api, tok, "veil:v1:nope")
	if code != exitNotOK { // one token is not ok
		t.Fatalf("veil reveal = %d, want %d: %s", code, exitNotOK, errOut)
	}
	if want := "ok\t\"alice@example.com\"\ninvalid\n"; out != want {
		t.Errorf("veil reveal printed %q, want %q", out, want)
	}
	t.Setenv("VEIL_API_KEY", "vk_wrong")
	code, out, errOut = run("reveal", "--url", "http://"+api, tok)
	if code != exitFailure || !strings.Contains(errOut, "401") || strings.Contains(out+errOut, "alice") {
		t.Errorf("veil reveal with a wrong key = %d %q %q, want failure naming 401", code, out, errOut)
	}

	// One audit record per token of the authenticated request.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(broker.AuditTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []reveal.AuditRecord
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	for len(got) < 2 && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			var a reveal.AuditRecord
			json.Unmarshal(r.Value, &a)
			got = append(got, a)
		})
	}
	if len(got) != 2 || got[0].Principal != "zendesk" || got[0].Status != "ok" || got[0].Ref != ref.String() || got[1].Status != "invalid" {
		t.Errorf("audit records = %+v, want zendesk ok on ref %s, then invalid", got, ref)
	}
}

// TestServeNeedsTLS: veil serve refuses to start without a certificate or the development switch.
func TestServeNeedsTLS(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"serve", "-data-dir", dir}, &stdout, &stderr)
	if code != exitConfig || !strings.Contains(stderr.String(), "tls.cert_file") {
		t.Errorf("serve without TLS = %d %s, want %d naming tls.cert_file", code, stderr.String(), exitConfig)
	}
}
