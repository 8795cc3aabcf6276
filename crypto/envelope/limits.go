package envelope

// Limits enforced when sealing and when parsing records and tokens. They keep every length in
// the binary layouts within a fixed-width prefix and bound what a parser will ever allocate.
const (
	MaxAppLen    = 64       // bytes of an app id, charset [A-Za-z0-9._-]
	MaxLedgerLen = 64       // bytes of a ledger name, same charset
	MaxFields    = 255      // fields in one record; a field index fits in a uint8
	MaxPathLen   = 256      // bytes of one field path
	MaxValueSize = 16 << 20 // bytes of one plaintext value
)

const (
	keySize   = 32 // AES-256
	nonceSize = 12 // GCM standard nonce
	tagSize   = 16 // GCM tag

	// wrappedDEKSize is nonce || AES-GCM(appKEK, DEK ⊕ refKEK).
	wrappedDEKSize = nonceSize + keySize + tagSize
)

// validName reports whether s is a non-empty id of at most max bytes of [A-Za-z0-9._-]. The
// charset keeps ids printable and free of any separator a store or a log might interpret.
func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
