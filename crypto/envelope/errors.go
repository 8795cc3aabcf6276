package envelope

import (
	"errors"
	"fmt"
)

// ErrInvalid is returned by Open and OpenWith when the token and the record do not belong
// together or anything fails to authenticate: a different app or ref, a field index out of range,
// a tag that is not the field's, a wrapped DEK or ciphertext that was altered, a key for another
// app or period. Its wrapping message names the reason only. Callers answer "invalid".
var ErrInvalid = errors.New("envelope: invalid")

// ErrInvalidToken is returned by ParseToken for any string that is not a well-formed v1 token.
// errors.Is(err, ErrInvalid) also holds for it, so callers that only care about "invalid" need
// not tell the two apart.
var ErrInvalidToken = fmt.Errorf("%w token", ErrInvalid)

// ErrInvalidRecord is returned by Record.UnmarshalBinary (and MarshalBinary for a record that
// breaks a limit). errors.Is(err, ErrInvalid) also holds for it.
var ErrInvalidRecord = fmt.Errorf("%w record", ErrInvalid)

// ErrExpired is returned by Open and OpenWith when now is at or after the record's expiry. It is
// returned instead of plaintext, never with it.
var ErrExpired = errors.New("envelope: expired")

// ErrInvalidInput is returned by Seal and SealWith when the header, the fields or the key break
// a limit (see the Max constants): a permanent error, retrying cannot help.
var ErrInvalidInput = errors.New("envelope: invalid input")
