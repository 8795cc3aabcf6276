package envelope

import "encoding/hex"

// String returns the ref id in hex. A ref id is not a secret: it only names a store row, which
// is useless without the ref KEK held by the token.
func (r RefID) String() string { return hex.EncodeToString(r[:]) }

// IsZero reports whether r is the zero ref id, which Seal refuses.
func (r RefID) IsZero() bool { return r == RefID{} }
