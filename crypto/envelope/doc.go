// Package envelope seals sensitive field values of one entry under a fresh DEK, wraps the DEK
// with a fresh per-entry ref KEK and then with the app KEK, and opens them again from a token.
// Nothing here does I/O: keys come from the caller (see Keys) and records go to a store.
package envelope

import (
	"crypto/cipher"
	"time"
)

// Redacted is the redacted view of every sensitive value.
const Redacted = "★★★★★"

// TokenPrefix starts every token.
const TokenPrefix = "veil:v1:"

// RefID names one sealed entry in the store.
type RefID [16]byte

// AppKey is an unwrapped app KEK for one (app, 24 h period). AEAD is AES-256-GCM under the KEK.
type AppKey struct {
	App    string
	Period int64 // index of the 24 h period: unix seconds / 86400
	AEAD   cipher.AEAD
}

// Header binds a record to its app, ledger, ref and expiry; all of it is authenticated.
type Header struct {
	App    string
	Ledger string
	Ref    RefID
	Expiry time.Time // ts + ledger TTL, second precision
}

// Field is one plaintext value to seal: Value is the JSON encoding of the field's value.
type Field struct {
	Path  string
	Value []byte
}
