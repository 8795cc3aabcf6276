// Package reveal turns tokens back into values for callers that are allowed to see them: it looks
// the sealed record up in the encrypted store and opens it. Past the TTL, after erasure or for a
// token that does not authenticate, it answers a status and never a value.
//
// The reveal API (Server) guarantees:
//   - TLS 1.2 or newer; plain HTTP only with an explicit switch and only on a loopback address.
//   - Callers are principals (principals file): only the SHA-256 of each API key is stored. A
//     principal of kind messaging or support may decrypt, other only with its override, admin
//     until the TTL; and only tokens of the apps it lists. Everyone else is refused (401) or
//     answered "denied" with the redacted value.
//   - Every token that reaches the decision is audited to veil.audit (who, app, ref, field,
//     status, when; never the value, the token or its ref KEK) before any value is returned: if
//     the audit cannot be written the request fails and no value leaves (fail closed).
//   - Revealing only reads: it never extends a TTL or rewrites a record.
//   - Bodies, token counts, header and body read times and each principal's request rate are
//     bounded; error messages and logs never carry a value or a token.
package reveal

import (
	"bytes"
	"context"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// Status is the outcome of opening one token.
type Status string

const (
	StatusOK      Status = "ok"
	StatusExpired Status = "expired" // past its TTL, erased, or its keys destroyed: the value is gone
	StatusDenied  Status = "denied"
	StatusInvalid Status = "invalid" // not a token, or it does not authenticate
)

// Opener opens tokens from the encrypted store.
type Opener struct {
	Store  store.Store
	Sealer *envelope.Sealer
}

// Open returns the JSON value sealed behind token. A non-nil error is a transient failure (store,
// KMS) and never carries the value; every other outcome is a Status.
func (o *Opener) Open(ctx context.Context, token string) ([]byte, Status, error) {
	tok, err := envelope.ParseToken(token)
	if err != nil {
		return nil, StatusInvalid, nil
	}
	return o.OpenToken(ctx, tok)
}

// OpenToken is Open for a parsed token.
func (o *Opener) OpenToken(ctx context.Context, tok envelope.Token) ([]byte, Status, error) {
	var rec envelope.Record
	v, st, err := blob.OpenSealed(ctx, o.Store, o.Sealer, tok, &rec)
	if st != blob.StatusOK || err != nil {
		return nil, Status(st), err
	}
	if isObject(v) && blob.IsMediaKey(v) {
		// A blob token opens to the media DEK: never hand it out; media go through signed links.
		clear(v)
		return nil, StatusDenied, nil
	}
	return v, StatusOK, nil
}

// isObject reports whether v, a JSON value, is an object. A media key is one (blob.IsMediaKey
// decodes it as such), while most revealed values are strings: checking the first byte spares
// them a full JSON decode, which was 11% of the CPU of 100-token reveal requests (make bench).
func isObject(v []byte) bool {
	v = bytes.TrimLeft(v, " \t\r\n")
	return len(v) > 0 && v[0] == '{'
}
