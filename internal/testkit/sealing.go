package testkit

import (
	"testing"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/sinks/store"
	"github.com/veil-project/veil/sinks/store/badgerstore"
)

// Sealing is the reveal side's key stack on one settable clock: a keyring from LocalKeys (the
// local KMS under kmslocal.DefaultKeyID), a Badger store and a sealer, all reading Clock.
type Sealing struct {
	Clock  *Clock
	Keys   *keyring.Keyring
	Store  *badgerstore.Store
	Sealer *envelope.Sealer
}

// NewSealing opens a Sealing in dir, closed when the test ends.
func NewSealing(t testing.TB, dir string) *Sealing {
	t.Helper()
	clk := &Clock{}
	kr, _ := LocalKeys(t, dir, Keys{KeyID: kmslocal.DefaultKeyID, Clock: clk.Now})
	return &Sealing{Clock: clk, Keys: kr, Store: Badger(t, dir, badgerstore.WithClock(clk.Now)),
		Sealer: envelope.NewSealer(kr, envelope.WithClock(clk.Now))}
}

// SealStored seals fields as one entry under h, puts the sealed record into st under h.App and
// h.Ref as the pipeline does, and returns the fields' tokens.
func SealStored(t testing.TB, sealer *envelope.Sealer, st store.Store, h envelope.Header, fields ...envelope.Field) []envelope.Token {
	t.Helper()
	rec, toks, err := sealer.Seal(t.Context(), h, fields)
	if err != nil {
		t.Fatalf("sealing: %v", err)
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), []store.Item{{App: h.App, Ref: h.Ref, Expiry: rec.Expiry, Value: b}}); err != nil {
		t.Fatalf("storing: %v", err)
	}
	return toks
}
