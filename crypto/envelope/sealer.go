package envelope

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"
)

// Sealer seals and opens entries with app KEKs from a Keys. It is safe for concurrent use.
type Sealer struct {
	keys Keys
	rand io.Reader
	now  func() time.Time
}

// Option configures a Sealer.
type Option func(*Sealer)

// WithRand sets the source of DEKs, ref KEKs and nonces. The default is crypto/rand.Reader; only
// tests should change it.
func WithRand(r io.Reader) Option { return func(s *Sealer) { s.rand = r } }

// WithClock sets the clock Open checks expiry against. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(s *Sealer) { s.now = now } }

// NewSealer returns a Sealer over keys.
func NewSealer(keys Keys, opts ...Option) *Sealer {
	s := &Sealer{keys: keys, rand: rand.Reader, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Seal seals fields of one entry under the app's current KEK, or the KEK of its expiry window when
// the Keys is a WindowKeys (see SealWith). Inputs are checked
// before the key is fetched, so bad input never costs a KMS call. Cancelling ctx only affects
// fetching the key.
func (s *Sealer) Seal(ctx context.Context, h Header, fields []Field) (*Record, []Token, error) {
	if err := checkSeal(&h, fields); err != nil {
		return nil, nil, err
	}
	var key *AppKey
	var err error
	if wk, ok := s.keys.(WindowKeys); ok {
		key, err = wk.SealingKeyFor(ctx, h.App, h.Expiry)
	} else {
		key, err = s.keys.SealingKey(ctx, h.App)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sealing: getting app key: %w", err)
	}
	return sealChecked(key, s.rand, h, fields)
}

// Open returns the plaintext of the field tok names (see OpenWith). The token, the record and
// the expiry are checked first, so invalid or expired requests never fetch a key; then the key of
// the record's app and period is fetched. Cancelling ctx only affects fetching the key.
func (s *Sealer) Open(ctx context.Context, rec *Record, tok Token) ([]byte, error) {
	now := s.now()
	if err := checkOpen(rec, &tok, now); err != nil {
		return nil, err
	}
	key, err := s.keys.OpeningKey(ctx, rec.App, rec.Period)
	if err != nil {
		return nil, fmt.Errorf("opening: getting app key: %w", err)
	}
	return OpenWith(key, rec, tok, now)
}
