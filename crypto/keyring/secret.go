package keyring

import (
	"fmt"
	"log/slog"
)

const redacted = "REDACTED"

// secret holds raw key bytes. It never prints them and can be zeroed in place.
type secret struct {
	b []byte
}

func (s *secret) String() string               { return redacted }
func (s *secret) GoString() string             { return redacted }
func (s *secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s *secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (s *secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// zero overwrites the key bytes. The AEAD built from them keeps its own expanded key schedule,
// which the standard library does not let us clear; it is dropped with the cache entry.
func (s *secret) zero() {
	clear(s.b)
}
