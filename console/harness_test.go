package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/console"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/ops"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// env is veil's reveal side and the console on real components: kfake, the local KMS, the file
// key store, Badger, the real pipeline transformer and the real reveal API.
type env struct {
	t       testing.TB
	clock   *testkit.Clock
	cluster *kfake.Cluster
	kr      *keyring.Keyring
	store   store.Store
	tr      *pipeline.Transformer
	prod    *kgo.Client
	con     *console.Console
	srv     *httptest.Server
	keys    map[string]reveal.APIKey
	offset  atomic.Int64

	metrics       *ops.Metrics
	logs          *lockedBuffer // what the console and the reveal API logged
	principals    *swappable    // what the API and the console authenticate against
	allPrincipals *reveal.Principals
}

// swappable is a principals set a test can replace, as a reloaded principals file would be.
type swappable struct {
	atomic.Pointer[reveal.Principals]
}

func (s *swappable) Lookup(k reveal.APIKey) (reveal.Principal, bool) { return s.Load().Lookup(k) }

var testLedgers = []string{"event", "log"}

func newEnv(t testing.TB, apiOpts ...func(*reveal.ServerConfig)) *env {
	return newEnvWith(t, nil, apiOpts...)
}

// newEnvWith is newEnv with a hook on the console's config.
func newEnvWith(t testing.TB, conOpt func(*console.Config), apiOpts ...func(*reveal.ServerConfig)) *env {
	t.Helper()
	c := testkit.Kafka(t, kfake.SeedTopics(2, broker.EncryptedTopic("event")),
		kfake.SeedTopics(1, broker.EncryptedTopic("log"), broker.DeadLetterTopic, broker.AuditTopic))
	ks := testkit.NewSealing(t, t.TempDir())
	clk, kr, st, sealer := ks.Clock, ks.Keys, ks.Store, ks.Sealer
	aud, err := reveal.DialKafkaAuditor(c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aud.Close(context.Background()) })

	// Principals: an admin of app-a, a support integration of app-b, an "other" of app-a
	// without override, and an admin of every app.
	keys := map[string]reveal.APIKey{}
	var list []reveal.Principal
	for _, p := range []reveal.Principal{
		{Name: "alice", Kind: reveal.KindAdmin, Apps: []string{"app-a"}},
		{Name: "bob", Kind: reveal.KindSupport, Apps: []string{"app-b"}},
		{Name: "olga", Kind: reveal.KindOther, Apps: []string{"app-a"}},
		{Name: "root", Kind: reveal.KindAdmin, Apps: []string{reveal.AllApps}},
	} {
		k, err := reveal.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		p.KeySHA256 = reveal.HashKey(k)
		keys[p.Name] = k
		list = append(list, p)
	}
	all, err := reveal.NewPrincipals(list)
	if err != nil {
		t.Fatal(err)
	}
	ps := &swappable{}
	ps.Store(all)
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	apiCfg := reveal.ServerConfig{Logger: logger,
		Addr: "127.0.0.1:0", PlainHTTP: true, Opener: &reveal.Opener{Store: st, Sealer: sealer},
		Principals: ps, Auditor: aud, Now: clk.Now,
	}
	for _, o := range apiOpts {
		o(&apiCfg)
	}
	api, err := reveal.NewServer(apiCfg)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := console.NewLog(c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close(context.Background()) })
	m := ops.NewMetrics()
	rd := ops.NewReadiness("broker", "keys", "store")
	rd.Set("broker", true, "")
	rd.Set("keys", true, "")
	conCfg := console.Config{
		Principals: ps, Revealer: api, Log: lg, Store: st, Ledgers: testLedgers,
		Keys: kr, Metrics: m, Readiness: rd, Now: clk.Now, Logger: logger,
	}
	if conOpt != nil {
		conOpt(&conCfg)
	}
	con, err := console.New(conCfg)
	if err != nil {
		t.Fatal(err)
	}
	api.Mount(console.Prefix, con)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	apps := map[string]ledgers.AppSettings{"app-a": ledgers.DefaultAppSettings, "app-b": ledgers.DefaultAppSettings}
	tr := &pipeline.Transformer{
		Registry: schemas.DefaultRegistry(), Ledgers: testkit.Ledgers(t, nil), Sealer: sealer, Clock: clk.Now,
		Apps: func(app string) (ledgers.AppSettings, bool) { s, ok := apps[app]; return s, ok },
	}
	return &env{t: t, clock: clk, cluster: c, kr: kr, store: st, tr: tr, prod: prod, con: con, srv: srv, keys: keys,
		principals: ps, allPrincipals: all, metrics: m, logs: logs}
}

// entry is a raw entry as a producer publishes it.
type entry struct {
	ID     string         `json:"id"`
	App    string         `json:"app_id"`
	Ledger string         `json:"ledger"`
	Type   string         `json:"type"`
	TS     time.Time      `json:"ts"`
	Thread map[string]any `json:"thread"`
	User   map[string]any `json:"user"`
	Data   map[string]any `json:"data"`
}

// say is a sensitive say event (agent mode) of app in thread by user.
func say(id, app, thread, user, text string, ts time.Time) entry {
	return entry{ID: id, App: app, Ledger: "event", Type: "meya.text.event.say", TS: ts,
		Thread: map[string]any{"id": thread, "mode": "agent"}, User: map[string]any{"id": user, "type": "user"},
		Data: map[string]any{"text": text}}
}

// publish runs entries through the real transformer, stores their sealed values and produces
// their outputs (encrypted view or dead letter), as the pipeline does.
func (e *env) publish(entries ...any) {
	e.t.Helper()
	ctx := context.Background()
	var recs []*kgo.Record
	for _, en := range entries {
		var raw []byte
		switch v := en.(type) {
		case []byte:
			raw = v
		default:
			b, err := json.Marshal(v)
			if err != nil {
				e.t.Fatal(err)
			}
			raw = b
		}
		var key []byte
		topic := broker.RawTopic("event")
		if en, ok := en.(entry); ok {
			key = []byte(fmt.Sprint(en.Thread["id"]))
			topic = broker.RawTopic(en.Ledger)
		}
		src := pipeline.Source{Topic: topic, Partition: 0, Offset: e.offset.Add(1)}
		out, err := e.tr.Transform(ctx, src, key, raw)
		if err != nil {
			e.t.Fatalf("transforming: %v", err)
		}
		var items []store.Item
		if out.Item != nil {
			items = append(items, *out.Item)
		}
		if len(items) > 0 {
			if err := e.store.Put(ctx, items); err != nil {
				e.t.Fatal(err)
			}
		}
		for _, r := range []*kgo.Record{out.Encrypted, out.DeadLetter} {
			if r != nil {
				recs = append(recs, r)
			}
		}
	}
	if err := e.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatalf("producing: %v", err)
	}
}

// auditRecords returns every record of veil.audit.
func (e *env) auditRecords() []reveal.AuditRecord {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(e.prod)
	ends, err := adm.ListEndOffsets(ctx, broker.AuditTopic)
	if err != nil {
		e.t.Fatal(err)
	}
	end, _ := ends.Lookup(broker.AuditTopic, 0)
	if end.Offset <= 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.ListenAddrs()...), kgo.ConsumeTopics(broker.AuditTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []reveal.AuditRecord
	for n := int64(0); n < end.Offset; {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("reading veil.audit: %v", ctx.Err())
		}
		f.EachRecord(func(r *kgo.Record) {
			n++
			var a reveal.AuditRecord
			if json.Unmarshal(r.Value, &a) == nil {
				out = append(out, a)
			}
		})
	}
	return out
}

// client is a browser-like HTTP client with a cookie jar that does not follow redirects.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type lockedBuffer = testkit.Buffer
