package envelope

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// openBytes parses and opens; a parse error counts as a failure without plaintext.
func openBytes(key *AppKey, recBytes []byte, tokStr string) ([]byte, error) {
	var rec Record
	if err := rec.UnmarshalBinary(recBytes); err != nil {
		return nil, err
	}
	tok, err := ParseToken(tokStr)
	if err != nil {
		return nil, err
	}
	return OpenWith(key, &rec, tok, testNow)
}

func TestTamperFieldCiphertext(t *testing.T) {
	key := testKey(t)
	rec, toks := mustSeal(t, key, testHeader(), testFields(3, 20))
	for f := range rec.Fields {
		ct := rec.Fields[f].Ciphertext
		for i := range len(ct) * 8 {
			ct[i/8] ^= 1 << (i % 8)
			pt, err := OpenWith(key, rec, toks[f], testNow)
			mustFail(t, "field ciphertext bit flip", pt, err)
			ct[i/8] ^= 1 << (i % 8)
		}
	}
	// The token's tag check alone would catch tag flips; also flip body bits with a token whose
	// tag follows the edit, so the GCM check itself is exercised.
	ct := rec.Fields[0].Ciphertext
	for i := range (len(ct) - tagSize) * 8 {
		ct[i/8] ^= 1 << (i % 8)
		pt, err := OpenWith(key, rec, toks[0], testNow)
		if !errors.Is(err, ErrInvalid) || pt != nil {
			t.Fatalf("body bit %d flipped: Open = (%q, %v), want ErrInvalid", i, pt, err)
		}
		ct[i/8] ^= 1 << (i % 8)
	}
	if _, err := OpenWith(key, rec, toks[0], testNow); err != nil {
		t.Fatalf("Open after restoring = %v, want success", err)
	}
}

func TestTamperWrappedDEK(t *testing.T) {
	key := testKey(t)
	rec, toks := mustSeal(t, key, testHeader(), testFields(2, 20))
	w := rec.WrappedDEK
	for i := range len(w) * 8 {
		w[i/8] ^= 1 << (i % 8)
		for _, tok := range toks {
			pt, err := OpenWith(key, rec, tok, testNow)
			mustFail(t, "wrapped DEK bit flip", pt, err)
		}
		w[i/8] ^= 1 << (i % 8)
	}
}

// TestTamperRecordBytes flips every bit of a one-field record's encoding: every byte of it is
// either parsed strictly or authenticated, so every flip must fail.
func TestTamperRecordBytes(t *testing.T) {
	key := testKey(t)
	rec, toks := mustSeal(t, key, testHeader(), testFields(1, 24))
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tok := toks[0].Encode()
	if _, err := openBytes(key, b, tok); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	for i := range len(b) * 8 {
		b[i/8] ^= 1 << (i % 8)
		pt, err := openBytes(key, b, tok)
		mustFail(t, "record bit flip", pt, err)
		b[i/8] ^= 1 << (i % 8)
	}
	for n := range len(b) {
		pt, err := openBytes(key, b[:n], tok)
		mustFail(t, "record truncation", pt, err)
	}
	pt, err := openBytes(key, append(bytes.Clone(b), 0), tok)
	mustFail(t, "record with a trailing byte", pt, err)
}

// TestTamperMultiFieldRecordBytes: in a record of several fields, a flip inside another field's
// ciphertext does not concern the token's field; it may open, but only to the genuine value.
func TestTamperMultiFieldRecordBytes(t *testing.T) {
	key := testKey(t)
	fields := testFields(3, 9)
	rec, toks := mustSeal(t, key, testHeader(), fields)
	b, _ := rec.MarshalBinary()
	for i := range len(b) * 8 {
		b[i/8] ^= 1 << (i % 8)
		opened := 0
		for f, tok := range toks {
			pt, err := openBytes(key, b, tok.Encode())
			if err == nil {
				if !bytes.Equal(pt, fields[f].Value) {
					t.Fatalf("bit %d: Open(field %d) returned a value that was not sealed", i, f)
				}
				opened++
			}
		}
		if opened == len(toks) {
			t.Fatalf("bit %d flipped: every field still opens", i)
		}
		b[i/8] ^= 1 << (i % 8)
	}
}

func TestTamperTokenBytes(t *testing.T) {
	key := testKey(t)
	rec, toks := mustSeal(t, key, testHeader(), testFields(2, 20))
	recBytes, _ := rec.MarshalBinary()
	for _, tok := range toks {
		raw := tok.appendRaw(nil)
		for i := range len(raw) * 8 {
			raw[i/8] ^= 1 << (i % 8)
			s := TokenPrefix + tokenEncoding.EncodeToString(raw)
			pt, err := openBytes(key, recBytes, s)
			mustFail(t, "token bit flip", pt, err)
			raw[i/8] ^= 1 << (i % 8)
		}
		s := tok.Encode()
		for n := range len(s) {
			pt, err := openBytes(key, recBytes, s[:n])
			mustFail(t, "token truncation", pt, err)
		}
	}
}

// TestTamperAssociatedData changes one authenticated input at a time, consistently in record and
// token, so only the associated data (not the token checks) can catch it.
func TestTamperAssociatedData(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		name string
		edit func(rec *Record, tok *Token, key **AppKey)
	}{
		{"app", func(rec *Record, tok *Token, key **AppKey) {
			rec.App, tok.App = "app-43", "app-43"
			*key, _ = NewAppKey("app-43", (*key).Period, testKEK)
		}},
		{"ledger", func(rec *Record, _ *Token, _ **AppKey) { rec.Ledger = "bot" }},
		{"ref", func(rec *Record, tok *Token, _ **AppKey) { rec.Ref[0] ^= 1; tok.Ref[0] ^= 1 }},
		{"path", func(rec *Record, _ *Token, _ **AppKey) { rec.Fields[0].Path = "data.other" }},
		{"expiry extended", func(rec *Record, _ *Token, _ **AppKey) { rec.Expiry = rec.Expiry.Add(time.Second) }},
		{"expiry shortened", func(rec *Record, _ *Token, _ **AppKey) { rec.Expiry = rec.Expiry.Add(-time.Second) }},
		{"period", func(rec *Record, _ *Token, key **AppKey) {
			rec.Period++
			*key, _ = NewAppKey((*key).App, rec.Period, testKEK)
		}},
		{"field order", func(rec *Record, tok *Token, _ **AppKey) {
			rec.Fields[0], rec.Fields[1] = rec.Fields[1], rec.Fields[0]
			tok.Field = 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, toks := mustSeal(t, key, testHeader(), testFields(2, 20))
			tok, k := toks[0], key
			tt.edit(rec, &tok, &k)
			pt, err := OpenWith(k, rec, tok, testNow)
			if !errors.Is(err, ErrInvalid) || pt != nil {
				t.Fatalf("Open after changing %s = (%q, %v), want ErrInvalid", tt.name, pt, err)
			}
		})
	}
}

func TestTokenMisuse(t *testing.T) {
	key := testKey(t)
	recA, toksA := mustSeal(t, key, testHeader(), testFields(3, 20))
	hB := testHeader()
	hB.Ref[0] = 0xff
	recB, toksB, err := SealWith(key, newDetRand("record B"), hB, testFields(3, 20))
	if err != nil {
		t.Fatal(err)
	}
	recSameRef, _, err := SealWith(key, newDetRand("another seal"), testHeader(), testFields(3, 20))
	if err != nil {
		t.Fatal(err)
	}

	otherApp := toksA[0]
	otherApp.App = "app-43"
	otherField := toksA[0]
	otherField.Field = 1
	outOfRange := toksA[0]
	outOfRange.Field = 3
	kekOfB := toksA[0]
	kekOfB.RefKEK = toksB[0].RefKEK

	tests := []struct {
		name string
		rec  *Record
		tok  Token
	}{
		{"token moved to another app", recA, otherApp},
		{"token moved to another field", recA, otherField},
		{"field out of range", recA, outOfRange},
		{"token of A on record B", recB, toksA[0]},
		{"token of A on a record with A's ref", recSameRef, toksA[0]},
		{"ref KEK of B", recA, kekOfB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := OpenWith(key, tt.rec, tt.tok, testNow)
			if !errors.Is(err, ErrInvalid) || pt != nil {
				t.Fatalf("Open = (%q, %v), want ErrInvalid", pt, err)
			}
		})
	}
}

func TestOpenWrongKey(t *testing.T) {
	key := testKey(t)
	rec, toks := mustSeal(t, key, testHeader(), testFields(1, 20))
	otherKEK, _ := NewAppKey("app-42", key.Period, bytes.Repeat([]byte{7}, 32))
	otherPeriod, _ := NewAppKey("app-42", key.Period+1, testKEK)
	otherApp, _ := NewAppKey("app-43", key.Period, testKEK)
	for name, k := range map[string]*AppKey{"other KEK": otherKEK, "other period": otherPeriod, "other app": otherApp, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			pt, err := OpenWith(k, rec, toks[0], testNow)
			if !errors.Is(err, ErrInvalid) || pt != nil {
				t.Fatalf("Open with %s key = (%q, %v), want ErrInvalid", name, pt, err)
			}
		})
	}
}

func TestOpenExpired(t *testing.T) {
	key := testKey(t)
	rec, toks := mustSeal(t, key, testHeader(), testFields(1, 20))
	tests := []struct {
		name string
		now  time.Time
		want error
	}{
		{"one second before", testExpiry.Add(-time.Second), nil},
		{"one nanosecond before", testExpiry.Add(-time.Nanosecond), nil},
		{"at expiry", testExpiry, ErrExpired},
		{"after expiry", testExpiry.Add(time.Nanosecond), ErrExpired},
		{"a day later", testExpiry.Add(24 * time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := OpenWith(key, rec, toks[0], tt.now)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Open(now=%v) error = %v, want %v", tt.now, err, tt.want)
			}
			if tt.want != nil && pt != nil {
				t.Fatalf("Open(now=%v) returned plaintext with %v", tt.now, err)
			}
		})
	}
}
