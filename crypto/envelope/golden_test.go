package envelope

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json")

// golden pins the v1 formats: a change to the record layout, the token layout, the associated
// data or the key hierarchy shows up as a diff here, and records sealed by an older build must
// still open.
type golden struct {
	Comment string        `json:"comment"`
	KEK     string        `json:"kek"`
	Period  int64         `json:"period"`
	Seed    string        `json:"rand_seed"`
	App     string        `json:"app"`
	Ledger  string        `json:"ledger"`
	Ref     string        `json:"ref"`
	Expiry  int64         `json:"expiry_unix"`
	Fields  []goldenField `json:"fields"`
	Record  string        `json:"record"`
	Tokens  []string      `json:"tokens"`
}

type goldenField struct {
	Path  string `json:"path"`
	Value string `json:"value_hex"`
}

const goldenPath = "testdata/golden.json"

func goldenInput() golden {
	return golden{
		Comment: "record v2 and tokens sealed with a fixed KEK and rand stream; regenerate with go test -run TestGolden -update",
		KEK:     hex.EncodeToString(testKEK),
		Period:  20414,
		Seed:    "veil golden v1",
		App:     "app-42",
		Ledger:  "event",
		Ref:     "0102030405060708090a0b0c0d0e0f10",
		Expiry:  testExpiry.Unix(),
		Fields: []goldenField{
			{Path: "data.text", Value: hex.EncodeToString([]byte(`"my email is jane@example.com"`))},
			{Path: "data.empty", Value: ""},
			{Path: "data.fields", Value: hex.EncodeToString([]byte(`{"phone":"+1 555 0100"}`))},
		},
	}
}

func (g *golden) decode(t *testing.T) (*AppKey, Header, []Field) {
	t.Helper()
	kek, err := hex.DecodeString(g.KEK)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewAppKey(g.App, g.Period, kek)
	if err != nil {
		t.Fatal(err)
	}
	h := Header{App: g.App, Ledger: g.Ledger, Expiry: time.Unix(g.Expiry, 0)}
	ref, err := hex.DecodeString(g.Ref)
	if err != nil || len(ref) != len(h.Ref) {
		t.Fatalf("golden ref %q", g.Ref)
	}
	copy(h.Ref[:], ref)
	var fields []Field
	for _, f := range g.Fields {
		v, err := hex.DecodeString(f.Value)
		if err != nil {
			t.Fatal(err)
		}
		fields = append(fields, Field{Path: f.Path, Value: v})
	}
	return key, h, fields
}

func TestGolden(t *testing.T) {
	want := goldenInput()
	if *update {
		key, h, fields := want.decode(t)
		rec, toks, err := SealWith(key, newDetRand(want.Seed), h, fields)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := rec.MarshalBinary()
		want.Record = hex.EncodeToString(b)
		for _, tok := range toks {
			want.Tokens = append(want.Tokens, tok.Encode())
		}
		out, _ := json.MarshalIndent(want, "", "  ")
		if err := os.WriteFile(filepath.FromSlash(goldenPath), append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	data, err := os.ReadFile(filepath.FromSlash(goldenPath))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	key, h, fields := g.decode(t)

	t.Run("reseal", func(t *testing.T) {
		rec, toks, err := SealWith(key, newDetRand(g.Seed), h, fields)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := rec.MarshalBinary()
		if got := hex.EncodeToString(b); got != g.Record {
			t.Errorf("sealed record = %s, want %s", got, g.Record)
		}
		for i, tok := range toks {
			if got := tok.Encode(); got != g.Tokens[i] {
				t.Errorf("token %d = %s, want %s", i, got, g.Tokens[i])
			}
		}
	})
	t.Run("open", func(t *testing.T) {
		b, err := hex.DecodeString(g.Record)
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Tokens) != len(fields) {
			t.Fatalf("golden has %d tokens, want %d", len(g.Tokens), len(fields))
		}
		for i, s := range g.Tokens {
			pt, err := openBytes(key, b, s)
			if err != nil || !bytes.Equal(pt, fields[i].Value) {
				t.Errorf("Open(golden token %d) = (%q, %v), want %q", i, pt, err, fields[i].Value)
			}
		}
	})
}
