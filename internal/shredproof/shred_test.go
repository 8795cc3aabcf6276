package shredproof_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/dynamokeys"
	"github.com/veil-project/veil/crypto/keyring/rediskeys"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/internal/testclock"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/sinks/store"
	"github.com/veil-project/veil/sinks/store/badgerstore"
	"github.com/veil-project/veil/sinks/store/dynamostore"
	"github.com/veil-project/veil/sinks/store/redisstore"
)

var ctx = context.Background()

// keyWindow is the keys.window the keyring runs with; the bounds below use window. (Set it to
// 24 * time.Hour to see the proof fail as it did with 24 h keys.)
var keyWindow = window

const (
	window  = time.Minute // keys.window: the shortest
	grace   = keyring.WindowGrace
	janitor = time.Minute      // how often veil deletes keys past their destroy time, windows on (cmd/veil keyJanitorInterval)
	step    = 15 * time.Second // how often the attacker tries
	perTTL  = 12               // entries per ledger, sealed 10 s apart (three windows)
)

var ledgers = []struct {
	name string
	ttl  time.Duration
}{{"log", time.Hour}, {"event", 24 * time.Hour}}

// backend is one store with the key store veil uses beside it (keys.store defaults to the
// store's backend; Badger's is the file key store in the data dir).
type backend struct {
	name string
	// open returns the store (its Get judging expiry by clk) and the key store.
	open func(t *testing.T, clk func() time.Time) (store.Store, keyring.KeyStore)
	// rows returns every row the store still holds for refs, read as an attacker would: with a
	// clock set before every expiry, so rows past their TTL that are not deleted yet are read too.
	rows func(t *testing.T, refs []entry) map[[16]byte][]byte
}

type entry struct {
	app, ledger, value string
	ref                [16]byte
	sealedAt, expiry   time.Time
	record             []byte
	token              envelope.Token
}

func backends(t *testing.T) []backend {
	var bs []backend
	// Badger: the data dir is copied (closed first, as a backup would) and reopened by the
	// attacker with a clock of their choosing.
	{
		dir := t.TempDir()
		var st *badgerstore.Store
		bs = append(bs, backend{
			name: "badger",
			open: func(t *testing.T, clk func() time.Time) (store.Store, keyring.KeyStore) {
				var err error
				if st, err = badgerstore.Open(filepath.Join(dir, "store"), badgerstore.WithClock(clk)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close(ctx) })
				ks, err := keyring.NewFileKeyStore(filepath.Join(dir, "keys"))
				if err != nil {
					t.Fatal(err)
				}
				return st, ks
			},
			rows: func(t *testing.T, es []entry) map[[16]byte][]byte {
				cp := filepath.Join(t.TempDir(), "copy")
				if err := copyDir(filepath.Join(dir, "store"), cp); err != nil {
					t.Fatal(err)
				}
				return readRows(t, es, func(clk func() time.Time) (store.Store, error) {
					return badgerstore.Open(cp, badgerstore.WithClock(clk))
				})
			},
		})
	}
	// Redis: one server holds the store and the key store, as in a deployment; its rows are read
	// with the attacker's clock (the server's own expiry has not run: its clock is real time).
	{
		var addr string
		bs = append(bs, backend{
			name: "redis",
			open: func(t *testing.T, clk func() time.Time) (store.Store, keyring.KeyStore) {
				addr = testsvc.Redis(t)
				st, err := redisstore.Open(ctx, redisstore.Options{Server: redisconn.Server{Addr: addr}, Clock: clk})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close(ctx) })
				ks, err := rediskeys.Open(ctx, rediskeys.Options{Server: redisconn.Server{Addr: addr}, Prefix: "veil:keys:"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ks.Close(context.Background()) })
				return st, ks
			},
			rows: func(t *testing.T, es []entry) map[[16]byte][]byte {
				return readRows(t, es, func(clk func() time.Time) (store.Store, error) {
					return redisstore.Open(ctx, redisstore.Options{Server: redisconn.Server{Addr: addr}, Clock: clk})
				})
			},
		})
	}
	// DynamoDB (dynalite, which never runs TTL deletion: the worst case of DynamoDB's lag).
	{
		var endpoint string
		opts := func(clk func() time.Time) dynamostore.Options {
			return dynamostore.Options{Table: "veil", Conn: dynatable.Conn{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "test", SecretAccessKey: "test"}, CreateTable: true, Clock: clk}
		}
		bs = append(bs, backend{
			name: "dynamodb",
			open: func(t *testing.T, clk func() time.Time) (store.Store, keyring.KeyStore) {
				endpoint = testsvc.Dynalite(t)
				st, err := dynamostore.Open(ctx, opts(clk))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close(ctx) })
				ks, err := dynamokeys.Open(ctx, dynamokeys.Options{Table: "veil-keys", Conn: dynatable.Conn{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "test", SecretAccessKey: "test"}, CreateTable: true})
				if err != nil {
					t.Fatal(err)
				}
				return st, ks
			},
			rows: func(t *testing.T, es []entry) map[[16]byte][]byte {
				return readRows(t, es, func(clk func() time.Time) (store.Store, error) {
					return dynamostore.Open(ctx, opts(clk))
				})
			},
		})
	}
	return bs
}

// readRows opens a store with a clock before every expiry and reads every entry's row.
func readRows(t *testing.T, es []entry, open func(func() time.Time) (store.Store, error)) map[[16]byte][]byte {
	t.Helper()
	early := es[0].sealedAt.Add(-time.Minute)
	st, err := open(func() time.Time { return early })
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	out := make(map[[16]byte][]byte)
	for _, e := range es {
		it, err := st.Get(ctx, e.app, e.ref)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[e.ref] = it.Value
	}
	return out
}

// snapshot is what an attacker holds: the tokens of every encrypted topic, rows of the store, the
// key store's records (tombstones and keys past their DestroyAt not deleted yet included) and a
// copy of the KMS root.
type snapshot struct {
	tokens []envelope.Token
	rows   map[[16]byte][]byte
	keys   []keyring.WrappedKey
	kms    keyring.KMS
}

// offlineOpen opens tok from rec bytes with nothing but the snapshot: it looks the record's key
// up in the key store copy, unwraps it with the KMS root and opens the field, ignoring every
// expiry and DestroyAt.
func offlineOpen(s snapshot, recBytes []byte, tok envelope.Token) (string, bool) {
	var rec envelope.Record
	if err := rec.UnmarshalBinary(recBytes); err != nil {
		return "", false
	}
	for _, wk := range s.keys {
		if wk.App != rec.App || wk.Period != rec.Period || wk.Erased || len(wk.Ciphertext) == 0 {
			continue
		}
		out, err := s.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wk.Ciphertext, EncryptionContext: keyring.EncryptionContext(wk.App, wk.Period)})
		if err != nil {
			continue
		}
		key, err := envelope.NewAppKey(rec.App, rec.Period, out.Plaintext)
		if err != nil {
			continue
		}
		pt, err := envelope.OpenWith(key, &rec, tok, rec.Expiry.Add(-time.Second)) // as if before expiry
		if err == nil {
			return string(pt), true
		}
	}
	return "", false
}

// TestNothingOpensAfterTTL is the attacker's proof (issue 19): for every store, entries sealed on
// a 1 h and a 24 h ledger with 1 min key windows can all be opened offline from a snapshot taken
// before their TTL, and none from a snapshot taken at expiry + window + grace + one janitor period
// (veil deletes keys past their destroy time every minute; Redis expires them at that second),
// although every row is still there. It steps the clock by 15 s past each expiry, running the
// janitor every minute as veil does, to measure the longest time a token stays recoverable.
func TestNothingOpensAfterTTL(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t0 := time.Now().UTC().Truncate(time.Minute).Add(7 * time.Second)
			clk := testclock.New(t0)
			st, ks := b.open(t, clk.Now)
			topics := newTopics(t)
			rootPath := filepath.Join(t.TempDir(), "root.key")
			root, err := kmslocal.Open(rootPath)
			if err != nil {
				t.Fatal(err)
			}
			kr, err := keyring.New(keyring.Config{KMS: root, KeyID: kmslocal.DefaultKeyID, Store: ks, Clock: clk.Now, Window: keyWindow, Prefetch: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kr.Close(context.Background()) })
			sealer := envelope.NewSealer(kr, envelope.WithClock(clk.Now))

			var es []entry
			for i := range perTTL {
				clk.Set(t0.Add(time.Duration(i) * 10 * time.Second))
				for _, l := range ledgers {
					e := entry{app: "app-1", ledger: l.name, value: fmt.Sprintf(`"secret %s %d"`, l.name, i), sealedAt: clk.Now(), expiry: clk.Now().Add(l.ttl)}
					rand.Read(e.ref[:])
					rec, toks, err := sealer.Seal(ctx, envelope.Header{App: e.app, Ledger: e.ledger, Ref: e.ref, Expiry: e.expiry}, []envelope.Field{{Path: "data.text", Value: []byte(e.value)}})
					if err != nil {
						t.Fatal(err)
					}
					if e.record, err = rec.MarshalBinary(); err != nil {
						t.Fatal(err)
					}
					e.token = toks[0]
					topics.produce(t, e)
					if err := st.Put(ctx, []store.Item{{App: e.app, Ref: e.ref, Expiry: e.expiry, Value: e.record}}); err != nil {
						t.Fatal(err)
					}
					es = append(es, e)
				}
			}
			// The KMS root never changes (a KMS key cannot be deleted in less than 7 days): the
			// attacker keeps a copy of it, i.e. KMS access, for ever.
			rootCopy, err := os.ReadFile(rootPath)
			if err != nil {
				t.Fatal(err)
			}
			attackerKMS, err := kmslocal.New(rootCopy)
			if err != nil {
				t.Fatal(err)
			}
			take := func(rows bool) snapshot {
				t.Helper()
				keys, err := ks.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				s := snapshot{keys: keys, kms: attackerKMS}
				if rows {
					s.rows = b.rows(t, es)
					s.tokens = topics.tokens(t, len(es))
				}
				return s
			}
			values := make(map[[16]byte]string)
			for _, e := range es {
				values[e.ref] = e.value
			}
			// recover opens every token of the topics' snapshot with the row its ref names.
			recover := func(s snapshot) int {
				n := 0
				for _, tok := range s.tokens {
					if v, ok := offlineOpen(s, s.rows[tok.Ref], tok); ok && v == values[tok.Ref] {
						n++
					}
				}
				return n
			}

			// Before the TTL: every value comes back (the opener works; the test can fail).
			before := take(true)
			if len(before.rows) != len(es) || len(before.tokens) != len(es) {
				t.Fatalf("snapshot before the TTL holds %d rows and %d tokens, want %d", len(before.rows), len(before.tokens), len(es))
			}
			if n := recover(before); n != len(es) {
				t.Fatalf("offline opener on a snapshot before the TTL recovered %d of %d values, want all", n, len(es))
			}

			// Past each ledger's TTL, step by 15 s (the janitor running every minute) and try every token
			// of that ledger with the key store as it stands, rows being all kept.
			all := make(map[[16]byte][]byte)
			for _, e := range es {
				all[e.ref] = e.record
			}
			for _, l := range ledgers {
				var mine []entry
				for _, e := range es {
					if e.ledger == l.name {
						mine = append(mine, e)
					}
				}
				last := make(map[[16]byte]time.Time)
				first, lastExp := mine[0].expiry, mine[len(mine)-1].expiry
				end := lastExp.Add(window + grace + janitor)
				ran := t0 // the janitor ran at t0 (veil's start), and runs every minute from then
				for now := first.Add(-step); !now.After(end); now = now.Add(step) {
					if due := ran.Add(now.Sub(ran) / janitor * janitor); due.After(ran) {
						ran = due
						clk.Set(due)
						if _, err := kr.DestroyExpired(ctx); err != nil {
							t.Fatal(err)
						}
					}
					clk.Set(now)
					s := take(false)
					s.rows = all
					for _, e := range mine {
						if v, ok := offlineOpen(s, e.record, e.token); ok && v == e.value {
							last[e.ref] = now
						}
					}
				}
				var worst, worstTotal time.Duration
				for _, e := range mine {
					at, ok := last[e.ref]
					if !ok {
						t.Errorf("%s: token never recoverable at its expiry - %s", l.name, step)
						continue
					}
					if d := at.Sub(e.expiry); d > worst {
						worst = d
					}
					if d := at.Sub(e.sealedAt); d > worstTotal {
						worstTotal = d
					}
					if limit := e.expiry.Add(window + grace + janitor); !at.Before(limit) {
						t.Errorf("%s: a token sealed at %s (expiry %s) still opened offline at %s, past expiry + window + grace + janitor", l.name, e.sealedAt.Format(time.TimeOnly), e.expiry.Format(time.TimeOnly), at.Format(time.TimeOnly))
					}
				}
				t.Logf("%s %s (TTL %s): longest recoverable after expiry %s (bound window %s + grace %s + janitor %s), longest recoverable lifetime %s", b.name, l.name, l.ttl, worst, window, grace, janitor, worstTotal)
			}

			// At the last expiry + window + grace + janitor: the whole snapshot (every row, the key
			// store, the KMS root) opens nothing, although the rows are all still there.
			after := take(true)
			if len(after.tokens) != len(es) {
				t.Fatalf("encrypted topics hold %d tokens after the TTL, want %d (retention outlives the TTL)", len(after.tokens), len(es))
			}
			if len(after.rows) != len(es) {
				t.Logf("%s: %d of %d rows still held by the store after the TTL", b.name, len(after.rows), len(es))
			}
			for _, e := range es {
				if _, ok := after.rows[e.ref]; !ok {
					after.rows[e.ref] = e.record // the attacker's own older copy
				}
			}
			if n := recover(after); n != 0 {
				t.Errorf("offline opener on a snapshot at expiry + window + grace recovered %d of %d values, want 0", n, len(es))
			}
			st2 := kr.Stats()
			t.Logf("%s: KMS GenerateDataKey %d, Decrypt %d for %d entries over %s of sealing", b.name, st2.GenerateDataKey, st2.Decrypt, len(es), time.Duration(perTTL-1)*10*time.Second)
		})
	}
}

func copyDir(from, to string) error {
	return filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// topicsT is a Kafka cluster (kfake) holding the encrypted topics: each sealed entry is produced as
// the pipeline's encrypted output carries it, its value replaced by its token; retention outlives
// the TTL.
type topicsT struct {
	cl *kgo.Client
	cf *kfake.Cluster
}

func newTopics(t *testing.T) *topicsT {
	t.Helper()
	var names []string
	for _, l := range ledgers {
		names = append(names, broker.EncryptedTopic(l.name))
	}
	c := testkit.Kafka(t, kfake.SeedTopics(1, names...))
	cl := testkit.Client(t, c)
	return &topicsT{cl: cl, cf: c}
}

func (tp *topicsT) produce(t *testing.T, e entry) {
	t.Helper()
	v, _ := json.Marshal(map[string]any{"app_id": e.app, "ledger": e.ledger, "data": map[string]string{"text": e.token.Encode()}})
	if err := tp.cl.ProduceSync(ctx, &kgo.Record{Topic: broker.EncryptedTopic(e.ledger), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// tokens reads every encrypted topic from the start (a copy of the topics) and returns the tokens
// they carry.
func (tp *topicsT) tokens(t *testing.T, want int) []envelope.Token {
	t.Helper()
	var names []string
	for _, l := range ledgers {
		names = append(names, broker.EncryptedTopic(l.name))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(tp.cf.ListenAddrs()...), kgo.ConsumeTopics(names...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []envelope.Token
	for len(out) < want && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			var m struct {
				Data struct {
					Text string `json:"text"`
				} `json:"data"`
			}
			if json.Unmarshal(r.Value, &m) != nil || !envelope.IsToken(m.Data.Text) {
				return
			}
			if tok, err := envelope.ParseToken(m.Data.Text); err == nil {
				out = append(out, tok)
			}
		})
	}
	return out
}
