// Package names holds veil's one rule for identifiers: app ids, ledger names, entry types, principal
// names and the other ids that become keys, file names, topic names, metric labels or token bytes.
// Every package that accepts an identifier checks it here, so an id accepted at the edge (the
// decoder, the config) is accepted by everything after it (keyring, stores, tokens, reveal), and an
// id refused anywhere is refused at the edge.
//
// The rule (after OpenBao's GenericNameRegex): 1 to MaxLen bytes of [A-Za-z0-9._-], starting and
// ending with a letter, a digit or '_'. So "." and "..", and any name a path or a glob could
// interpret, are never identifiers.
package names

import (
	"errors"
	"fmt"
)

// MaxLen is the longest identifier, in bytes. It is what one length byte of the token and record
// layouts (crypto/envelope) allows with room to spare, and what every store key holds.
const MaxLen = 64

// ErrInvalid is returned by Check when s is not a valid identifier.
var ErrInvalid = errors.New("invalid name")

// Valid reports whether s is an identifier under the one rule.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen || !edge(s[0]) || !edge(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !edge(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// Check returns nil if s is a valid identifier, or an error wrapping ErrInvalid that says why
// without quoting s (an invalid name may be anything, including data).
func Check(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(s) > MaxLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	case !Valid(s):
		return fmt.Errorf("%w: only ASCII letters, digits, dots, underscores and dashes, starting and ending with a letter, digit or underscore", ErrInvalid)
	}
	return nil
}

func edge(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}
