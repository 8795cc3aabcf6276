// Package reveal turns tokens back into values for callers that are allowed to see them: it looks
// the sealed record up in the encrypted store and opens it. Past the TTL, after erasure or for a
// token that does not authenticate, it answers a status and never a value.
package reveal

import (
	"context"
	"errors"
	"fmt"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/sinks/store"
)

// Status is the outcome of opening one token.
type Status string

const (
	StatusOK      Status = "ok"
	StatusExpired Status = "expired" // past its TTL, erased, or its keys destroyed: the value is gone
	StatusDenied  Status = "denied"
	StatusInvalid Status = "invalid" // not a token, or it does not authenticate
)

// Opener opens tokens from the encrypted store.
type Opener struct {
	Store  store.Store
	Sealer *envelope.Sealer
}

// Open returns the JSON value sealed behind token. A non-nil error is a transient failure (store,
// KMS) and never carries the value; every other outcome is a Status.
func (o *Opener) Open(ctx context.Context, token string) ([]byte, Status, error) {
	tok, err := envelope.ParseToken(token)
	if err != nil {
		return nil, StatusInvalid, nil
	}
	return o.OpenToken(ctx, tok)
}

// OpenToken is Open for a parsed token.
func (o *Opener) OpenToken(ctx context.Context, tok envelope.Token) ([]byte, Status, error) {
	item, err := o.Store.Get(ctx, tok.App, tok.Ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, StatusExpired, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading sealed record: %w", err)
	}
	var rec envelope.Record
	if err := rec.UnmarshalBinary(item.Value); err != nil {
		return nil, StatusInvalid, nil
	}
	v, err := o.Sealer.Open(ctx, &rec, tok)
	switch {
	case err == nil:
		return v, StatusOK, nil
	case errors.Is(err, envelope.ErrExpired), errors.Is(err, keyring.ErrKeyDestroyed):
		return nil, StatusExpired, nil
	case errors.Is(err, envelope.ErrInvalid):
		return nil, StatusInvalid, nil
	default:
		return nil, "", fmt.Errorf("opening token: %w", err)
	}
}
