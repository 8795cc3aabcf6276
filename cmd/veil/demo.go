package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/reveal"
)

// demoApps are the apps the sample traffic uses; the demo accepts them whatever the config says.
var demoApps = []string{"app-1", "app-2"}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var n int
	var exit bool
	cfg, err := parseConfig("demo", args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&n, "entries", 500, "sample `entries` to publish across all ledgers")
		fs.BoolVar(&exit, "exit", false, "exit after showing the sample instead of running on")
	})
	if err != nil {
		return err
	}
	if cfg.Apps == nil {
		cfg.Apps = map[string]config.App{}
	}
	for _, a := range demoApps {
		if _, ok := cfg.Apps[a]; !ok {
			cfg.Apps[a] = config.App{}
		}
	}
	demoTLS, err := demoAPI(cfg)
	if err != nil {
		return err
	}
	s, err := start(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer s.close(context.Background())
	s.printWhere(stdout)
	key, err := demoPrincipal(cfg)
	if err != nil {
		return err
	}
	if apiConfigured(cfg) {
		if err := writeDemoInfo(cfg.DataDir, demoInfo{URL: apiURL(cfg), CAFile: demoTLS.certFile, Fingerprint: demoTLS.fingerprint, PID: os.Getpid()}); err != nil {
			return fmt.Errorf("writing %s: %w", demoInfoFile, err)
		}
		defer os.Remove(filepath.Join(cfg.DataDir, demoInfoFile))
	}

	// The sample waits for the pipeline: it gives up as soon as serve returns (a component
	// failed), and the service closes only after serve returned, whatever ends the demo.
	runCtx, cancel := context.WithCancel(ctx)
	waitCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	done := make(chan error, 1)
	go func() {
		err := s.serve(runCtx)
		stopWaiting()
		done <- err
	}()
	served := false
	stop := func(err error) error {
		cancel()
		if !served {
			served = true
			if serr := <-done; serr != nil {
				return serr
			}
		}
		return err
	}
	defer stop(nil)

	id, original, err := s.publishSample(waitCtx, n)
	if err != nil {
		return stop(err)
	}
	fmt.Fprintf(stdout, "\npublished %d sample entries on every ledger; waiting for entry %s …\n", n, id)
	enc, red, err := s.await(waitCtx, id, 60*time.Second)
	if err != nil {
		return stop(err)
	}
	fmt.Fprintf(stdout, "\n── original (ledger.event, plaintext; kept on disk only sealed) ──\n%s\n", indent(original))
	fmt.Fprintf(stdout, "\n── encrypted (encrypted.event: veil:v1: tokens, revealable until the TTL) ──\n%s\n", indent(enc))
	fmt.Fprintf(stdout, "\n── redacted (redacted.event: for analytics and everyone else) ──\n%s\n", indent(red))
	for _, section := range demoSections {
		section(stdout, demoView{s: s, tls: demoTLS, key: key, token: firstToken(enc), exiting: exit})
	}
	if exit {
		return stop(nil)
	}
	fmt.Fprintf(stdout, "\nveil keeps running; Ctrl-C stops it.\n")
	served = true
	return <-done
}

// demoView is what the closing sections of the demo's output may show.
type demoView struct {
	s     *service
	tls   demoCert
	key   reveal.APIKey // the demo principal's key; empty when the API is not served
	token string        // one token of the sample entry
	// exiting is true with --exit: the API stops when the output ends.
	exiting bool
}

// demoSections print the end of the demo's output, in order; add a section for a new way in.
var demoSections = []func(io.Writer, demoView){demoRevealSection, demoConsoleSection, demoNextSection}

func demoRevealSection(w io.Writer, v demoView) {
	cfg := v.s.cfg
	if !apiConfigured(cfg) || v.key == "" || v.token == "" {
		return
	}
	fmt.Fprintf(w, "\n── reveal (the reveal API, as an integration would) ──\n")
	trust := "plain HTTP on loopback (dev.plain_http)"
	if v.tls.certFile != "" {
		trust = fmt.Sprintf("self-signed certificate %s\n               sha256 %s", v.tls.certFile, v.tls.fingerprint)
	}
	fmt.Fprintf(w, "  reveal API   %s/v1/reveal   %s\n", apiURL(cfg), trust)
	fmt.Fprintf(w, "  principal    %s (kind support, apps %s); its API key is shown this once:\n", demoPrincipalName, strings.Join(demoApps, ", "))
	fmt.Fprintf(w, "               %s\n", string(v.key))
	fmt.Fprintf(w, "  open one sample token (veil reveal finds this demo's URL and certificate in %s):\n", cfg.DataDir)
	fmt.Fprintf(w, "    VEIL_API_KEY=%s %s reveal %s\n", string(v.key), selfCommand(), shellQuote(v.token))
	if v.exiting {
		fmt.Fprintf(w, "  (--exit: the API stops with this demo; run veil demo without --exit to try it)\n")
	}
}

func demoNextSection(w io.Writer, v demoView) {
	s := v.s
	fmt.Fprintf(w, "\nWhere to look next:\n")
	fmt.Fprintf(w, "  consume redacted.* or encrypted.* from %s (any Kafka client, read_committed)\n", strings.Join(s.brokers, ","))
	fmt.Fprintf(w, "  bad input lands on veil.deadletter with a reason; metrics at http://%s/metrics\n", s.cfg.Listen.Metrics)
	fmt.Fprintf(w, "  the tokens reveal the original values until the event TTL (24 h) ends; after that only ★★★★★ remains\n")
}

// demoCert is the demo's self-signed reveal API certificate, when it made one.
type demoCert struct{ certFile, fingerprint string }

// demoAPI makes the reveal API servable out of the box: when no certificate is configured and
// listen.api is loopback, the demo uses a self-signed certificate kept in <data_dir>/tls (made on
// first run, reused after, so a client that trusted it keeps working).
func demoAPI(cfg *config.Config) (demoCert, error) {
	if apiConfigured(cfg) {
		return demoCert{}, nil
	}
	host, _, err := net.SplitHostPort(cfg.Listen.API)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return demoCert{}, nil // not loopback: the demo does not publish an API it was not told to
	}
	dir := filepath.Join(cfg.DataDir, "tls")
	certFile, keyFile := filepath.Join(dir, certFileName), filepath.Join(dir, keyFileName)
	fp, err := certFingerprint(certFile)
	if _, kerr := os.Stat(keyFile); err != nil || kerr != nil {
		if fp, err = writeSelfSigned(dir, []string{"localhost", "127.0.0.1", "::1"}, 365*24*time.Hour); err != nil {
			return demoCert{}, fmt.Errorf("making the demo's certificate: %w", err)
		}
	}
	if abs, err := filepath.Abs(certFile); err == nil {
		certFile = abs // demo.json is read from wherever veil reveal runs
	}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	return demoCert{certFile: certFile, fingerprint: fp}, nil
}

const demoPrincipalName = "demo"

// demoPrincipal replaces the principal "demo" with a fresh one (kind support, the demo apps) and
// returns its key: the principals file keeps only the key's hash, so each demo start shows a new
// key once.
func demoPrincipal(cfg *config.Config) (reveal.APIKey, error) {
	if !apiConfigured(cfg) {
		return "", nil
	}
	path := cfg.PrincipalsPath()
	if err := reveal.RemovePrincipal(path, demoPrincipalName); err != nil && !errors.Is(err, reveal.ErrNoPrincipal) {
		return "", fmt.Errorf("replacing the demo principal: %w", err)
	}
	key, err := reveal.AddPrincipal(path, reveal.Principal{Name: demoPrincipalName, Kind: reveal.KindSupport, Apps: demoApps})
	if err != nil {
		return "", fmt.Errorf("adding the demo principal: %w", err)
	}
	return key, nil
}

// firstToken returns the first veil token in an entry's JSON, or "".
func firstToken(entry []byte) string {
	var v any
	if err := json.Unmarshal(entry, &v); err != nil {
		return ""
	}
	var find func(v any) string
	find = func(v any) string {
		switch v := v.(type) {
		case string:
			if strings.HasPrefix(v, envelope.TokenPrefix) {
				return v
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				if t := find(v[k]); t != "" {
					return t
				}
			}
		case []any:
			for _, e := range v {
				if t := find(e); t != "" {
					return t
				}
			}
		}
		return ""
	}
	return find(v)
}

// selfCommand is how the user ran veil, for commands the demo prints: the path they typed, or
// plain "veil" when it was built to a temporary directory by go run.
func selfCommand() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, "go-build") {
		return "go run ./cmd/veil"
	}
	return os.Args[0]
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// publishSample publishes n sample entries (all ledgers) and returns the id and JSON of a
// sensitive say event among them.
func (s *service) publishSample(ctx context.Context, n int) (string, []byte, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.kopts...)...)
	if err != nil {
		return "", nil, fmt.Errorf("connecting producer: %w", err)
	}
	defer cl.Close()
	gen := sample.New(sample.Options{Seed: uint64(time.Now().UnixNano()), Apps: demoApps})
	var id string
	var original []byte
	recs := make([]*kgo.Record, 0, n)
	for range n {
		e := gen.Next()
		if id == "" && e.Entry.Type == "meya.text.event.say" && e.Entry.Thread.Mode != "bot" {
			id, original = e.ID, e.Value
		}
		recs = append(recs, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return "", nil, fmt.Errorf("publishing sample traffic: %w", err)
	}
	if id == "" {
		return "", nil, errors.New("sample traffic held no sensitive say event; publish more entries")
	}
	return id, original, nil
}

// await reads encrypted.event and redacted.event until both views of entry id arrived.
func (s *service) await(ctx context.Context, id string, timeout time.Duration) (enc, red []byte, err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...),
		kgo.ConsumeTopics(broker.EncryptedTopic("event"), broker.RedactedTopic("event")),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, s.kopts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting consumer: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	needle := []byte(`"id":"` + id + `"`)
	for enc == nil || red == nil {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("waiting for entry %s: %w", id, ctx.Err())
		}
		f.EachRecord(func(r *kgo.Record) {
			if !bytes.Contains(r.Value, needle) {
				return
			}
			if strings.HasPrefix(r.Topic, broker.EncryptedPrefix) {
				enc = r.Value
			} else {
				red = r.Value
			}
		})
	}
	return enc, red, nil
}

func indent(b []byte) string {
	v := jsontext.Value(bytes.Clone(b))
	if err := v.Indent(jsontext.WithIndent("  ")); err != nil {
		return string(b)
	}
	return string(v)
}
