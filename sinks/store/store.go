// Package store defines the encrypted store: ref → sealed record, with an expiry that every
// implementation enforces on read as well as by its native TTL, so a late physical delete never
// revives data. The store holds only ciphertext and wrapped keys: alone it can decrypt nothing.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// ErrInvalidApp is returned when an app id cannot be used in a key: empty, longer than
// MaxAppLen, or holding a byte outside AppChars. Backends build keys and scan patterns from the
// app id, so an unchecked id could reach another app's items.
var ErrInvalidApp = errors.New("store: invalid app id")

// MaxAppLen is the longest app id a store accepts, in bytes.
const MaxAppLen = 128

// AppChars lists the punctuation allowed in an app id besides ASCII letters and digits. It holds
// no key separator, hash-tag brace or glob metacharacter of any backend.
const AppChars = "-_.:@+="

// ValidateApp reports whether app can be used as an app id, wrapping ErrInvalidApp if not. The
// error names the reason only.
func ValidateApp(app string) error {
	if app == "" {
		return fmt.Errorf("%w: empty", ErrInvalidApp)
	}
	if len(app) > MaxAppLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidApp, MaxAppLen)
	}
	for i := 0; i < len(app); i++ {
		c := app[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(AppChars, c) >= 0:
		default:
			return fmt.Errorf("%w: disallowed byte at offset %d", ErrInvalidApp, i)
		}
	}
	return nil
}

// Expired reports whether an item with the given expiry is dead at now. Stores keep expiries to
// the second (the grain of Redis EXAT and Badger ExpiresAt), so both are compared as Unix
// seconds: an item is dead from the first instant of its expiry second, never later, so a
// fraction of a second is only ever taken off an item's life, not added to it.
func Expired(expiry, now time.Time) bool {
	return now.Unix() >= expiry.Unix()
}
