// Package store defines the encrypted store: ref → sealed record, with an expiry that every
// implementation enforces on read as well as by its native TTL, so a late physical delete never
// revives data. The store holds only ciphertext and wrapped keys: alone it can decrypt nothing.
//
// One writer per ref. A ref is sealed once: Put writes a record only where (app, ref) holds none,
// atomically in every backend (a Badger transaction, Redis SET NX, a DynamoDB conditional put),
// so of two writers racing for one ref exactly one wins and the other is told (ErrExists). The
// tokens of a record carry the ref KEK its wrapped DEK needs, so a second record under the same
// ref would turn every token of the first into garbage: keeping the first is what keeps issued
// tokens revealable. A writer told ErrExists either skips the item (replay) or seals under a new
// ref (the pipeline retrying a batch whose first attempt was aborted): it never overwrites.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/veil-project/veil/names"
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

// ErrExists is returned (as an *ExistsError, which names the items) by Put when some items were
// not written because their (app, ref) already holds another record.
var ErrExists = errors.New("store: ref already sealed")

// ExistsError lists the items a Put did not write because their (app, ref) already held a
// different record, which was kept. errors.Is(err, ErrExists) reports it.
type ExistsError struct {
	Items []int // indexes into the items passed to Put, ascending
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%v: %d item(s) kept their first record", ErrExists, len(e.Items))
}

// Is makes errors.Is(err, ErrExists) true.
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

// Existing returns the indexes an *ExistsError in err's chain names, and whether there is one.
func Existing(err error) ([]int, bool) {
	var ee *ExistsError
	if errors.As(err, &ee) {
		return ee.Items, true
	}
	return nil, false
}

// Store is the encrypted store.
type Store interface {
	// Put writes each item whose (app, ref) holds no record yet (put-if-absent, atomic per
	// item). An item whose (app, ref) already holds a record is not written: the first record is
	// kept, and Put returns an *ExistsError naming it, unless the stored value is byte for byte
	// the item's (a retry of the same write, which succeeds). A record past its expiry that the
	// backend has not removed yet still holds its ref. Of several items with the same (app, ref)
	// in one call the first is written. Items already past their expiry are skipped. Every other
	// item is written even when some exist; the *ExistsError is returned only if nothing else
	// failed. On any other error some items may have been written, and a retry of the same items
	// is harmless.
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

// ErrInvalidApp is returned when an app id cannot be used in a key: it breaks the one name rule
// (package names), whose alphabet holds no key separator, hash-tag brace or glob metacharacter of
// any backend. Backends build keys and scan patterns from the app id, so an unchecked id could
// reach another app's items.
var ErrInvalidApp = errors.New("store: invalid app id")

// MaxAppLen is the longest app id a store accepts, in bytes.
const MaxAppLen = names.MaxLen

// ValidateApp reports whether app can be used as an app id, wrapping ErrInvalidApp if not. The
// error names the reason only.
func ValidateApp(app string) error {
	if err := names.Check(app); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidApp, err)
	}
	return nil
}

// ValidateItems checks the app id of every item as ValidateApp does, and returns the first
// error. Every Put runs it before writing anything.
func ValidateItems(items []Item) error {
	for _, it := range items {
		if err := ValidateApp(it.App); err != nil {
			return err
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

// Distinct sorts the items of one Put call by what the backend must do with them, so every backend
// applies the same rule: write lists the items to put if absent (live at now, the first of each
// (app, ref) in the call); dup lists later items with the (app, ref) of an earlier one but another
// value, which the earlier one wins (to report in an *ExistsError). Items past their expiry and
// exact repeats are in neither.
func Distinct(items []Item, now time.Time) (write, dup []int) {
	type key struct {
		app string
		ref [16]byte
	}
	first := make(map[key]int, len(items))
	for i, it := range items {
		if Expired(it.Expiry, now) {
			continue
		}
		k := key{it.App, it.Ref}
		j, seen := first[k]
		switch {
		case !seen:
			first[k] = i
			write = append(write, i)
		case !bytes.Equal(items[j].Value, it.Value):
			dup = append(dup, i)
		}
	}
	return write, dup
}

// ExistsResult returns nil if exists is empty, else an *ExistsError naming its indexes in order.
func ExistsResult(exists []int) error {
	if len(exists) == 0 {
		return nil
	}
	slices.Sort(exists)
	return &ExistsError{Items: exists}
}
