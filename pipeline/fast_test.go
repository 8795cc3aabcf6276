package pipeline

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline/sample"
	"github.com/veil-project/veil/schemas"
)

func newTestTransformer(t *testing.T) *Transformer {
	t.Helper()
	dir := t.TempDir()
	kms, err := kmslocal.Open(dir + "/root.key")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keyring.NewFileKeyStore(dir + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Config{KMS: kms, KeyID: kmslocal.DefaultKeyID, Store: ks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close(context.Background()) })
	table, err := ledgers.NewTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Transformer{Registry: schemas.DefaultRegistry(), Ledgers: table, Sealer: envelope.NewSealer(kr),
		Apps: func(string) (ledgers.AppSettings, bool) { return ledgers.DefaultAppSettings, true }}
}

// view decodes one output view and replaces the values at paths: by what their tokens open to
// (encrypted view) or by checking they are redacted (redacted view).
func view(t *testing.T, tr *Transformer, out Output, encrypted bool, paths []schemas.Path) *schemas.Entry {
	t.Helper()
	r := out.Redacted
	if encrypted {
		r = out.Encrypted
	}
	e, err := schemas.Decode(r.Value, schemas.Limits{})
	if err != nil {
		t.Fatalf("output does not decode: %v", err)
	}
	for _, p := range paths {
		v, ok := e.Get(p)
		if !ok {
			continue
		}
		s, _ := v.(string)
		if !encrypted {
			if s != envelope.Redacted {
				t.Errorf("redacted %s = %v, want %s", p, v, envelope.Redacted)
			}
			continue
		}
		tok, err := envelope.ParseToken(s)
		if err != nil {
			t.Fatalf("encrypted %s is not a token: %v", p, err)
		}
		var rec envelope.Record
		if err := rec.UnmarshalBinary(out.Item.Value); err != nil {
			t.Fatal(err)
		}
		plain, err := tr.Sealer.Open(context.Background(), &rec, tok)
		if err != nil {
			t.Fatalf("opening %s: %v", p, err)
		}
		var back any
		if err := json.Unmarshal(plain, &back); err != nil {
			t.Fatal(err)
		}
		e.Set(p, back)
	}
	return e
}

// TestFastPathMatchesGeneral runs the same entries through the fast and the general path and
// checks the outputs mean the same: same sensitivity and headers, redacted views equal, and
// encrypted views equal once every token is replaced by the value it opens to.
func TestFastPathMatchesGeneral(t *testing.T) {
	tr := newTestTransformer(t)
	now := time.Now().UTC().Truncate(time.Second)
	ts := now.Add(-time.Minute).Format(time.RFC3339)
	inputs := []struct{ ledger, value string }{
		{"event", `{"id":"e1","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"agent"},"data":{ "text" : "hi \"you\" ★", "z":1.50, "n":[1, {"a": 2}] }}`},
		{"event", `{"id":"e2","app_id":"app-1","ledger":"event","type":"meya.button.event.click","ts":"` + ts + `","thread":{"mode":"agent"},"data":{"data":{"b":1,"a":[true,null]},"text":"x"},"sensitive_paths":["data.extra.0"]}`},
		{"event", `{"id":"e3","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"bot"},"data":{"text":"not sensitive"}}`},
		{"event", `{"id":"e4","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"bot"},"sensitive":false,"sensitive_paths":["data.list.1"],"data":{"list":["a","b","c"],"text":"t"}}`},
		{"event", `{"id":"e5","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"agent"}}`},
		{"event", `{"id":"e6","app_id":"app-1","ledger":"event","type":"meya.text.event.say","ts":"` + ts + `","thread":{"mode":"agent"},"data":{}}`},
	}
	gen := sample.New(sample.Options{Seed: 11, Canaries: true, Now: func() time.Time { return now }})
	for range 300 {
		e := gen.Next()
		inputs = append(inputs, struct{ ledger, value string }{e.Ledger, string(e.Value)})
	}
	fast := 0
	for i, in := range inputs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			src := Source{Topic: broker.RawTopic(in.ledger), Partition: 1, Offset: int64(i)}
			if _, ok, err := tr.transformFast(context.Background(), src, []byte("k"), []byte(in.value)); ok && err == nil {
				fast++
			}
			got, err := tr.Transform(context.Background(), src, []byte("k"), []byte(in.value))
			if err != nil {
				t.Fatal(err)
			}
			generalOnly.Store(true)
			want, err := tr.Transform(context.Background(), src, []byte("k"), []byte(in.value))
			generalOnly.Store(false)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Item == nil) != (want.Item == nil) || got.Sensitive != want.Sensitive || (got.DeadLetter == nil) != (want.DeadLetter == nil) {
				t.Fatalf("fast output item/sensitive/deadletter = %v/%v/%v, want %v/%v/%v",
					got.Item != nil, got.Sensitive, got.DeadLetter != nil, want.Item != nil, want.Sensitive, want.DeadLetter != nil)
			}
			if want.DeadLetter != nil {
				return
			}
			if !reflect.DeepEqual(got.Encrypted.Headers, want.Encrypted.Headers) || !reflect.DeepEqual(got.Redacted.Headers, want.Redacted.Headers) {
				t.Errorf("fast headers = %v, want %v", got.Encrypted.Headers, want.Encrypted.Headers)
			}
			orig, err := schemas.Decode([]byte(in.value), schemas.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			d := ledgers.Decide(orig, ledgers.DefaultAppSettings, tr.Registry)
			var paths []schemas.Path
			for _, s := range d.Paths {
				if s == "data" {
					all, _ := orig.DataPaths()
					paths = append(paths, all...)
					continue
				}
				paths = append(paths, schemas.MustParsePath(s))
			}
			for _, encrypted := range []bool{true, false} {
				a, _ := view(t, tr, got, encrypted, paths).Encode()
				b, _ := view(t, tr, want, encrypted, paths).Encode()
				if string(a) != string(b) {
					t.Errorf("encrypted=%v: fast view\n%s\nwant\n%s", encrypted, a, b)
				}
			}
		})
	}
	if fast < len(inputs)/2 {
		t.Errorf("fast path taken for %d of %d entries, want most", fast, len(inputs))
	}
	t.Logf("fast path taken for %d of %d entries", fast, len(inputs))
}
