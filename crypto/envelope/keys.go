package envelope

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/veil-project/veil/internal/aesgcm"
)

// Keys supplies app KEKs. crypto/keyring implements it over the KMS and its cache.
type Keys interface {
	// SealingKey returns the key of app's current period, which new records are wrapped with.
	SealingKey(ctx context.Context, app string) (*AppKey, error)
	// OpeningKey returns the key of app for period, which a record sealed in that period needs.
	// A destroyed key (expired period or erased app) is an error: the data is gone.
	OpeningKey(ctx context.Context, app string, period int64) (*AppKey, error)
}

// WindowKeys is a Keys that chooses the sealing key by the entry's expiry (crypto/keyring with
// key windows), so the key can be destroyed soon after the data it seals expires. A Sealer over a
// WindowKeys seals with SealingKeyFor.
type WindowKeys interface {
	Keys
	// SealingKeyFor returns the key a record of app expiring at expiry is wrapped with.
	SealingKeyFor(ctx context.Context, app string, expiry time.Time) (*AppKey, error)
}

// NewAppKey builds the AES-256-GCM AEAD of a 32-byte app KEK. It keeps no reference to kek: the
// caller may (and should) zero it afterwards.
func NewAppKey(app string, period int64, kek []byte) (*AppKey, error) {
	if !validName(app, MaxAppLen) {
		return nil, fmt.Errorf("building app key: bad app id: %w", ErrInvalidInput)
	}
	if len(kek) != keySize {
		return nil, fmt.Errorf("building app key: KEK is %d bytes, want %d: %w", len(kek), keySize, ErrInvalidInput)
	}
	aead, err := aesgcm.New(kek)
	if err != nil {
		return nil, fmt.Errorf("building app key: %w", err)
	}
	return &AppKey{App: app, Period: period, AEAD: aead}, nil
}

// String describes the key without its material.
func (k *AppKey) String() string {
	if k == nil {
		return "appkey{nil}"
	}
	return "appkey{app=" + k.App + " period=" + strconv.FormatInt(k.Period, 10) + "}"
}

// GoString redacts like String.
func (k *AppKey) GoString() string { return k.String() }

// LogValue redacts like String.
func (k *AppKey) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("nil")
	}
	return slog.GroupValue(slog.String("app", k.App), slog.Int64("period", k.Period))
}

// usable reports that a caller-supplied key is one this package can use: standard GCM
// nonces and tags, so the wrapped DEK has its fixed size.
func (k *AppKey) usable() bool {
	return k != nil && k.AEAD != nil && k.AEAD.NonceSize() == nonceSize && k.AEAD.Overhead() == tagSize
}
