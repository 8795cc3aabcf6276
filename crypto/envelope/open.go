package envelope

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/veil-project/veil/internal/aesgcm"
)

// OpenWith returns the plaintext of the field tok names, using key to unwrap the DEK.
//
// Before touching any key it checks that tok belongs to rec (same app and ref, a field index in
// range, the field's GCM tag) and that now is before rec.Expiry; a mismatch is ErrInvalid, an
// expired record ErrExpired. Then the DEK is unwrapped with the app KEK and the token's ref KEK
// and the field is decrypted, each step authenticating app, ledger, ref, expiry and the period or
// path: any altered byte ends in ErrInvalid. Plaintext is returned only when every step passed.
func OpenWith(key *AppKey, rec *Record, tok Token, now time.Time) ([]byte, error) {
	if err := checkOpen(rec, &tok, now); err != nil {
		return nil, err
	}
	if !key.usable() || key.App != rec.App || key.Period != rec.Period {
		return nil, fmt.Errorf("%w: app key does not match record", ErrInvalid)
	}
	s := getScratch()
	defer putScratch(s)
	s.setHeader(&rec.Header, rec.Expiry.Unix())
	aad := s.wrapAAD(rec.Period)
	w := rec.WrappedDEK
	inner, err := key.AEAD.Open(s.inner[:0], w[:nonceSize], w[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped DEK does not authenticate under the app key", ErrInvalid)
	}
	dek := s.dek[:keySize]
	subtle.XORBytes(dek, inner, tok.RefKEK[:])
	dekAEAD, err := aesgcm.New(dek)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	f := &rec.Fields[tok.Field]
	pt, err := dekAEAD.Open(nil, s.fieldNonce(int(tok.Field)), f.Ciphertext, s.fieldAAD(f.Path))
	if err != nil {
		return nil, fmt.Errorf("%w: field does not authenticate", ErrInvalid)
	}
	return pt, nil
}

// CheckToken reports whether tok names a field of rec and rec is live at now, without touching
// any key: the same checks OpenWith makes first (app, ref, field index, the field's GCM tag,
// then expiry). A token that passes is the token veil issued for that field (or a copy of it);
// nothing is decrypted. Errors are ErrInvalid or ErrExpired.
func CheckToken(rec *Record, tok Token, now time.Time) error { return checkOpen(rec, &tok, now) }

// checkOpen is the key-free part of opening: the token must be rec's and rec must be live. The
// record is validated too, so the associated data built from it stays unambiguous.
func checkOpen(rec *Record, tok *Token, now time.Time) error {
	if rec == nil {
		return fmt.Errorf("%w: no record", ErrInvalid)
	}
	if err := rec.check(); err != nil {
		return err
	}
	switch {
	case tok.App != rec.App:
		return fmt.Errorf("%w: token is for another app", ErrInvalid)
	case tok.Ref != rec.Ref:
		return fmt.Errorf("%w: token is for another ref", ErrInvalid)
	case int(tok.Field) >= len(rec.Fields):
		return fmt.Errorf("%w: token field out of range", ErrInvalid)
	}
	ct := rec.Fields[tok.Field].Ciphertext
	if subtle.ConstantTimeCompare(tok.Tag[:], ct[len(ct)-tagSize:]) != 1 {
		return fmt.Errorf("%w: token is for another field", ErrInvalid)
	}
	if !now.Before(rec.Expiry) {
		return ErrExpired
	}
	return nil
}
