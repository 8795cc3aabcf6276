package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
)

// commitPipelineGroup commits group's offsets at the end of topics, as a veil that processed
// every record would.
func commitPipelineGroup(t *testing.T, addrs []string, group string, topics ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), topics...)
	if err != nil {
		t.Fatal(err)
	}
	var os kadm.Offsets
	ends.Each(func(o kadm.ListedOffset) { os.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	resp, err := adm.CommitOffsets(context.Background(), group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// raceSetup is a real veil binary against a kfake broker of the test process and a real Redis
// store, as in issue 18's reports.
type raceSetup struct {
	t      *testing.T
	bin    string
	addrs  []string
	cfg    string
	log    string
	prefix string // entry ids
	seq    int
}

func newRaceSetup(t *testing.T, bin, prefix string) *raceSetup {
	t.Helper()
	redis := testsvc.Redis(t)
	addrs := externalBroker(t)
	dir := t.TempDir()
	body := fmt.Sprintf("kafka:\n  brokers: [%s]\ndata_dir: %s\napps: {app-1: {}, app-2: {}}\nanalytics: {enabled: false}\nlisten: {metrics: \"\"}\nstore:\n  kind: redis\n  redis: {addr: %q}\n",
		addrs[0], filepath.Join(dir, "data"), redis)
	cfg := writeConfig(t, dir, body)
	return &raceSetup{t: t, bin: bin, addrs: addrs, cfg: cfg, log: filepath.Join(dir, "veil.log"), prefix: prefix}
}

// burst produces n sensitive say entries of two apps, spread over the event partitions.
func (s *raceSetup) burst(n int) {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.addrs...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	ts := time.Now().UTC().Format(time.RFC3339)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		s.seq++
		id := fmt.Sprintf("%s-%04d", s.prefix, s.seq)
		v := fmt.Sprintf(`{"id":%q,"app_id":"app-%d","ledger":"event","type":"meya.text.event.say","ts":%q,"thread":{"id":"t-%d","mode":"agent"},"data":{"text":"text of %s"}}`,
			id, 1+s.seq%2, ts, s.seq%17, id)
		recs[i] = &kgo.Record{Topic: broker.RawTopic("event"), Key: fmt.Appendf(nil, "t-%d", s.seq%17), Value: []byte(v)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
}

// replay runs veil replay on the real binary and returns its exit code and output.
func (s *raceSetup) replay(args ...string) (int, string) {
	s.t.Helper()
	cmd := exec.Command(s.bin, append([]string{"replay", "-config", s.cfg}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		s.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// outcome reads both event output topics (read committed) once they hold want distinct sources
// each, and counts duplicates and the reveal status of every token.
type outcome struct {
	records, sources, duplicates int
	tokens                       map[reveal.Status]int
}

func (s *raceSetup) outcome(want int) outcome {
	s.t.Helper()
	topics := []string{broker.EncryptedTopic("event"), broker.RedactedTopic("event")}
	recs := consumeTopics(s.t, s.addrs, 2*want, 60*time.Second, topics...)
	o := outcome{records: len(recs), tokens: map[reveal.Status]int{}}
	seen := map[string]int{}
	for _, r := range recs {
		var src string
		for _, h := range r.Headers {
			if h.Key == pipeline.HeaderSource {
				src = string(h.Value)
			}
		}
		seen[r.Topic+"|"+src]++
	}
	o.sources = len(seen)
	for _, c := range seen {
		o.duplicates += c - 1
	}
	ctx := context.Background()
	cfg, err := parseConfig("test", []string{"-config", s.cfg}, io.Discard, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	env, err := openKeyEnv(ctx, cfg, time.Now)
	if err != nil {
		s.t.Fatal(err)
	}
	defer env.close()
	st, err := openStore(ctx, cfg, newLogger(io.Discard, "error"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer st.Close(ctx)
	opener := &reveal.Opener{Store: st, Sealer: envelope.NewSealer(env.kr)}
	for _, r := range recs {
		if r.Topic != broker.EncryptedTopic("event") {
			continue
		}
		for _, tok := range tokenPattern.FindAllString(string(r.Value), -1) {
			_, status, err := opener.Open(ctx, tok)
			if err != nil {
				s.t.Fatalf("opening a token: %v", err)
			}
			o.tokens[status]++
		}
	}
	return o
}

var tokenPattern = regexp.MustCompile(`veil:v1:[A-Za-z0-9_\-]+`)

func (s *raceSetup) check(o outcome, name string, want int) {
	t := s.t
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("veil's warnings:\n%s", warnings(s.log, 30))
		}
	}()
	t.Logf("%s: %d outputs, %d distinct, %d duplicates; tokens %v", name, o.records, o.sources, o.duplicates, o.tokens)
	if o.duplicates != 0 || o.sources != 2*want || o.records != 2*want {
		t.Errorf("%s: %d outputs (%d distinct, %d duplicates), want %d once each", name, o.records, o.sources, o.duplicates, 2*want)
	}
	if len(o.tokens) != 1 || o.tokens[reveal.StatusOK] != want {
		t.Errorf("%s: token statuses %v, want %d ok and nothing else", name, o.tokens, want)
	}
}

// replayRaceEntries is the size of each burst of TestReplayRaces: 500, or VEIL_REPLAY_RACE_ENTRIES
// (the reports used 5,000 and 200).
func replayRaceEntries(t *testing.T) int {
	if v := os.Getenv("VEIL_REPLAY_RACE_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 {
			t.Fatalf("VEIL_REPLAY_RACE_ENTRIES=%q: want a number of entries, at least 5", v)
		}
		return n
	}
	return 500
}

// TestReplayRaces runs the two races of issue 18 on the real binary, external broker and Redis
// store: a replay while veil processes a burst, and a replay while veil is stopped followed by a
// restart. No output may be produced twice and every token must reveal ok.
func TestReplayRaces(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	bin := buildVeil(t)
	n := replayRaceEntries(t)

	t.Run("WhileVeilRuns", func(t *testing.T) {
		s := newRaceSetup(t, bin, "run")
		from := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		p := startVeil(t, bin, s.cfg, s.log)
		defer p.stop(t)
		s.burst(n / 5)
		if o := s.outcome(n / 5); o.sources != 2*(n/5) {
			t.Fatalf("veil processed %d of %d entries; its warnings:\n%s", o.sources/2, n/5, warnings(s.log, 30))
		}
		// veil stays a member of its group but falls behind: frozen (idle, between transactions)
		// while a burst arrives and the replay runs, as a busy veil behind a burst is.
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		s.burst(n)
		code, out := s.replay("--from", from, "--ledger", "event")
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		t.Logf("veil replay while veil runs: exit %d\n%s", code, out)
		if code != exitOK {
			t.Fatalf("replay exit %d, want 0", code)
		}
		s.check(s.outcome(n/5+n), "replay while veil runs", n/5+n)
	})

	t.Run("WhileVeilIsStopped", func(t *testing.T) {
		s := newRaceSetup(t, bin, "stop")
		from := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		p := startVeil(t, bin, s.cfg, s.log)
		s.burst(n / 5)
		if o := s.outcome(n / 5); o.sources != 2*(n/5) {
			t.Fatalf("veil processed %d of %d entries; its warnings:\n%s", o.sources/2, n/5, warnings(s.log, 30))
		}
		p.stop(t)
		s.burst(n)
		code, out := s.replay("--from", from, "--ledger", "event")
		t.Logf("veil replay while veil is stopped: exit %d\n%s", code, out)
		if code != exitOK {
			t.Fatalf("replay exit %d, want 0", code)
		}
		if !strings.Contains(out, fmt.Sprintf("%d records in the window are not yet processed by veil", n)) {
			t.Errorf("replay output does not say it left the %d unprocessed records to veil", n)
		}
		p = startVeil(t, bin, s.cfg, s.log)
		defer p.stop(t)
		s.check(s.outcome(n/5+n), "replay while veil is stopped, then a restart", n/5+n)
	})
}

// TestReplayCommandOperatorPaths covers issue 18 items 3, 4 and 6 and the embedded store held by a
// running veil, through the command: dry run on the default targets, resuming a checkpoint with
// the same command (no --to) and with the printed --to, --to in the future, and the encrypted
// target while the embedded store is locked.
func TestReplayCommandOperatorPaths(t *testing.T) {
	l := newLifecycle(t)
	now := time.Now()
	from := l.processedSays("o", 4, now)

	// Item 3: a dry run on the default targets (which include encrypted) works.
	code, stdout, stderr := l.run("replay", "--from", from, "--ledger", "event", "--dry-run")
	if code != exitOK || !strings.Contains(stdout, "would produce 4 encrypted, 4 redacted") {
		t.Fatalf("dry run = %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	// Item 6: --to in the future is refused.
	code, _, stderr = l.run("replay", "--from", from, "--to", now.Add(time.Hour).UTC().Format(time.RFC3339), "--ledger", "event")
	if code != exitUsage || !strings.Contains(stderr, "in the future") {
		t.Errorf("replay --to in the future = %d, %s; want %d saying so", code, stderr, exitUsage)
	}

	// The embedded store held (as by a running veil): the default targets go on without the
	// encrypted one and say so; --target encrypted is refused (exit 4) with the reason.
	cfg := l.config()
	held, err := openStore(context.Background(), cfg, newLogger(io.Discard, "error"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = l.run("replay", "--from", from, "--ledger", "event", "--target", "encrypted")
	if code != exitRefused || !strings.Contains(stderr, "stop veil to replay the encrypted or egress target") {
		t.Errorf("replay --target encrypted with the store held = %d, %s; want %d and the reason", code, stderr, exitRefused)
	}
	code, stdout, stderr = l.run("replay", "--from", from, "--ledger", "event", "--dry-run")
	if code != exitOK || !strings.Contains(stderr, "dry run without the encrypted store") {
		t.Errorf("dry run with the store held = %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	cp := filepath.Join(t.TempDir(), "cp.json")
	code, stdout, stderr = l.run("replay", "--from", from, "--ledger", "event", "--checkpoint", cp)
	if code != exitOK || !strings.Contains(stderr, "target encrypted skipped") || !strings.Contains(stdout, "produced 0 encrypted, 4 redacted") {
		t.Errorf("replay with the store held = %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	held.Close(context.Background())

	// Item 4: the same command resumes its checkpoint although --to defaulted to "now" the first
	// time; so does the --to a refusal prints.
	time.Sleep(1100 * time.Millisecond)
	code, stdout, stderr = l.run("replay", "--from", from, "--ledger", "event", "--target", "redacted", "--checkpoint", cp)
	if code != exitOK || !strings.Contains(stdout, "produced 0 encrypted, 0 redacted") {
		t.Errorf("same command again = %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, _, stderr = l.run("replay", "--from", from, "--to", now.Add(-time.Minute).UTC().Format(time.RFC3339), "--ledger", "event", "--target", "redacted", "--checkpoint", cp)
	i := strings.Index(stderr, "--to ")
	if code != exitUsage || i < 0 {
		t.Fatalf("replay with another --to = %d, %s; want %d naming the checkpoint's window", code, stderr, exitUsage)
	}
	printed := strings.Fields(stderr[i+len("--to "):])[0]
	printed = strings.TrimRight(printed, ";")
	code, stdout, stderr = l.run("replay", "--from", from, "--to", printed, "--ledger", "event", "--target", "redacted", "--checkpoint", cp)
	if code != exitOK {
		t.Errorf("replay with the printed --to %s = %d\nstdout: %s\nstderr: %s", printed, code, stdout, stderr)
	}
}
