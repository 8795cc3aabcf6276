package egress_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

var allLedgers = func() []string {
	var out []string
	for _, l := range ledgers.All() {
		out = append(out, l.Name)
	}
	return out
}()

// TestDeliveryByKind runs sample traffic through the pipeline and four integrations at once, one
// per kind, and checks every delivered entry against the original: decrypting integrations get
// the original values back, the others exactly the redacted view; the app filter holds; every
// entry arrives once; every decrypt is audited once, without its value.
func TestDeliveryByKind(t *testing.T) {
	h := newHarness(t, nil)
	const n = 240
	recs, byID, canaries := h.pipelined(11, n)
	rawKey := map[string][]byte{}
	for _, r := range recs {
		e, _ := schemas.Decode(r.Value, schemas.Limits{})
		rawKey[e.ID] = r.Key
	}

	integrations := []egress.Integration{
		{Name: "chat", Kind: reveal.KindMessaging, Apps: []string{"app-1"}, Ledgers: []string{"event", "blob"}, Topic: "out.chat"},
		{Name: "desk", Kind: reveal.KindSupport, Ledgers: allLedgers, Topic: "out.desk"},
		{Name: "crm", Kind: reveal.KindOther, Ledgers: allLedgers, Topic: "out.crm"},
		{Name: "bi", Kind: reveal.KindOther, Override: true, Apps: []string{"app-2"}, Ledgers: []string{"event", "http", "log"}, Topic: "out.bi"},
	}
	// What each must receive, stated independently of Integration's own methods.
	decrypts := map[string]bool{"chat": true, "desk": true, "crm": false, "bi": true}
	delivers := func(in egress.Integration, app string) bool { return len(in.Apps) == 0 || in.Apps[0] == app }
	for _, in := range integrations {
		h.runStage(egress.Config{Integration: in, TransactionalID: "veil-test", MaxPoll: 64})
	}

	// The pipeline's views, by entry id.
	encrypted := map[string]*kgo.Record{}
	for _, r := range h.encrypted(n) {
		encrypted[decode(t, r).ID] = r
	}
	if len(encrypted) != n {
		t.Fatalf("pipeline produced %d encrypted entries, want %d", len(encrypted), n)
	}
	var redactedTopics []string
	for _, l := range allLedgers {
		redactedTopics = append(redactedTopics, broker.RedactedTopic(l))
	}
	redacted := map[string]*schemas.Entry{}
	for _, r := range h.consume(n, 60*time.Second, redactedTopics...) {
		e := decode(t, r)
		redacted[e.ID] = e
	}

	wantAudits := map[string]int{}
	totalAudits := 0
	for _, in := range integrations {
		var want []string
		for id, e := range byID {
			if slices.Contains(in.Ledgers, e.Ledger) && delivers(in, e.AppID) {
				want = append(want, id)
				if decrypts[in.Name] {
					wantAudits[in.Name] += countTokens(decode(t, encrypted[id]).Data)
				}
			}
		}
		totalAudits += wantAudits[in.Name]
		t.Run(in.Name, func(t *testing.T) {
			out := h.consume(len(want), 60*time.Second, in.Topic)
			if len(out) != len(want) {
				t.Fatalf("delivered %d entries, want %d", len(out), len(want))
			}
			seen := map[string]int{}
			for _, r := range out {
				got := decode(t, r)
				seen[got.ID]++
				orig := byID[got.ID]
				if orig == nil || !slices.Contains(want, got.ID) {
					t.Fatalf("delivered entry %s (app %s, ledger %s) is not for this integration", got.ID, got.AppID, got.Ledger)
				}
				if !bytes.Equal(r.Key, rawKey[got.ID]) {
					t.Errorf("%s: key = %q, want %q", got.ID, r.Key, rawKey[got.ID])
				}
				src := encrypted[got.ID]
				if g, w := string(testkit.Header(r, pipeline.HeaderSource)), string(testkit.Header(src, pipeline.HeaderSource)); g != w || g == "" {
					t.Errorf("%s: header %s = %q, want %q", got.ID, pipeline.HeaderSource, g, w)
				}
				if bytes.Contains(r.Value, []byte(envelope.TokenPrefix)) {
					t.Errorf("%s: delivered entry still holds a token", got.ID)
				}
				if decrypts[in.Name] {
					if !reflect.DeepEqual(got.Data, orig.Data) {
						t.Errorf("%s: data = %v, want the original %v", got.ID, got.Data, orig.Data)
					}
					continue
				}
				for _, c := range canaries {
					if bytes.Contains(r.Value, []byte(c)) {
						t.Fatalf("%s: canary %s delivered to a non-decrypting integration", got.ID, c)
					}
				}
				if !reflect.DeepEqual(got, redacted[got.ID]) {
					t.Errorf("%s: delivered %+v, want the redacted view %+v", got.ID, got, redacted[got.ID])
				}
			}
			for id, c := range seen {
				if c != 1 {
					t.Errorf("%s delivered %d times, want once", id, c)
				}
			}
		})
	}

	auditRecs := h.consume(totalAudits, 60*time.Second, broker.AuditTopic)
	for _, r := range auditRecs {
		for _, c := range canaries {
			if bytes.Contains(r.Value, []byte(c)) {
				t.Fatalf("audit record holds canary %s", c)
			}
		}
		if bytes.Contains(r.Value, []byte(envelope.TokenPrefix)) {
			t.Fatalf("audit record holds a token")
		}
	}
	for _, in := range integrations {
		as := audits(t, auditRecs, in.Name)
		if len(as) != wantAudits[in.Name] {
			t.Errorf("%s: %d audit records, want %d (one per token opened)", in.Name, len(as), wantAudits[in.Name])
		}
		if !decrypts[in.Name] && len(as) != 0 {
			t.Errorf("%s: a non-decrypting integration wrote %d audit records", in.Name, len(as))
		}
		seen := map[string]bool{}
		for _, a := range as {
			if a.Status != string(reveal.StatusOK) || a.Principal != in.Name || a.Kind != in.Kind ||
				!delivers(in, a.App) || a.Ref == "" || a.Field < 0 || a.Time.IsZero() || a.RequestID == "" {
				t.Errorf("%s: audit record %+v, want status ok, principal, kind, app, ref, field, time and source position", in.Name, a)
			}
			k := fmt.Sprintf("%s/%d", a.Ref, a.Field)
			if seen[k] {
				t.Errorf("%s: field %s audited twice", in.Name, k)
			}
			seen[k] = true
		}
	}
	if wantAudits["desk"] == 0 || wantAudits["chat"] == 0 || wantAudits["bi"] == 0 {
		t.Fatalf("sample traffic opened no tokens for some integration: %v", wantAudits)
	}
}

// TestExpiredTokensRedacted: tokens whose TTL ended between sealing and delivery come out as
// ★★★★★ (audited as expired) while fresher tokens of the same batch still open.
func TestExpiredTokensRedacted(t *testing.T) {
	// A TTL long enough for the pipeline's first batch (group join and key creation included) on a
	// loaded machine: with 2 s the event entries sometimes expired before they were sealed.
	h := newHarness(t, testkit.Ledgers(t, map[string]time.Duration{"event": 6 * time.Second}))
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	mk := func(id, ledger, typ, data string) *kgo.Record {
		return &kgo.Record{Topic: broker.RawTopic(ledger), Key: []byte("t-" + id), Value: []byte(
			`{"id":"` + id + `","app_id":"app-1","ledger":"` + ledger + `","type":"` + typ + `","ts":"` + ts +
				`","thread":{"id":"t","mode":"agent"},"data":` + data + `}`)}
	}
	h.produce(
		mk("short-1", "event", "meya.text.event.say", `{"text":"SECRET-short-1"}`),
		mk("short-2", "event", "meya.text.event.say", `{"text":"SECRET-short-2"}`),
		mk("long-1", "http", "meya.http.entry.request", `{"url":"https://x.example/","method":"POST","body":"SECRET-long-1"}`),
	)
	h.runPipeline()
	enc := h.consume(3, 30*time.Second, broker.EncryptedTopic("event"), broker.EncryptedTopic("http"))
	if len(enc) != 3 {
		t.Fatalf("pipeline produced %d encrypted entries, want 3", len(enc))
	}
	httpTokens := 0
	for _, r := range enc {
		e := decode(t, r)
		if e.Ledger == "event" && countTokens(e.Data) != 1 {
			t.Fatalf("event entry sealed without a token: it expired before the pipeline ran")
		}
		if e.Ledger == "http" {
			httpTokens = countTokens(e.Data)
		}
	}
	exp, err := time.Parse(time.RFC3339, string(testkit.Header(enc[0], pipeline.HeaderExpiry)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range enc {
		if e, _ := time.Parse(time.RFC3339, string(testkit.Header(r, pipeline.HeaderExpiry))); decode(t, r).Ledger == "event" {
			exp = e
		}
	}
	time.Sleep(time.Until(exp) + 500*time.Millisecond)

	in := egress.Integration{Name: "chat", Kind: reveal.KindMessaging, Ledgers: []string{"event", "http"}, Topic: "out.chat"}
	h.runStage(egress.Config{Integration: in})
	out := h.consume(3, 30*time.Second, in.Topic)
	if len(out) != 3 {
		t.Fatalf("delivered %d entries, want 3", len(out))
	}
	tests := map[string]struct {
		path, want string
	}{
		"short-1": {"data.text", envelope.Redacted},
		"short-2": {"data.text", envelope.Redacted},
		"long-1":  {"data.body", "SECRET-long-1"},
	}
	for _, r := range out {
		e := decode(t, r)
		tt, ok := tests[e.ID]
		if !ok {
			t.Fatalf("unexpected entry %s", e.ID)
		}
		if got, _ := e.Get(schemas.MustParsePath(tt.path)); got != tt.want {
			t.Errorf("%s: %s = %v, want %q", e.ID, tt.path, got, tt.want)
		}
	}
	as := audits(t, h.consume(2+httpTokens, 30*time.Second, broker.AuditTopic), in.Name)
	statuses := map[string]int{}
	for _, a := range as {
		statuses[a.Status]++
	}
	if want := map[string]int{"expired": 2, "ok": httpTokens}; !reflect.DeepEqual(statuses, want) {
		t.Errorf("audit statuses = %v, want %v", statuses, want)
	}
}

// TestCrossAppTokenDenied: a genuine token of app-2 copied into an entry of app-1 is not app-1's
// to reveal: a decrypting integration receives ★★★★★ and the attempt is audited as denied.
func TestCrossAppTokenDenied(t *testing.T) {
	h := newHarness(t, nil)
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	h.produce(&kgo.Record{Topic: broker.RawTopic("event"), Key: []byte("t"), Value: []byte(
		`{"id":"a2","app_id":"app-2","ledger":"event","type":"meya.text.event.say","ts":"` + ts +
			`","thread":{"id":"t","mode":"agent"},"data":{"text":"SECRET-app-2"}}`)})
	h.runPipeline()
	enc := h.consume(1, 30*time.Second, broker.EncryptedTopic("event"))
	if len(enc) != 1 {
		t.Fatalf("pipeline produced %d entries, want 1", len(enc))
	}
	tok, _ := decode(t, enc[0]).Data["text"].(string)
	if !envelope.IsToken(tok) {
		t.Fatalf("app-2 text was not sealed")
	}
	// Bot mode: nothing is sealed, the copied token passes through the pipeline untouched.
	h.produce(&kgo.Record{Topic: broker.RawTopic("event"), Key: []byte("t"), Value: []byte(
		`{"id":"a1","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts +
			`","thread":{"id":"t","mode":"bot"},"data":{"text":"hello","copied":"` + tok + `"}}`)})

	in := egress.Integration{Name: "desk", Kind: reveal.KindSupport, Apps: []string{"app-1"}, Ledgers: []string{"event"}, Topic: "out.desk"}
	h.runStage(egress.Config{Integration: in})
	out := h.consume(1, 30*time.Second, in.Topic)
	if len(out) != 1 {
		t.Fatalf("delivered %d entries, want 1 (app-1 only)", len(out))
	}
	e := decode(t, out[0])
	if e.ID != "a1" || e.Data["copied"] != envelope.Redacted || e.Data["text"] != "hello" {
		t.Errorf("delivered %s with data %v, want a1 with copied %s and text hello", e.ID, e.Data, envelope.Redacted)
	}
	as := audits(t, h.consume(1, 30*time.Second, broker.AuditTopic), in.Name)
	if len(as) != 1 || as[0].Status != string(reveal.StatusDenied) || as[0].App != "app-2" {
		t.Errorf("audits = %+v, want one denied attempt on an app-2 token", as)
	}
}

// TestRestartDeliversOnce stops a stage in the middle of the stream (a transaction may be in
// flight) and starts it again under the same transactional id: every entry and every audit
// record appears once for read_committed consumers.
func TestRestartDeliversOnce(t *testing.T) {
	h := newHarness(t, nil)
	const n = 300
	h.pipelined(5, n)
	tokens := 0
	for _, r := range h.encrypted(n) {
		tokens += countTokens(decode(t, r).Data)
	}
	in := egress.Integration{Name: "desk", Kind: reveal.KindSupport, Ledgers: allLedgers, Topic: "out.desk"}
	cfg := egress.Config{Integration: in, TransactionalID: "veil-test", MaxPoll: 20, Workers: 2}

	// The first run opens 150 tokens and then hangs on the store mid-batch, several
	// transactions in: it is stopped there.
	gate := &gatedStore{Store: h.store, pass: 150, held: make(chan struct{})}
	first := cfg
	first.Opener = &reveal.Opener{Store: gate, Sealer: h.sealer}
	stop := h.runStage(first)
	select {
	case <-gate.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the first run never reached the store gate")
	}
	stop()
	before := h.consume(1, 10*time.Second, in.Topic)
	if len(before) == 0 || len(before) >= n {
		t.Fatalf("first run delivered %d entries, want some but not all", len(before))
	}
	t.Logf("first run delivered %d of %d entries", len(before), n)
	h.runStage(cfg)

	out := h.consume(n, 60*time.Second, in.Topic)
	if len(out) != n {
		t.Fatalf("delivered %d entries across the restart, want %d", len(out), n)
	}
	seen := map[string]int{}
	for _, r := range out {
		seen[decode(t, r).ID]++
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s delivered %d times, want once", id, c)
		}
	}
	as := audits(t, h.consume(tokens, 30*time.Second, broker.AuditTopic), in.Name)
	if len(as) != tokens {
		t.Errorf("%d audit records, want %d (one per token)", len(as), tokens)
	}
	once := map[string]int{}
	for _, a := range as {
		once[fmt.Sprintf("%s/%s/%d", a.App, a.Ref, a.Field)]++
	}
	for k, c := range once {
		if c != 1 {
			t.Errorf("field %s audited %d times, want once", k, c)
		}
	}
}

// flakyStore fails reads until up is set: the store outage a decrypting stage must wait out.
type flakyStore struct {
	store.Store
	up    atomic.Bool
	fails chan struct{} // receives (without blocking) on each failed read
}

var errStoreDown = errors.New("store down (test)")

func (f *flakyStore) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	if !f.up.Load() {
		select {
		case f.fails <- struct{}{}:
		default:
		}
		return store.Item{}, errStoreDown
	}
	return f.Store.Get(ctx, app, ref)
}

// gatedStore passes the first pass reads, then blocks every read until its context ends.
type gatedStore struct {
	store.Store
	pass     int32
	n        atomic.Int32
	held     chan struct{}
	heldOnce sync.Once
}

func (g *gatedStore) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	if g.n.Add(1) > g.pass {
		g.heldOnce.Do(func() { close(g.held) })
		<-ctx.Done()
		return store.Item{}, ctx.Err()
	}
	return g.Store.Get(ctx, app, ref)
}

// recorder is an Observer that remembers whether the store was reported down.
type recorder struct {
	mu        sync.Mutex
	storeDown bool
	committed int
}

func (r *recorder) Batch(_ string, b egress.BatchStats, committed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if committed {
		r.committed += b.Delivered
	}
}

func (r *recorder) Dependency(name string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "store" && !ok {
		r.storeDown = true
	}
}

func (r *recorder) sawStoreDown() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.storeDown
}

// TestStoreDownHolds: with the store unreachable a decrypting integration delivers nothing (no
// token where a value belongs) and resumes by itself; a redacting one never opens anything and
// keeps delivering.
func TestStoreDownHolds(t *testing.T) {
	h := newHarness(t, nil)
	fs := &flakyStore{Store: h.store, fails: make(chan struct{}, 1)}
	const n = 60
	_, byID, _ := h.pipelined(9, n)
	h.encrypted(n)
	opener := &reveal.Opener{Store: fs, Sealer: h.sealer}
	desk := egress.Integration{Name: "desk", Kind: reveal.KindSupport, Ledgers: allLedgers, Topic: "out.desk"}
	crm := egress.Integration{Name: "crm", Kind: reveal.KindOther, Ledgers: allLedgers, Topic: "out.crm"}
	obs := &recorder{}
	h.runStage(egress.Config{Integration: desk, Opener: opener, Observer: obs})
	h.runStage(egress.Config{Integration: crm, Opener: opener})

	if got := len(h.consume(n, 30*time.Second, crm.Topic)); got != n {
		t.Fatalf("redacting integration delivered %d entries with the store down, want %d", got, n)
	}
	select {
	case <-fs.fails:
	case <-time.After(20 * time.Second):
		t.Fatal("the decrypting stage never tried the store")
	}
	if got := len(h.consume(0, 500*time.Millisecond, desk.Topic)); got != 0 {
		t.Fatalf("decrypting integration delivered %d entries with the store down", got)
	}
	if !obs.sawStoreDown() {
		t.Errorf("observer never saw the store down")
	}
	fs.up.Store(true)
	out := h.consume(n, 60*time.Second, desk.Topic)
	if len(out) != n {
		t.Fatalf("after the store returned: %d entries, want %d", len(out), n)
	}
	testkit.WaitFor(t, 5*time.Second, "observer counts every delivery", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.committed == n
	})
	for _, r := range out {
		got := decode(t, r)
		if !reflect.DeepEqual(got.Data, byID[got.ID].Data) {
			t.Errorf("%s: data differs from the original after recovery", got.ID)
		}
	}
}

func TestIntegrationRules(t *testing.T) {
	tests := []struct {
		name     string
		in       egress.Integration
		valid    bool
		decrypts bool
	}{
		{"messaging", egress.Integration{Name: "m", Kind: reveal.KindMessaging, Ledgers: []string{"event"}, Topic: "out.m"}, true, true},
		{"support", egress.Integration{Name: "s", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Topic: "out.s"}, true, true},
		{"other", egress.Integration{Name: "o", Kind: reveal.KindOther, Ledgers: []string{"event"}, Topic: "out.o"}, true, false},
		{"other override", egress.Integration{Name: "o", Kind: reveal.KindOther, Override: true, Ledgers: []string{"event"}, Topic: "out.o"}, true, true},
		{"admin kind", egress.Integration{Name: "a", Kind: reveal.KindAdmin, Ledgers: []string{"event"}, Topic: "out.a"}, false, false},
		{"no kind", egress.Integration{Name: "a", Ledgers: []string{"event"}, Topic: "out.a"}, false, false},
		{"override on messaging", egress.Integration{Name: "m", Kind: reveal.KindMessaging, Override: true, Ledgers: []string{"event"}, Topic: "out.m"}, false, true},
		{"bad name", egress.Integration{Name: "a b", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Topic: "out.a"}, false, true},
		{"no ledgers", egress.Integration{Name: "a", Kind: reveal.KindSupport, Topic: "out.a"}, false, true},
		{"unknown ledger", egress.Integration{Name: "a", Kind: reveal.KindSupport, Ledgers: []string{"nope"}, Topic: "out.a"}, false, true},
		{"bad app", egress.Integration{Name: "a", Kind: reveal.KindSupport, Apps: []string{"a/b"}, Ledgers: []string{"event"}, Topic: "out.a"}, false, true},
		{"no topic", egress.Integration{Name: "a", Kind: reveal.KindSupport, Ledgers: []string{"event"}}, false, true},
		{"encrypted topic", egress.Integration{Name: "a", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Topic: "encrypted.event"}, false, true},
		{"redacted topic", egress.Integration{Name: "a", Kind: reveal.KindOther, Ledgers: []string{"event"}, Topic: "redacted.event"}, false, false},
		{"raw topic", egress.Integration{Name: "a", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Topic: "ledger.event"}, false, true},
		{"audit topic", egress.Integration{Name: "a", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Topic: broker.AuditTopic}, false, true},
		{"topic with slash", egress.Integration{Name: "a", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Topic: "out/a"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.in.Validate(); (err == nil) != tt.valid {
				t.Errorf("Validate() = %v, want valid %v", err, tt.valid)
			}
			if got := tt.in.Decrypts(); got != tt.decrypts {
				t.Errorf("Decrypts() = %v, want %v", got, tt.decrypts)
			}
			if tt.valid {
				s, err := egress.New(egress.Config{Integration: tt.in, Opener: &reveal.Opener{}, Brokers: []string{"127.0.0.1:1"}})
				if err != nil {
					t.Fatalf("New() = %v, want a stage", err)
				}
				s.Close(context.Background())
			} else if _, err := egress.New(egress.Config{Integration: tt.in, Opener: &reveal.Opener{}}); err == nil {
				t.Errorf("New() accepted an invalid integration")
			}
		})
	}
	filter := egress.Integration{Apps: []string{"app-1"}}
	all := egress.Integration{}
	for _, tt := range []struct {
		in   *egress.Integration
		app  string
		want bool
	}{{&filter, "app-1", true}, {&filter, "app-2", false}, {&all, "app-2", true}} {
		if got := tt.in.Delivers(tt.app); got != tt.want {
			t.Errorf("Integration{Apps: %v}.Delivers(%q) = %v, want %v", tt.in.Apps, tt.app, got, tt.want)
		}
	}
}
