package pipeline_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
	"github.com/veil-project/veil/sinks/store/badgerstore"
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

func allTopics() []string {
	var ts []string
	for _, l := range ledgers.All() {
		ts = append(ts, broker.RawTopic(l.Name), broker.EncryptedTopic(l.Name), broker.RedactedTopic(l.Name))
	}
	return append(ts, broker.DeadLetterTopic, broker.AuditTopic)
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil, "") }

// newHarnessWith uses kms (wrapping under keyID) instead of the local root key when kms is non-nil.
func newHarnessWith(t *testing.T, kms keyring.KMS, keyID string) *harness {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, allTopics()...))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	dir := t.TempDir()
	if kms == nil {
		local, err := kmslocal.Open(dir + "/root.key")
		if err != nil {
			t.Fatal(err)
		}
		kms, keyID = local, "local"
	}
	ks, err := keyring.NewFileKeyStore(dir + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Config{KMS: kms, KeyID: keyID, Store: ks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close() })
	st, err := badgerstore.Open(dir + "/store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	sealer := envelope.NewSealer(kr)
	table, err := ledgers.NewTable(nil)
	if err != nil {
		t.Fatal(err)
	}
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

// run starts a processor and returns a stop function that waits for it.
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
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			h.t.Errorf("processor: %v", err)
		}
	})
	return func() { cancel(); wg.Wait(); p.Close() }
}

func (h *harness) produce(recs ...*kgo.Record) {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.addrs...))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		h.t.Fatalf("producing: %v", err)
	}
}

// consume reads topics with read_committed until want records arrived or the deadline passed.
func (h *harness) consume(want int, timeout time.Duration, topics ...string) []*kgo.Record {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.addrs...), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		out = append(out, f.Records()...)
	}
	// A short grace read catches duplicates beyond want.
	gctx, gcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer gcancel()
	out = append(out, cl.PollFetches(gctx).Records()...)
	return out
}

func outputTopics() []string {
	var ts []string
	for _, l := range ledgers.All() {
		ts = append(ts, broker.EncryptedTopic(l.Name), broker.RedactedTopic(l.Name))
	}
	return ts
}

func containsAny(b []byte, markers []string) string {
	for _, m := range markers {
		if bytes.Contains(b, []byte(m)) {
			return m
		}
	}
	return ""
}

func hasPrefixAny(s string, ps ...string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
