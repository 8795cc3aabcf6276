package pipeline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// harness is a whole pipeline on real components: kfake, the local KMS, the file key store and Badger.
type harness struct {
	t       *testing.T
	cluster *kfake.Cluster
	addrs   []string
	store   store.Store
	sealer  *envelope.Sealer
	opener  *reveal.Opener
	tr      *pipeline.Transformer
	dataDir string
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil, "") }

// newHarnessWith uses kms (wrapping under keyID) instead of the local root key when kms is non-nil.
func newHarnessWith(t *testing.T, kms keyring.KMS, keyID string) *harness {
	t.Helper()
	c := testkit.Kafka(t, kfake.SeedTopics(3, testkit.AllTopics()...))
	dir := t.TempDir()
	kr, _ := testkit.LocalKeys(t, dir, testkit.Keys{KMS: kms, KeyID: keyID})
	st := testkit.Badger(t, dir)
	sealer := envelope.NewSealer(kr)
	table := testkit.Ledgers(t, nil)
	apps := map[string]ledgers.AppSettings{"app-1": ledgers.DefaultAppSettings, "app-2": ledgers.DefaultAppSettings}
	return &harness{
		t: t, cluster: c, addrs: c.ListenAddrs(), store: st, sealer: sealer, dataDir: dir,
		opener: &reveal.Opener{Store: st, Sealer: sealer},
		tr: &pipeline.Transformer{
			Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: sealer, Store: st,
			Apps: func(app string) (ledgers.AppSettings, bool) { s, ok := apps[app]; return s, ok },
		},
	}
}

// run starts a processor and returns a stop function that waits for it and closes it (also at
// the end of the test, if the test did not stop it).
func (h *harness) run(cfg pipeline.Config) (stop func()) {
	h.t.Helper()
	cfg.Brokers = h.addrs
	if cfg.Transformer == nil {
		cfg.Transformer = h.tr
	}
	if cfg.Store == nil {
		cfg.Store = h.store
	}
	if cfg.Ledgers == nil {
		for _, l := range ledgers.All() {
			cfg.Ledgers = append(cfg.Ledgers, l.Name)
		}
	}
	p, err := pipeline.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return testkit.Background(h.t, "processor", p)
}

func (h *harness) produce(recs ...*kgo.Record) { h.t.Helper(); testkit.Produce(h.t, h.addrs, recs...) }

// consume reads topics with read_committed until want records arrived or the deadline passed,
// then reads 300 ms longer to catch duplicates beyond want.
func (h *harness) consume(want int, timeout time.Duration, topics ...string) []*kgo.Record {
	h.t.Helper()
	return testkit.Consume(h.t, h.addrs, want, timeout, 300*time.Millisecond, topics...)
}

func outputTopics() []string { return testkit.OutputTopics() }

// outputs reads the encrypted and redacted views of n entries (timeout at the most) and fails the
// test unless exactly 2n arrived, or when any of them holds one of canaries.
func (h *harness) outputs(n int, timeout time.Duration, canaries []string) []*kgo.Record {
	h.t.Helper()
	out := h.consume(2*n, timeout, outputTopics()...)
	if len(out) != 2*n {
		h.t.Fatalf("%d output records, want %d", len(out), 2*n)
	}
	for _, r := range out {
		if m := testkit.ContainsAny(r.Value, canaries); m != "" {
			h.t.Fatalf("canary %s leaked into %s", m, r.Topic)
		}
	}
	return out
}

// decodeOutput decodes an output record and fails t when it does not decode.
func decodeOutput(t *testing.T, r *kgo.Record) *schemas.Entry {
	t.Helper()
	e, err := schemas.Decode(r.Value, schemas.Limits{})
	if err != nil {
		t.Fatalf("output on %s does not decode: %v", r.Topic, err)
	}
	return e
}

func hasPrefixAny(s string, ps ...string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// blobService is a blob service on h's store and sealer with its objects in dataDir/blobs; with
// apps, its staging directory is dataDir/staging holding an empty directory per app (staging is
// "" without apps: no staging). The caller closes it.
func (h *harness) blobService(apps ...string) (svc *blob.Service, staging string) {
	h.t.Helper()
	objects, err := blob.NewDir(filepath.Join(h.dataDir, "blobs"))
	if err != nil {
		h.t.Fatal(err)
	}
	if len(apps) > 0 {
		staging = filepath.Join(h.dataDir, "staging")
	}
	for _, d := range apps {
		if err := os.MkdirAll(filepath.Join(staging, d), 0o700); err != nil {
			h.t.Fatal(err)
		}
	}
	svc, err = blob.New(blob.Config{Objects: objects, Store: h.store, Sealer: h.sealer, StagingDir: staging})
	if err != nil {
		h.t.Fatal(err)
	}
	return svc, staging
}
