package envelope

import "github.com/veil-project/veil/names"

// Limits enforced when sealing and when parsing records and tokens. They keep every length in
// the binary layouts within a fixed-width prefix and bound what a parser will ever allocate.
const (
	MaxAppLen    = names.MaxLen // bytes of an app id (names: the one identifier rule)
	MaxLedgerLen = names.MaxLen // bytes of a ledger name, same rule
	MaxFields    = 255          // fields in one record; a field index fits in a uint8
	MaxPathLen   = 256          // bytes of one field path
	MaxValueSize = 16 << 20     // bytes of one plaintext value
)

const (
	keySize   = 32 // AES-256
	nonceSize = 12 // GCM standard nonce
	tagSize   = 16 // GCM tag

	// wrappedDEKSize is nonce || AES-GCM(appKEK, DEK ⊕ refKEK).
	wrappedDEKSize = nonceSize + keySize + tagSize
)

// validName reports whether s is an identifier under the one name rule (package names) of at
// most max bytes. The rule keeps ids printable and free of any separator a store or a log might
// interpret.
func validName(s string, max int) bool {
	return len(s) <= max && names.Valid(s)
}
