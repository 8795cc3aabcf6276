package egress_test

import (
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/egress"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// harness is the pipeline and egress on real components: kfake, the local KMS, the file key
// store and Badger.
type harness struct {
	t      *testing.T
	addrs  []string
	store  store.Store
	sealer *envelope.Sealer
	opener *reveal.Opener
	tr     *pipeline.Transformer
}

// newHarness builds the components; table nil means the default ledger TTLs.
func newHarness(t *testing.T, table *ledgers.Table) *harness {
	t.Helper()
	c := testkit.Kafka(t, kfake.DefaultNumPartitions(3), kfake.SeedTopics(3, testkit.AllTopics()...))
	dir := t.TempDir()
	kr, _ := testkit.LocalKeys(t, dir, testkit.Keys{})
	st := testkit.Badger(t, dir)
	if table == nil {
		table = testkit.Ledgers(t, nil)
	}
	sealer := envelope.NewSealer(kr)
	apps := map[string]ledgers.AppSettings{"app-1": ledgers.DefaultAppSettings, "app-2": ledgers.DefaultAppSettings}
	return &harness{
		t: t, addrs: c.ListenAddrs(), store: st, sealer: sealer,
		opener: &reveal.Opener{Store: st, Sealer: sealer},
		tr: &pipeline.Transformer{
			Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: sealer,
			Apps: func(app string) (ledgers.AppSettings, bool) { s, ok := apps[app]; return s, ok },
		},
	}
}

// runPipeline starts the processor on every ledger and returns a stop function that waits for it.
func (h *harness) runPipeline() (stop func()) {
	h.t.Helper()
	var names []string
	for _, l := range ledgers.All() {
		names = append(names, l.Name)
	}
	p, err := pipeline.New(pipeline.Config{Brokers: h.addrs, Ledgers: names, Transformer: h.tr, Store: h.store})
	if err != nil {
		h.t.Fatal(err)
	}
	return testkit.Background(h.t, "pipeline", p)
}

// runStage starts an egress stage (Brokers and Opener filled in when unset).
func (h *harness) runStage(cfg egress.Config) (stop func()) {
	h.t.Helper()
	if cfg.Brokers == nil {
		cfg.Brokers = h.addrs
	}
	if cfg.Opener == nil {
		cfg.Opener = h.opener
	}
	s, err := egress.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return testkit.Background(h.t, "egress "+cfg.Integration.Name, s)
}

func (h *harness) produce(recs ...*kgo.Record) { h.t.Helper(); testkit.Produce(h.t, h.addrs, recs...) }

// consume reads topics with read_committed until want records arrived or the deadline passed,
// then reads a little longer to catch records beyond want (duplicates).
func (h *harness) consume(want int, timeout time.Duration, topics ...string) []*kgo.Record {
	h.t.Helper()
	return testkit.Consume(h.t, h.addrs, want, timeout, 300*time.Millisecond, topics...)
}

// sampleRecords returns n raw records of sample traffic (every ledger, apps app-1 and app-2,
// canaries in every value that will be sealed), the decoded originals by id and the canaries.
func sampleRecords(t *testing.T, seed uint64, n int) ([]*kgo.Record, map[string]*schemas.Entry, []string) {
	t.Helper()
	recs, canaries := testkit.SampleRecords(seed, n)
	byID := map[string]*schemas.Entry{}
	for _, r := range recs {
		orig, err := schemas.Decode(r.Value, schemas.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		byID[orig.ID] = orig
	}
	return recs, byID, canaries
}

// pipelined produces n records of sample traffic made from seed and runs the pipeline on them
// until the test ends; it returns what sampleRecords returns.
func (h *harness) pipelined(seed uint64, n int) ([]*kgo.Record, map[string]*schemas.Entry, []string) {
	h.t.Helper()
	recs, byID, canaries := sampleRecords(h.t, seed, n)
	h.produce(recs...)
	h.runPipeline()
	return recs, byID, canaries
}

// encrypted reads the pipeline's encrypted views (60 s at the most) and fails the test unless
// exactly n arrived.
func (h *harness) encrypted(n int) []*kgo.Record {
	h.t.Helper()
	enc := h.consume(n, 60*time.Second, encryptedTopics()...)
	if len(enc) != n {
		h.t.Fatalf("pipeline produced %d encrypted entries, want %d", len(enc), n)
	}
	return enc
}

func encryptedTopics() []string {
	var ts []string
	for _, l := range ledgers.All() {
		ts = append(ts, broker.EncryptedTopic(l.Name))
	}
	return ts
}

func decode(t *testing.T, r *kgo.Record) *schemas.Entry {
	t.Helper()
	e, err := schemas.Decode(r.Value, schemas.Limits{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatalf("record on %s does not decode: %v", r.Topic, err)
	}
	return e
}

// audits returns the audit records on veil.audit written by integration name.
func audits(t *testing.T, recs []*kgo.Record, name string) []reveal.AuditRecord {
	t.Helper()
	var out []reveal.AuditRecord
	for _, r := range recs {
		var a reveal.AuditRecord
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatalf("audit record does not decode: %v", err)
		}
		if a.Source == "egress:"+name {
			out = append(out, a)
		}
	}
	return out
}

// countTokens counts the token strings under v.
func countTokens(v any) int {
	switch c := v.(type) {
	case string:
		if schemas.IsToken(c) {
			return 1
		}
	case map[string]any:
		n := 0
		for _, x := range c {
			n += countTokens(x)
		}
		return n
	case []any:
		n := 0
		for _, x := range c {
			n += countTokens(x)
		}
		return n
	}
	return 0
}
