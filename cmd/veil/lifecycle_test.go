package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// lifecycle is a data directory and a config file pointing at a kfake broker.
type lifecycle struct {
	t     *testing.T
	cfg   string
	data  string
	addrs []string
	seq   int // source offsets of sealed entries, distinct across seal calls
}

func newLifecycle(t *testing.T) *lifecycle {
	t.Helper()
	addrs := externalBroker(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// One key per app per 24 h period (keys.window 0): these tests follow a period key's life.
	body := fmt.Sprintf("kafka:\n  brokers: [%s]\ndata_dir: %s\napps: {app-1: {}, app-2: {}}\nkeys: {window: 0s}\n", addrs[0], data)
	cfg := writeConfig(t, dir, body)
	return &lifecycle{t: t, cfg: cfg, data: data, addrs: addrs}
}

func (l *lifecycle) run(args ...string) (int, string, string) {
	l.t.Helper()
	var stdout, stderr bytes.Buffer
	n := 1
	if args[0] == "keys" {
		n = 2 // after the subcommand
	}
	full := append(append(append([]string{}, args[:n]...), "-config", l.cfg), args[n:]...)
	code := runMain(full, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// runKeysAt runs "veil keys args…" with the keys commands' clock set to now.
func (l *lifecycle) runKeysAt(now func() time.Time, args ...string) (int, string, string) {
	l.t.Helper()
	var stdout, stderr bytes.Buffer
	full := append([]string{args[0], "-config", l.cfg}, args[1:]...)
	code := exitCode(keysCmd{now: now}.run(context.Background(), full, &stdout, &stderr), &stderr)
	return code, stdout.String(), stderr.String()
}

// fiftyHoursOn is a clock two days ahead: every key sealed now is past its destroy time.
func fiftyHoursOn() time.Time { return time.Now().Add(50 * time.Hour) }

func (l *lifecycle) config() *config.Config {
	l.t.Helper()
	cfg, err := parseConfig("test", []string{"-config", l.cfg}, os.Stderr, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	return cfg
}

// open opens the key environment and the store of cfg, as veil run would; done closes both.
func (l *lifecycle) open(ctx context.Context, cfg *config.Config) (env *keyEnv, st store.Store, done func()) {
	l.t.Helper()
	env, err := openKeyEnv(ctx, cfg, time.Now)
	if err != nil {
		l.t.Fatal(err)
	}
	st, err = openStore(ctx, cfg, newLogger(os.Stderr, "error"))
	if err != nil {
		env.close()
		l.t.Fatal(err)
	}
	return env, st, func() { st.Close(ctx); env.close() }
}

// produceSays produces n sensitive say entries of app-1 on ledger event, one at a time, with ids
// prefix0, prefix1, … and event time ts.
func (l *lifecycle) produceSays(prefix string, n int, ts time.Time) {
	l.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.addrs...))
	if err != nil {
		l.t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		v := fmt.Sprintf(`{"id":"%s%d","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":%q,"thread":{"mode":"agent"},"data":{"text":"hi %d"}}`,
			prefix, i, ts.UTC().Format(time.RFC3339), i)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: broker.RawTopic("event"), Value: []byte(v)}).FirstErr(); err != nil {
			l.t.Fatal(err)
		}
	}
}

// processedSays produces n says as produceSays does and commits veil's group at their end, as if
// veil had processed them and the outputs were lost: what replay covers. It returns the replay
// --from that covers them, an hour before ts.
func (l *lifecycle) processedSays(prefix string, n int, ts time.Time) (from string) {
	l.t.Helper()
	l.produceSays(prefix, n, ts)
	commitPipelineGroup(l.t, l.addrs, "veil", broker.RawTopic("event"))
	return ts.Add(-time.Hour).UTC().Format(time.RFC3339)
}

// tokens seals one say entry per app through the pipeline's transformer, stores it as veil run
// would, and returns the token of each app's entry.
func (l *lifecycle) seal(apps ...string) map[string]string {
	l.t.Helper()
	ctx := context.Background()
	cfg := l.config()
	env, st, done := l.open(ctx, cfg)
	defer done()
	table, _ := cfg.LedgerTable()
	tr := &pipeline.Transformer{Registry: schemas.DefaultRegistry(), Ledgers: table, Apps: cfg.AppSettings, Sealer: envelope.NewSealer(env.kr)}
	out := map[string]string{}
	for _, app := range apps {
		l.seq++
		i := l.seq
		v := fmt.Sprintf(`{"id":"e%d","app_id":%q,"ledger":"event","type":"meya.text.event.say","ts":%q,"thread":{"mode":"agent"},"data":{"text":"secret of %s"}}`,
			i, app, time.Now().UTC().Format(time.RFC3339), app)
		o, err := tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: int64(i)}, nil, []byte(v))
		if err != nil || o.Item == nil {
			l.t.Fatalf("Transform = %+v, %v", o, err)
		}
		if err := st.Put(ctx, []store.Item{*o.Item}); err != nil {
			l.t.Fatal(err)
		}
		e, _ := schemas.Decode(o.Encrypted.Value, schemas.Limits{})
		out[app] = e.Data["text"].(string)
	}
	return out
}

// reveal opens a token with a fresh keyring and store, as a restarted veil would.
func (l *lifecycle) reveal(token string) (string, reveal.Status) {
	l.t.Helper()
	ctx := context.Background()
	cfg := l.config()
	env, st, done := l.open(ctx, cfg)
	defer done()
	v, status, err := (&reveal.Opener{Store: st, Sealer: envelope.NewSealer(env.kr)}).Open(ctx, token)
	if err != nil {
		l.t.Fatalf("Open = %v", err)
	}
	if status != reveal.StatusOK {
		return envelope.Redacted, status
	}
	return string(v), status
}

func TestKeysEraseEndToEnd(t *testing.T) {
	l := newLifecycle(t)
	toks := l.seal("app-1", "app-2", "app-1")
	for app, tok := range toks {
		if v, st := l.reveal(tok); st != reveal.StatusOK || !strings.Contains(v, "secret of "+app) {
			t.Fatalf("before erase: reveal %s = %s, %s", app, v, st)
		}
	}
	d, err := blob.NewDir(filepath.Join(l.data, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"app-1/a", "app-1/b", "app-2/c"} {
		if err := d.Put(context.Background(), key, strings.NewReader("ciphertext")); err != nil {
			t.Fatal(err)
		}
	}

	if code, _, stderr := l.run("keys", "erase", "--app", "app-1"); code != exitUsage || !strings.Contains(stderr, "--yes") {
		t.Errorf("erase without --yes = %d (%s), want %d asking for --yes", code, stderr, exitUsage)
	}
	if code, _, _ := l.run("keys", "erase", "--app", "../x", "--yes"); code != exitUsage {
		t.Errorf("erase of a bad app id = %d, want %d", code, exitUsage)
	}
	t.Setenv("USER", "operator-7")
	code, stdout, stderr := l.run("keys", "erase", "--app", "app-1", "--yes")
	if code != exitOK {
		t.Fatalf("erase = %d\n%s", code, stderr)
	}
	var rec EraseAudit
	if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
		t.Fatalf("erase output %q is not the audit record: %v", stdout, err)
	}
	if rec.App != "app-1" || rec.Action != "erase" || rec.Keys != 1 || rec.StoreRows != 2 || rec.Blobs != 2 || rec.Operator != "operator-7" {
		t.Errorf("audit record = %+v, want app-1: 1 key, 2 rows, 2 blobs, operator-7", rec)
	}

	if v, st := l.reveal(toks["app-1"]); st != reveal.StatusExpired || v != envelope.Redacted {
		t.Errorf("after erase: reveal app-1 = %s, %s, want ★★★★★ expired", v, st)
	}
	if v, st := l.reveal(toks["app-2"]); st != reveal.StatusOK || !strings.Contains(v, "secret of app-2") {
		t.Errorf("after erasing app-1: reveal app-2 = %s, %s, want its value", v, st)
	}
	files, _ := os.ReadDir(filepath.Join(l.data, "keys"))
	for _, f := range files {
		// What stays of app-1 is a tombstone (no wrapped key), so its versions are never reused.
		b, _ := os.ReadFile(filepath.Join(l.data, "keys", f.Name()))
		erased := bytes.Contains(b, []byte(`"erased":true`)) && !bytes.Contains(b, []byte("ciphertext"))
		if strings.HasPrefix(f.Name(), ".tmp") || strings.HasPrefix(f.Name(), "app-1") && !erased {
			t.Errorf("key store still holds %s after erase", f.Name())
		}
	}
	var left []string
	d.List(context.Background(), "", func(k string) error { left = append(left, k); return nil })
	if len(left) != 1 || left[0] != "app-2/c" {
		t.Errorf("blobs after erasing app-1 = %v, want [app-2/c]", left)
	}

	// The audit topic holds the record.
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.addrs...), kgo.ConsumeTopics(broker.AuditTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	if recs := fs.Records(); len(recs) != 1 || !bytes.Contains(recs[0].Value, []byte(`"action":"erase"`)) || !bytes.Contains(recs[0].Value, []byte(`"app":"app-1"`)) {
		t.Errorf("veil.audit = %v, want the erase record", recs)
	}
}

func TestKeysRotateListRewrapDestroy(t *testing.T) {
	l := newLifecycle(t)
	toks := l.seal("app-1")
	code, stdout, stderr := l.run("keys", "rotate", "--app", "app-1")
	if code != exitOK || !strings.Contains(stdout, "rotated app-1") || !strings.Contains(stdout, "generation 1") {
		t.Fatalf("rotate = %d %q %s", code, stdout, stderr)
	}
	toks2 := l.seal("app-1") // sealed under the new generation
	code, stdout, _ = l.run("keys", "list", "--json")
	var rows []keyInfoJSON
	if err := json.Unmarshal([]byte(stdout), &rows); code != exitOK || err != nil {
		t.Fatalf("list --json = %d %q: %v", code, stdout, err)
	}
	if len(rows) != 2 || rows[0].State != "retired-still-opening" || rows[1].State != "active" || rows[1].Generation != 1 {
		t.Errorf("list --json = %+v, want generation 0 retired and generation 1 active", rows)
	}
	if code, stdout, _ = l.run("keys", "list"); code != exitOK || !strings.Contains(stdout, "DESTROY AT") || strings.Count(stdout, "app-1") != 2 {
		t.Errorf("list = %d\n%s", code, stdout)
	}

	// Rewrap under a new root key; the old one is gone afterwards, the data still opens.
	if code, _, stderr = l.run("keys", "rewrap"); code != exitUsage || !strings.Contains(stderr, "--new-root-key") {
		t.Errorf("rewrap without a new root = %d %s, want usage", code, stderr)
	}
	rootPath := l.config().RootKeyPath()
	oldRoot, err := os.ReadFile(rootPath)
	if err != nil || len(oldRoot) != 32 {
		t.Fatalf("root key at %s: %d bytes, %v", rootPath, len(oldRoot), err)
	}
	newRoot := filepath.Join(t.TempDir(), "new.key")
	code, stdout, stderr = l.run("keys", "rewrap", "--new-root-key", newRoot)
	if code != exitOK || !strings.Contains(stdout, "rewrapped 2 keys") { // app-1's two generations
		t.Fatalf("rewrap = %d %q %s", code, stdout, stderr)
	}
	if cur, _ := os.ReadFile(rootPath); len(cur) != 32 || bytes.Equal(cur, oldRoot) {
		t.Errorf("root.key unchanged after rewrap")
	}
	for _, tok := range []string{toks["app-1"], toks2["app-1"]} {
		if v, st := l.reveal(tok); st != reveal.StatusOK || !strings.Contains(v, "secret of app-1") {
			t.Errorf("after rewrap: reveal = %s, %s", v, st)
		}
	}

	// Destruction with an injected clock: two days on, every key is past its destroy time.
	if code, stdout, _ = l.runKeysAt(fiftyHoursOn, "list", "--json"); code != exitOK || strings.Count(stdout, "destroyed-pending") != 2 {
		t.Errorf("list 50h on = %s, want 2 destroyed-pending", stdout)
	}
	if code, stdout, _ = l.runKeysAt(fiftyHoursOn, "destroy-expired"); code != exitOK || !strings.Contains(stdout, "destroyed 2 keys") {
		t.Errorf("destroy-expired = %d %q", code, stdout)
	}
	if v, st := l.reveal(toks["app-1"]); st != reveal.StatusExpired {
		t.Errorf("after destruction: reveal = %s, %s, want expired", v, st)
	}
}

func TestKeysUsage(t *testing.T) {
	for _, args := range [][]string{{"keys"}, {"keys", "frob"}, {"keys", "erase", "--app", "a/b", "--yes", "--data-dir", t.TempDir()}} {
		var stdout, stderr bytes.Buffer
		if code := runMain(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("runMain(%q) = %d, want %d", args, code, exitUsage)
		}
	}
}

func TestReplayCommand(t *testing.T) {
	l := newLifecycle(t)
	from := l.processedSays("r", 6, time.Now())
	cp := filepath.Join(t.TempDir(), "cp.json")
	code, stdout, stderr := l.run("replay", "--from", from, "--ledger", "event", "--checkpoint", cp)
	if code != exitOK || !strings.Contains(stdout, "produced 6 encrypted, 6 redacted") || !strings.Contains(stderr, "replay: 6/6 records") {
		t.Fatalf("replay = %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, _ = l.run("replay", "--from", from, "--ledger", "event")
	if code != exitOK || !strings.Contains(stdout, "produced 0 encrypted, 0 redacted") || !strings.Contains(stdout, "6 already present") {
		t.Errorf("second replay = %d %s, want nothing produced", code, stdout)
	}
}

func TestReplayBadArguments(t *testing.T) {
	dir := t.TempDir()
	base := []string{"replay", "-data-dir", dir}
	now := time.Now().UTC()
	from, to := now.Add(-time.Hour).Format(time.RFC3339), now.Format(time.RFC3339)
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"no from", nil, "--from"},
		{"bad from", []string{"--from", "yesterday"}, "RFC 3339"},
		{"bad to", []string{"--from", from, "--to", "2026-13-01"}, "RFC 3339"},
		{"from after to", []string{"--from", to, "--to", from}, "is after"},
		{"unknown ledger", []string{"--from", from, "--ledger", "nope"}, `unknown ledger "nope"`},
		{"unknown target", []string{"--from", from, "--target", "parquet"}, `unknown target "parquet"`},
		{"zero rate", []string{"--from", from, "--rate", "0"}, "--rate"},
		{"negative rate", []string{"--from", from, "--rate", "-5"}, "--rate"},
		{"egress without groups", []string{"--from", from, "--target", "egress"}, "--egress-group"},
		{"stray argument", []string{"--from", from, "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(append(append([]string{}, base...), tt.args...), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tt.msg) {
				t.Errorf("replay %q = %d, stderr %q; want %d mentioning %q", tt.args, code, stderr.String(), exitUsage, tt.msg)
			}
		})
	}
}

// TestRunEnforcesRetention starts veil against a broker whose raw event topic keeps data for
// 48 h: it refuses to start (exit 4) unless kafka.retention_check is warn.
func TestRunEnforcesRetention(t *testing.T) {
	c := testkit.Kafka(t)
	cl := testkit.Client(t, c)
	long := "172800000"
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, map[string]*string{"retention.ms": &long}, broker.RawTopic("event")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		mode string
		want int
	}{{"refuse", exitRefused}, {"warn", exitOK}} {
		t.Run(tt.mode, func(t *testing.T) {
			cfgPath := filepath.Join(dir, tt.mode+".yaml")
			os.WriteFile(cfgPath, []byte(fmt.Sprintf("kafka:\n  brokers: [%s]\n  retention_check: %s\ndata_dir: %s\n",
				c.ListenAddrs()[0], tt.mode, filepath.Join(dir, tt.mode))), 0o600)
			var logs bytes.Buffer
			err := startAndClose(t, cfgPath, &logs)
			var errOut bytes.Buffer
			if got := exitCode(err, &errOut); got != tt.want {
				t.Errorf("start with retention_check %s = exit %d (%v), want %d", tt.mode, got, err, tt.want)
			}
			if !strings.Contains(logs.String()+errOut.String(), "ledger.event") {
				t.Errorf("no message names the raw topic ledger.event:\n%s%s", logs.String(), errOut.String())
			}
		})
	}
}

func TestKeyJanitorDeletesDestroyedKeys(t *testing.T) {
	l := newLifecycle(t)
	l.seal("app-1")
	env, err := openKeyEnv(context.Background(), l.config(), fiftyHoursOn)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { keyJanitor(ctx, env.kr, newLogger(io.Discard, "error"), time.Hour); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(l.data, "keys", "*.kek"))
		if len(files) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key files past their destroy time still on disk: %v", files)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}
