package keyring

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/veil-project/veil/names"
)

// ErrKeyNotFound is returned by KeyStore.Get when no key is stored for (app, period).
var ErrKeyNotFound = errors.New("keyring: key not found")

// ErrInvalidApp is returned when an app id breaks the one name rule (package names).
var ErrInvalidApp = errors.New("keyring: invalid app id")

// MaxAppLen is the longest app id accepted.
const MaxAppLen = names.MaxLen

// WrappedKey is an app KEK as the KMS wrapped it. Ciphertext is opaque to everything but the KMS
// that produced it, under the encryption context of (App, Period).
type WrappedKey struct {
	App        string
	Period     int64
	KeyID      string // the KMS key that wrapped Ciphertext
	Ciphertext []byte
	DestroyAt  time.Time
	// Erased marks a tombstone: the key was destroyed by EraseApp before its DestroyAt. A
	// tombstone has no KeyID and no Ciphertext; it stays until DestroyAt so that no process ever
	// creates another key under the same (App, Period) (see Tombstone).
	Erased bool
}

// KeyStore keeps wrapped app KEKs. It is shared by every veil process using the same KMS key.
type KeyStore interface {
	// Create stores k unless a key for (k.App, k.Period) already exists, and returns the stored
	// key: k itself, or the one another process stored first.
	Create(ctx context.Context, k WrappedKey) (WrappedKey, error)
	// Get returns the key of (app, period), or ErrKeyNotFound.
	Get(ctx context.Context, app string, period int64) (WrappedKey, error)
	// Delete removes the key of (app, period). Deleting a missing key is not an error.
	Delete(ctx context.Context, app string, period int64) error
	// List returns every stored key and tombstone, in no particular order.
	List(ctx context.Context) ([]WrappedKey, error)
	// Tombstone replaces the key of (app, period), stored or not, by a tombstone kept until
	// destroyAt: Get then returns it with Erased set, and Create returns it instead of storing.
	Tombstone(ctx context.Context, app string, period int64, destroyAt time.Time) error
	// Changes returns the store's change counter: a number that NoteChange increases and
	// nothing else changes. Keyrings poll it to learn of rotations and erasures elsewhere.
	Changes(ctx context.Context) (int64, error)
	// NoteChange increases the change counter atomically.
	NoteChange(ctx context.Context) error
	Replacer
}

// ValidateApp returns ErrInvalidApp unless app is a valid identifier under the one name rule
// (package names), which refuses "." and "..". Valid app ids are safe as file names and key-store
// keys.
func ValidateApp(app string) error {
	if err := names.Check(app); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidApp, err)
	}
	return nil
}
