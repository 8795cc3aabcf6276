package envelope

import (
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/veil-project/veil/internal/aesgcm"
)

// SealWith seals fields under key, reading all per-entry randomness from rand in one call.
//
// Per call it draws a fresh 256-bit DEK, a fresh 256-bit ref KEK and a 12-byte nonce, then:
//
//   - field i is AES-256-GCM(DEK, nonce=i, AAD=app|ledger|ref|expiry|path). The DEK is new for
//     every call and never leaves it unwrapped, and the field indexes of one call are distinct,
//     so no (key, nonce) pair ever repeats: a counter nonce is as safe as a random one and saves
//     a read and 12 bytes per field. The index is also the field's position, so ciphertexts
//     cannot be reordered within a record.
//   - the DEK is wrapped by the ref KEK as a one-time pad: DEK ⊕ refKEK. The ref KEK is 256
//     uniformly random bits used for exactly one 256-bit message, so the masked DEK says nothing
//     about the DEK to anyone without the token (not even to someone holding the store and the
//     app KEK), and it costs no AES key schedule.
//   - that result is sealed by AES-256-GCM(appKEK, random nonce, AAD=app|ledger|ref|expiry|period),
//     which authenticates it and its binding. A wrong ref KEK unmasks a wrong DEK, under which the
//     field's GCM tag fails. The app KEK is shared by every entry of the app for a period, so its
//     nonce must be random (2^32 messages per key keep collision odds negligible; a period sees
//     far fewer).
//
// Expiry is kept at second precision (truncated toward the past, so it never extends the TTL).
// The returned tokens, one per field in order, carry the ref KEK; the record carries neither key.
// The DEK and ref KEK buffers are zeroed before returning (the AES key schedules built from them
// live inside crypto/aes, which does not offer to zero them).
//
// SealWith does not look at the clock: sealing a header whose expiry has passed is allowed and
// yields a record that opens as ErrExpired.
func SealWith(key *AppKey, rand io.Reader, h Header, fields []Field) (*Record, []Token, error) {
	if err := checkSeal(&h, fields); err != nil {
		return nil, nil, err
	}
	return sealChecked(key, rand, h, fields)
}

// sealChecked is SealWith after checkSeal passed (Sealer.Seal checks before fetching the key).
func sealChecked(key *AppKey, rand io.Reader, h Header, fields []Field) (*Record, []Token, error) {
	switch {
	case !key.usable():
		return nil, nil, fmt.Errorf("sealing: unusable app key: %w", ErrInvalidInput)
	case key.App != h.App:
		return nil, nil, fmt.Errorf("sealing: app key is for another app: %w", ErrInvalidInput)
	}
	expiry := h.Expiry.Unix()
	size := wrappedDEKSize
	for i := range fields {
		size += len(fields[i].Value) + tagSize
	}

	s := getScratch()
	defer putScratch(s)
	if err := s.readRand(rand); err != nil {
		return nil, nil, fmt.Errorf("sealing: reading randomness: %w", err)
	}
	dek := s.rnd[:keySize]
	refKEK := s.rnd[keySize : 2*keySize]
	wrapNonce := s.rnd[2*keySize:]

	dekAEAD, err := aesgcm.New(dek)
	if err != nil {
		return nil, nil, fmt.Errorf("sealing: %w", err)
	}

	out := newSealed(len(fields))
	rec := out.rec
	// One backing buffer holds the wrapped DEK and every ciphertext; each slice is capped so an
	// append to one can never overwrite the next.
	buf := make([]byte, size)

	s.setHeader(&h, expiry)
	aad := s.wrapAAD(key.Period)
	inner := s.inner[:keySize]
	subtle.XORBytes(inner, dek, refKEK)
	wrapped := buf[:wrappedDEKSize:wrappedDEKSize]
	copy(wrapped, wrapNonce)
	key.AEAD.Seal(wrapped[nonceSize:nonceSize], wrapNonce, inner, aad)

	off := wrappedDEKSize
	for i := range fields {
		f := &fields[i]
		end := off + len(f.Value) + tagSize
		ct := dekAEAD.Seal(buf[off:off:end], s.fieldNonce(i), f.Value, s.fieldAAD(f.Path))
		rec.Fields[i] = SealedField{Path: f.Path, Ciphertext: ct}
		t := &out.toks[i]
		t.App, t.Ref, t.Field = h.App, h.Ref, uint8(i)
		copy(t.RefKEK[:], refKEK)
		copy(t.Tag[:], ct[len(ct)-tagSize:])
		off = end
	}

	rec.Header = Header{App: h.App, Ledger: h.Ledger, Ref: h.Ref, Expiry: time.Unix(expiry, 0).UTC()}
	rec.Period = key.Period
	rec.WrappedDEK = wrapped
	return rec, out.toks, nil
}

// checkSeal validates everything SealWith relies on; errors name the field index, never a value
// or a path.
func checkSeal(h *Header, fields []Field) error {
	switch {
	case !validName(h.App, MaxAppLen):
		return fmt.Errorf("sealing: bad app id: %w", ErrInvalidInput)
	case !validName(h.Ledger, MaxLedgerLen):
		return fmt.Errorf("sealing: bad ledger: %w", ErrInvalidInput)
	case h.Ref.IsZero():
		return fmt.Errorf("sealing: ref not set: %w", ErrInvalidInput)
	case h.Expiry.IsZero():
		return fmt.Errorf("sealing: expiry not set: %w", ErrInvalidInput)
	case len(fields) > MaxFields:
		return fmt.Errorf("sealing: %d fields, at most %d: %w", len(fields), MaxFields, ErrInvalidInput)
	}
	for i := range fields {
		f := &fields[i]
		if len(f.Path) == 0 || len(f.Path) > MaxPathLen {
			return fmt.Errorf("sealing: field %d: bad path length: %w", i, ErrInvalidInput)
		}
		if len(f.Value) > MaxValueSize {
			return fmt.Errorf("sealing: field %d: value over %d bytes: %w", i, MaxValueSize, ErrInvalidInput)
		}
		for j := range i {
			if fields[j].Path == f.Path {
				return fmt.Errorf("sealing: field %d: same path as field %d: %w", i, j, ErrInvalidInput)
			}
		}
	}
	return nil
}

// sealed is the record and tokens of one Seal. Entries rarely have more than a few sensitive
// fields, so up to four of them share one allocation with the record, sized to the field count:
// three fields (the common case) fit the 512-byte size class, below which the runtime keeps no
// per-object malloc header; a fixed room for four cost 704 bytes and about 100 ns more per Seal.
type sealed struct {
	rec  *Record
	toks []Token
}

type sealedN[F, T any] struct {
	rec    Record
	fields F
	toks   T
}

func newSealed(n int) sealed {
	switch n {
	case 1:
		a := new(sealedN[[1]SealedField, [1]Token])
		a.rec.Fields = a.fields[:]
		return sealed{rec: &a.rec, toks: a.toks[:]}
	case 2:
		a := new(sealedN[[2]SealedField, [2]Token])
		a.rec.Fields = a.fields[:]
		return sealed{rec: &a.rec, toks: a.toks[:]}
	case 3:
		a := new(sealedN[[3]SealedField, [3]Token])
		a.rec.Fields = a.fields[:]
		return sealed{rec: &a.rec, toks: a.toks[:]}
	case 4:
		a := new(sealedN[[4]SealedField, [4]Token])
		a.rec.Fields = a.fields[:]
		return sealed{rec: &a.rec, toks: a.toks[:]}
	}
	rec := &Record{Fields: make([]SealedField, n)}
	return sealed{rec: rec, toks: make([]Token, n)}
}
