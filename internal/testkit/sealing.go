package testkit

import (
	"testing"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
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
