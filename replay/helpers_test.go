package replay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/replay"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

var ctx = context.Background()

// env is kfake with every veil topic, the local KMS, the file key store, Badger and the
// pipeline's transformer.
type env struct {
	t      *testing.T
	addrs  []string
	cl     *kgo.Client
	adm    *kadm.Client
	store  store.Store
	kms    *kmslocal.Provider
	kr     *keyring.Keyring
	opener *reveal.Opener
	tr     *pipeline.Transformer
	dir    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := testkit.Kafka(t, kfake.SeedTopics(2, testkit.AllTopics()...))
	return newEnvOn(t, c.ListenAddrs(), t.TempDir())
}

// newEnvOn is an env on the broker at addrs, keeping its keys and store in dir.
func newEnvOn(t *testing.T, addrs []string, dir string) *env {
	t.Helper()
	kr, kms := testkit.LocalKeys(t, dir, testkit.Keys{})
	st := testkit.Badger(t, dir)
	sealer := envelope.NewSealer(kr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{
		t: t, addrs: addrs, cl: cl, kms: kms, kr: kr, adm: kadm.NewClient(cl), store: st, dir: dir,
		opener: &reveal.Opener{Store: st, Sealer: sealer},
		tr: &pipeline.Transformer{
			Registry: schemas.DefaultRegistry(), Ledgers: testkit.Ledgers(t, nil), Sealer: sealer,
			Apps: func(app string) (ledgers.AppSettings, bool) {
				return ledgers.DefaultAppSettings, app == "app-1" || app == "app-2"
			},
		},
	}
}

// entry is a say event of app at ts on ledger, sensitive (agent mode), holding text.
func entry(id, app, ledger string, ts time.Time, text string) *kgo.Record {
	typ := "meya.text.event.say"
	if ledger == "bot" {
		typ = "meya.flow.entry.step"
	}
	field := `"text":"` + text + `"`
	if ledger == "bot" {
		field = `"data":"` + text + `"`
	}
	v := fmt.Sprintf(`{"id":%q,"app_id":%q,"ledger":%q,"type":%q,"ts":%q,"thread":{"id":"t-%s","mode":"agent"},"user":{"id":"u","type":"user"},"data":{%s}}`,
		id, app, ledger, typ, ts.UTC().Format(time.RFC3339), id, field)
	return &kgo.Record{Topic: broker.RawTopic(ledger), Key: []byte("t-" + id), Value: []byte(v), Timestamp: ts}
}

func (e *env) produce(recs ...*kgo.Record) {
	e.t.Helper()
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatalf("producing: %v", err)
	}
}

// readAll reads every committed record of topics.
func (e *env) readAll(topics ...string) []*kgo.Record {
	e.t.Helper()
	ends, err := e.adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		e.t.Fatal(err)
	}
	starts, err := e.adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[string]map[int32]kgo.Offset{}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		if s, _ := starts.Lookup(o.Topic, o.Partition); o.Offset > s.Offset {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]kgo.Offset{}
			}
			want[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
			left++
		}
	})
	if left == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addrs...), kgo.ConsumePartitions(want),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	seen := map[string]bool{}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(seen) < left {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			e.t.Fatalf("reading %v: timed out", topics)
		}
		for _, r := range fs.Records() {
			end, _ := ends.Lookup(r.Topic, r.Partition)
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset >= end.Offset-1 {
				seen[fmt.Sprint(r.Topic, r.Partition)] = true
			}
		}
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// sourcesOf counts outputs per veil-source header and fails on duplicates.
func sourcesOf(t *testing.T, recs []*kgo.Record) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, r := range recs {
		src := header(r, pipeline.HeaderSource)
		if set[src] {
			t.Errorf("duplicate output for %s on %s", src, r.Topic)
		}
		set[src] = true
	}
	return set
}

// tokensIn returns every token string in an entry's data.
func tokensIn(t *testing.T, value []byte) []string {
	t.Helper()
	e, err := schemas.Decode(value, schemas.Limits{})
	if err != nil {
		t.Fatalf("output does not decode: %v", err)
	}
	var toks []string
	for v := range testkit.JSONValues(e.Data) {
		if s, ok := v.(string); ok && strings.HasPrefix(s, envelope.TokenPrefix) {
			toks = append(toks, s)
		}
	}
	return toks
}

func (e *env) config(targets ...replay.Target) replay.Config {
	now := time.Now()
	return replay.Config{
		Brokers: e.addrs, Ledgers: []string{"event", "bot"}, From: now.Add(-3 * time.Hour), To: now,
		Targets: targets, Transformer: e.tr, Store: e.store, BatchSize: 7,
	}
}

// processed commits the pipeline group's offsets at the end of the raw topics of ledgers (default
// event and bot), as a pipeline that processed every record would: replay covers only those.
func (e *env) processed(ledgers ...string) {
	e.t.Helper()
	if len(ledgers) == 0 {
		ledgers = []string{"event", "bot"}
	}
	var topics []string
	for _, l := range ledgers {
		topics = append(topics, broker.RawTopic(l))
	}
	ends, err := e.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		e.t.Fatal(err)
	}
	var os kadm.Offsets
	ends.Each(func(o kadm.ListedOffset) { os.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	resp, err := e.adm.CommitOffsets(ctx, replay.DefaultPipelineGroup, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.t.Fatal(err)
	}
}
