package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the redacted examples of docs/entries.md from what veil produces")

const entriesDoc = "../../docs/entries.md"

// docBlock returns the first fenced code block after the marker <!-- name --> in doc.
func docBlock(t *testing.T, doc, marker string) (body string, start, end int) {
	t.Helper()
	i := strings.Index(doc, "<!-- "+marker+" -->")
	if i < 0 {
		t.Fatalf("docs/entries.md has no <!-- %s --> block", marker)
	}
	open := strings.Index(doc[i:], "```")
	nl := strings.Index(doc[i+open:], "\n")
	start = i + open + nl + 1
	close := strings.Index(doc[start:], "```")
	return doc[start : start+close], start, start + close
}

// docService runs veil (in this process) on a kfake broker with app-42, as the examples assume.
func docService(t *testing.T) []string {
	t.Helper()
	addrs := externalBroker(t)
	dir := t.TempDir()
	cfgFile := writeConfig(t, dir, fmt.Sprintf("kafka: {brokers: [%s]}\ndata_dir: %s\napps: {app-42: {transcript: true, transport: true}}\nanalytics: {enabled: false}\nlisten: {metrics: \"\"}\n", addrs[0], filepath.Join(dir, "data")))
	cfg, err := parseConfig("run", []string{"--config", cfgFile}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.close(context.Background())
	})
	return addrs
}

// awaitOutputs reads encrypted.<ledger> and redacted.<ledger> (read_committed) until the views of
// entry id arrived.
func awaitOutputs(t *testing.T, addrs []string, ledger, id string) (enc, red *kgo.Record) {
	t.Helper()
	cl := testkit.Reader(t, addrs, []string{broker.EncryptedTopic(ledger), broker.RedactedTopic(ledger)})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	needle := []byte(`"id":"` + id + `"`)
	for enc == nil || red == nil {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no outputs for %s on %s", id, ledger)
		}
		f.EachRecord(func(r *kgo.Record) {
			if bytes.Contains(r.Value, needle) {
				if strings.HasPrefix(r.Topic, broker.EncryptedPrefix) {
					enc = r
				} else {
					red = r
				}
			}
		})
	}
	return enc, red
}

// awaitDeadLetter returns the first record of veil.deadletter (read_committed).
func awaitDeadLetter(t *testing.T, addrs []string) *kgo.Record {
	t.Helper()
	cl := testkit.Reader(t, addrs, []string{broker.DeadLetterTopic})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no dead letter")
		}
		if recs := f.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestEntriesDocExamples publishes each ledger's example of docs/entries.md through a running veil
// and checks the redacted record against the page, the encrypted one against the redacted one
// (a token exactly where ★★★★★ is), and the headers.
func TestEntriesDocExamples(t *testing.T) {
	b, err := os.ReadFile(entriesDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	addrs := docService(t)
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	now := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	for _, l := range []string{"event", "bot", "http", "ws", "log", "presence", "thread", "user", "blob"} {
		input, _, _ := docBlock(t, doc, "input: "+l)
		var in map[string]any
		if err := json.Unmarshal([]byte(input), &in); err != nil {
			t.Fatalf("%s input: %v", l, err)
		}
		docTS := in["ts"].(string)
		in["ts"] = now
		v, _ := json.Marshal(in)
		thread, _ := in["thread"].(map[string]any)
		key, _ := thread["id"].(string)
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: broker.RawTopic(l), Key: []byte(key), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		enc, red := awaitOutputs(t, addrs, l, in["id"].(string))
		gotRed := strings.Replace(indent(red.Value), now, docTS, 1)
		want, start, end := docBlock(t, doc, "redacted: "+l)
		if *updateDocs {
			doc = doc[:start] + gotRed + "\n" + doc[end:]
		} else if !jsonEqual(gotRed, want) {
			t.Errorf("%s: redacted record =\n%s\ndocs/entries.md says\n%s", l, gotRed, want)
		}
		// The encrypted view differs from the redacted one exactly where a token stands.
		var e, r any
		json.Unmarshal(enc.Value, &e)
		json.Unmarshal(red.Value, &r)
		if d := tokenDiff(e, r); d != "" {
			t.Errorf("%s: encrypted and redacted views differ beyond tokens: %s", l, d)
		}
		sensitive := header(red, "veil-sensitive")
		if sensitive != fmt.Sprint(strings.Contains(string(red.Value), envelope.Redacted)) || header(red, "veil-source") == "" ||
			(sensitive == "true") != (header(red, "veil-expiry") != "") || string(red.Key) != key {
			t.Errorf("%s: headers %v, key %q", l, red.Headers, red.Key)
		}
	}
	// A dead letter: an entry of an app veil does not know. Its fields are the documented ones.
	bad := `{"id":"e-bad","app_id":"app-unknown","ledger":"event","type":"meya.text.event.say","ts":"` + now + `","data":{"text":"x"}}`
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: broker.RawTopic("event"), Value: []byte(bad)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dl := awaitDeadLetter(t, addrs)
	example, _, _ := docBlock(t, doc, "deadletter")
	var want, got map[string]any
	if err := json.Unmarshal([]byte(example), &want); err != nil {
		t.Fatalf("the dead-letter example is not JSON: %v", err)
	}
	json.Unmarshal(dl.Value, &got)
	for k := range got {
		if _, ok := want[k]; !ok && k != "payload_omitted" {
			t.Errorf("dead letter has field %s, which docs/entries.md does not show", k)
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("docs/entries.md shows dead-letter field %s, the record has none", k)
		}
	}
	if got["reason"] != "unknown_app" || got["field"] != "app_id" || header(dl, "veil-reason") != "unknown_app" || header(dl, "veil-source") == "" {
		t.Errorf("dead letter = %s, headers %v; want reason unknown_app, field app_id, veil-reason and veil-source", dl.Value, dl.Headers)
	}
	if p, _ := got["payload"].(string); !strings.HasPrefix(p, envelope.TokenPrefix) {
		t.Errorf("dead-letter payload = %q, want a token", p)
	}

	if *updateDocs {
		if err := os.WriteFile(entriesDoc, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tokenDiff describes the first difference between an encrypted value e and a redacted value r
// other than a token in e where r has ★★★★★; "" when there is none.
func tokenDiff(e, r any) string {
	if s, ok := e.(string); ok && strings.HasPrefix(s, envelope.TokenPrefix) {
		if r != envelope.Redacted {
			return fmt.Sprintf("token where redacted has %v", r)
		}
		return ""
	}
	switch ev := e.(type) {
	case map[string]any:
		rv, ok := r.(map[string]any)
		if !ok || len(rv) != len(ev) {
			return fmt.Sprintf("%v vs %v", e, r)
		}
		for k := range ev {
			if d := tokenDiff(ev[k], rv[k]); d != "" {
				return k + ": " + d
			}
		}
		return ""
	case []any:
		rv, ok := r.([]any)
		if !ok || len(rv) != len(ev) {
			return fmt.Sprintf("%v vs %v", e, r)
		}
		for i := range ev {
			if d := tokenDiff(ev[i], rv[i]); d != "" {
				return fmt.Sprint(i) + ": " + d
			}
		}
		return ""
	}
	if fmt.Sprint(e) != fmt.Sprint(r) {
		return fmt.Sprintf("%v vs %v", e, r)
	}
	return ""
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// TestEntriesDocProducers runs the producer snippets of docs/entries.md against a running veil:
// the Go ones are the functions in producers_test.go (the page must show them verbatim), the kcat
// one is run by sh as printed, with $BROKERS set. Each entry must come out encrypted.
func TestEntriesDocProducers(t *testing.T) {
	b, err := os.ReadFile(entriesDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	src, err := os.ReadFile("producers_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"franz-go", "kafka-go"} {
		snippet, _, _ := docBlock(t, doc, "snippet: "+name)
		if !strings.Contains(string(src), snippet) {
			t.Errorf("the %s snippet of docs/entries.md is not in producers_test.go verbatim:\n%s", name, snippet)
		}
	}
	addrs := docService(t)
	ctx := context.Background()
	entry := func(id string) []byte {
		return []byte(`{"id":"` + id + `","app_id":"app-42","ledger":"event","type":"meya.text.event.say","ts":"` +
			time.Now().UTC().Format(time.RFC3339) + `","thread":{"id":"t-9","mode":"agent"},"data":{"text":"hello"}}`)
	}
	check := func(name, id string) {
		t.Helper()
		enc, _ := awaitOutputs(t, addrs, "event", id)
		var e struct {
			Data struct{ Text string } `json:"data"`
		}
		json.Unmarshal(enc.Value, &e)
		if !strings.HasPrefix(e.Data.Text, envelope.TokenPrefix) || string(enc.Key) != "t-9" {
			t.Errorf("%s: encrypted record %s key %q, want data.text a token, key t-9", name, enc.Value, enc.Key)
		}
	}
	if err := produceFranzGo(ctx, addrs, "event", "t-9", entry("e-franz-1")); err != nil {
		t.Fatalf("franz-go snippet: %v", err)
	}
	check("franz-go", "e-franz-1")
	if err := produceKafkaGo(ctx, addrs, "event", "t-9", entry("e-kafkago-1")); err != nil {
		t.Fatalf("kafka-go snippet: %v", err)
	}
	check("kafka-go", "e-kafkago-1")

	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (scripts/test-deps.sh installs it)")
	}
	_ = kcat
	script, _, _ := docBlock(t, doc, "snippet: kcat")
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "BROKERS="+strings.Join(addrs, ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat snippet: %v\n%s", err, out)
	}
	id := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(script)[1]
	check("kcat", id)
}
