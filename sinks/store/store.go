// Package store defines the encrypted store: ref → sealed record, with an expiry that every
// implementation enforces on read as well as by its native TTL, so a late physical delete never
// revives data. The store holds only ciphertext and wrapped keys: alone it can decrypt nothing.
package store

import (
	"context"
	"errors"
	"time"
)

// Item is one stored record. Value is the sealed record bytes (envelope.Record.MarshalBinary).
type Item struct {
	App    string
	Ref    [16]byte
	Expiry time.Time
	Value  []byte
}

// ErrNotFound is returned by Get when no live item exists for (app, ref): never written, deleted,
// or past its expiry.
var ErrNotFound = errors.New("store: not found")

// Store is the encrypted store.
type Store interface {
	// Put writes items; writing the same (app, ref) again overwrites it (idempotent by ref).
	// Items already past their expiry are skipped.
	Put(ctx context.Context, items []Item) error
	// Get returns the live item for (app, ref), or ErrNotFound.
	Get(ctx context.Context, app string, ref [16]byte) (Item, error)
	// Delete removes one item; deleting a missing item is not an error.
	Delete(ctx context.Context, app string, ref [16]byte) error
	// DeleteApp removes every item of app and reports how many it removed.
	DeleteApp(ctx context.Context, app string) (int, error)
	// Close releases the store; it is idempotent.
	Close(ctx context.Context) error
}
