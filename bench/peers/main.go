// Command peers runs veil's transform beside what a user would pick instead, on the same sample
// entries (pipeline/sample, the entries make bench preloads), in one run, interleaved:
//
//   - veil: pipeline.Transformer.Transform, one goroutine, no store (Transform returns the store
//     item; writing it is the processor's job), keys from the local KMS and a file key store;
//   - json: a naive encoding/json Unmarshal into any and Marshal back (no rules, no crypto);
//   - benthos: github.com/redpanda-data/benthos/v4 v4.60.0, two Bloblang mappings (encrypted and
//     redacted view) applying veil's rules and encrypt_aes("gcm", …) to the registry's fields, run
//     on one message as a Benthos pipeline would (the JSON is parsed once, each view serialized).
//
// Before timing, every entry goes through veil and Benthos and the run stops unless both flag the
// same entries and seal and redact exactly the same fields, and unless every Benthos ciphertext
// opens to the JSON of the original value. It then prints ns/entry (min and median over the
// rounds), allocations per entry, and the ratios to veil.
//
// It is its own module so that veil's go.mod does not depend on Benthos: run it with
// `make peers` or `cd bench/peers && go run . -entries 20000 -rounds 7`.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the standard Bloblang functions (nanoid, encrypt_aes…)
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/schemas"
)

func main() {
	var (
		n       = flag.Int("entries", 20_000, "sample entries per pass")
		rounds  = flag.Int("rounds", 7, "interleaved rounds (each runs every contender over every entry)")
		procs   = flag.Int("procs", 1, "GOMAXPROCS: 1 keeps the garbage collector on the measured core too")
		printMp = flag.Bool("print-mapping", false, "print the Bloblang mappings and exit")
	)
	flag.Parse()
	if err := run(*n, *rounds, *procs, *printMp); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// contender is one way of processing an entry; it returns the bytes it would produce so the
// work cannot be optimised away.
type contender struct {
	name string
	do   func(i int) (int, error)
}

func run(n, rounds, procs int, printMapping bool) error {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	encMap, redMap, err := mappings(key)
	if err != nil {
		return err
	}
	if printMapping {
		fmt.Printf("# encrypted view\n%s\n# redacted view\n%s", encMap, redMap)
		return nil
	}
	runtime.GOMAXPROCS(procs)
	ctx := context.Background()

	dir, err := os.MkdirTemp("", "veil-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tr, closeKeys, err := transformer(dir)
	if err != nil {
		return err
	}
	defer closeKeys()
	encExec, err := bloblang.Parse(encMap)
	if err != nil {
		return fmt.Errorf("parsing the encrypted-view mapping: %w", err)
	}
	redExec, err := bloblang.Parse(redMap)
	if err != nil {
		return fmt.Errorf("parsing the redacted-view mapping: %w", err)
	}

	gen := sample.New(sample.Options{Seed: 2026, Now: time.Now})
	entries := make([]sample.Entry, n)
	var inBytes int
	for i := range entries {
		entries[i] = gen.Next()
		inBytes += len(entries[i].Value)
	}
	src := func(i int) pipeline.Source {
		return pipeline.Source{Topic: broker.RawTopic(entries[i].Ledger), Offset: int64(i)}
	}
	veil := func(i int) (int, error) {
		out, err := tr.Transform(ctx, src(i), entries[i].Key, entries[i].Value)
		if err != nil {
			return 0, err
		}
		if out.DeadLetter != nil {
			return 0, fmt.Errorf("veil dead-lettered sample entry %d: %s", i, out.Reason)
		}
		return len(out.Encrypted.Value) + len(out.Redacted.Value), nil
	}
	naive := func(i int) (int, error) {
		var v any
		if err := json.Unmarshal(entries[i].Value, &v); err != nil {
			return 0, err
		}
		b, err := json.Marshal(v)
		return len(b), err
	}
	benthos := func(i int) (int, error) {
		enc, red, err := benthosViews(encExec, redExec, entries[i].Value)
		return len(enc) + len(red), err
	}

	fmt.Fprintf(os.Stderr, "checking that veil and Benthos flag, seal and redact the same fields on %d entries …\n", n)
	st, err := check(ctx, tr, encExec, redExec, key, entries, src)
	if err != nil {
		return err
	}

	cs := []contender{{"veil Transform", veil}, {"encoding/json round trip", naive}, {"Benthos v4.60.0 bloblang", benthos}}
	ns := make([][]float64, len(cs))
	allocs := make([][]float64, len(cs))
	var sink int
	for r := range rounds {
		for k := range cs {
			c := (r + k) % len(cs) // rotate the order so no contender always runs first
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			start := time.Now()
			for i := range entries {
				b, err := cs[c].do(i)
				if err != nil {
					return fmt.Errorf("%s: %w", cs[c].name, err)
				}
				sink += b
			}
			d := time.Since(start)
			runtime.ReadMemStats(&m1)
			ns[c] = append(ns[c], float64(d.Nanoseconds())/float64(n))
			allocs[c] = append(allocs[c], float64(m1.Mallocs-m0.Mallocs)/float64(n))
		}
		fmt.Fprintf(os.Stderr, "  round %d/%d\n", r+1, rounds)
	}
	_ = sink

	fmt.Printf("peers: %d sample entries (%.0f B mean), %d interleaved rounds, GOMAXPROCS %d, %d cores, %s\n",
		n, float64(inBytes)/float64(n), rounds, procs, runtime.NumCPU(), runtime.Version())
	fmt.Printf("checked: %d of %d entries sensitive, %d fields sealed and redacted, the same in veil and Benthos\n", st.sensitive, n, st.fields)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average at the end: %s\n", strings.Join(strings.Fields(string(b))[:3], " "))
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	// On a busy machine the min (the round least disturbed) is the steadier ratio.
	fmt.Fprintln(tw, "contender\tmin ns/entry\tmedian ns/entry\tallocs/entry\tmin / veil\tmedian / veil\t")
	vmin, vmed := slices.Min(ns[0]), median(ns[0])
	for c := range cs {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.1f\t%.2f\t%.2f\t\n", cs[c].name, slices.Min(ns[c]), median(ns[c]), median(allocs[c]),
			slices.Min(ns[c])/vmin, median(ns[c])/vmed)
	}
	tw.Flush()
	return nil
}

// benthosViews runs both mappings on one message, as a Benthos pipeline with two branches would:
// the message's JSON is parsed once (the part caches it) and each view is serialized.
func benthosViews(enc, red *bloblang.Executor, value []byte) ([]byte, []byte, error) {
	msg := service.NewMessage(value)
	e, err := msg.BloblangQuery(enc)
	if err != nil {
		return nil, nil, err
	}
	r, err := msg.BloblangQuery(red)
	if err != nil {
		return nil, nil, err
	}
	eb, err := e.AsBytes()
	if err != nil {
		return nil, nil, err
	}
	rb, err := r.AsBytes()
	return eb, rb, err
}

// transformer builds veil's transform as make bench does: the local KMS, a file key store, the
// default ledgers and registry, every app on the default settings.
func transformer(dir string) (*pipeline.Transformer, func(), error) {
	kms, err := kmslocal.Open(filepath.Join(dir, "root.key"))
	if err != nil {
		return nil, nil, err
	}
	ks, err := keyring.NewFileKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, nil, err
	}
	kr, err := keyring.New(keyring.Config{KMS: kms, KeyID: kmslocal.DefaultKeyID, Store: ks})
	if err != nil {
		return nil, nil, err
	}
	table, err := ledgers.NewTable(nil)
	if err != nil {
		kr.Close(context.Background())
		return nil, nil, err
	}
	tr := &pipeline.Transformer{Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: envelope.NewSealer(kr),
		Apps: func(string) (ledgers.AppSettings, bool) { return ledgers.DefaultAppSettings, true }}
	return tr, func() { kr.Close(context.Background()) }, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
