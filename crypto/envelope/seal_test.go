package envelope

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSealOpenRoundTrip(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		name string
		n    int
		size int
	}{
		{"empty value", 1, 0},
		{"small", 1, 5},
		{"three small", 3, 100},
		{"64KiB", 1, 64 << 10},
		{"five fields", 5, 33},
		{"max fields", MaxFields, 7},
		{"no fields", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := testFields(tt.n, tt.size)
			rec, toks := mustSeal(t, key, testHeader(), fields)
			if len(toks) != tt.n || len(rec.Fields) != tt.n {
				t.Fatalf("Seal = %d fields, %d tokens, want %d", len(rec.Fields), len(toks), tt.n)
			}
			b, err := rec.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			var got Record
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			for i, tok := range toks {
				parsed, err := ParseToken(tok.Encode())
				if err != nil {
					t.Fatalf("ParseToken(token %d): %v", i, err)
				}
				if parsed != tok {
					t.Fatalf("ParseToken(Encode(token %d)) = %v, want %v", i, parsed, tok)
				}
				pt, err := OpenWith(key, &got, parsed, testNow)
				if err != nil {
					t.Fatalf("OpenWith(field %d): %v", i, err)
				}
				if !bytes.Equal(pt, fields[i].Value) {
					t.Fatalf("OpenWith(field %d) = %d bytes, want the sealed %d bytes", i, len(pt), len(fields[i].Value))
				}
			}
		})
	}
}

func TestSealFreshKeys(t *testing.T) {
	key := testKey(t)
	s := NewSealer(&memKeys{keks: map[string]map[int64][]byte{"app-42": {20414: testKEK}}, current: 20414})
	h := testHeader()
	fields := testFields(1, 10)
	rec1, tok1, err := s.Seal(t.Context(), h, fields)
	if err != nil {
		t.Fatal(err)
	}
	rec2, tok2, err := s.Seal(t.Context(), h, fields)
	if err != nil {
		t.Fatal(err)
	}
	if tok1[0].RefKEK == tok2[0].RefKEK {
		t.Errorf("two seals share a ref KEK")
	}
	if bytes.Equal(rec1.WrappedDEK, rec2.WrappedDEK) || bytes.Equal(rec1.Fields[0].Ciphertext, rec2.Fields[0].Ciphertext) {
		t.Errorf("two seals of the same input produced the same ciphertext")
	}
	if _, err := OpenWith(key, rec1, tok2[0], testNow); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(record A, token B with the same ref) = %v, want ErrInvalid", err)
	}
}

func TestSealExpiryTruncated(t *testing.T) {
	h := testHeader()
	h.Expiry = testExpiry.Add(999 * time.Millisecond)
	rec, _ := mustSeal(t, testKey(t), h, testFields(1, 1))
	if !rec.Expiry.Equal(testExpiry) {
		t.Errorf("Seal(expiry %v).Expiry = %v, want %v", h.Expiry, rec.Expiry, testExpiry)
	}
}

func TestSealRejects(t *testing.T) {
	key := testKey(t)
	other, _ := NewAppKey("app-43", 20414, testKEK)
	withHeader := func(f func(*Header)) Header { h := testHeader(); f(&h); return h }
	tests := []struct {
		name   string
		key    *AppKey
		h      Header
		fields []Field
	}{
		{"empty app", key, withHeader(func(h *Header) { h.App = "" }), testFields(1, 1)},
		{"app charset", key, withHeader(func(h *Header) { h.App = "app/42" }), testFields(1, 1)},
		{"long app", key, withHeader(func(h *Header) { h.App = strings.Repeat("a", MaxAppLen+1) }), testFields(1, 1)},
		{"empty ledger", key, withHeader(func(h *Header) { h.Ledger = "" }), testFields(1, 1)},
		{"ledger charset", key, withHeader(func(h *Header) { h.Ledger = "ev ent" }), testFields(1, 1)},
		{"zero ref", key, withHeader(func(h *Header) { h.Ref = RefID{} }), testFields(1, 1)},
		{"zero expiry", key, withHeader(func(h *Header) { h.Expiry = time.Time{} }), testFields(1, 1)},
		{"too many fields", key, testHeader(), testFields(MaxFields+1, 1)},
		{"empty path", key, testHeader(), []Field{{Path: "", Value: []byte("x")}}},
		{"long path", key, testHeader(), []Field{{Path: strings.Repeat("p", MaxPathLen+1), Value: []byte("x")}}},
		{"duplicate path", key, testHeader(), []Field{{Path: "data.a"}, {Path: "data.b"}, {Path: "data.a"}}},
		{"value too large", key, testHeader(), []Field{{Path: "data.a", Value: make([]byte, MaxValueSize+1)}}},
		{"nil key", nil, testHeader(), testFields(1, 1)},
		{"key of another app", other, testHeader(), testFields(1, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, toks, err := SealWith(tt.key, newDetRand("x"), tt.h, tt.fields)
			if !errors.Is(err, ErrInvalidInput) || rec != nil || toks != nil {
				t.Fatalf("SealWith = (%v, %v, %v), want ErrInvalidInput", rec, toks, err)
			}
		})
	}
}

func TestSealRandFailure(t *testing.T) {
	tests := []struct {
		name string
		r    *strings.Reader
	}{
		{"empty", strings.NewReader("")},
		{"short", strings.NewReader(strings.Repeat("x", 75))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _, err := SealWith(testKey(t), tt.r, testHeader(), testFields(1, 1))
			if err == nil || rec != nil {
				t.Fatalf("SealWith(%s rand) = (%v, %v), want an error", tt.name, rec, err)
			}
		})
	}
}

// TestSealOneRead checks all per-entry randomness comes from one read.
func TestSealOneRead(t *testing.T) {
	r := &countingReader{r: newDetRand("one")}
	if _, _, err := SealWith(testKey(t), r, testHeader(), testFields(3, 10)); err != nil {
		t.Fatal(err)
	}
	if r.reads != 1 || r.n != 2*keySize+nonceSize {
		t.Errorf("SealWith read %d times, %d bytes; want 1 read of %d bytes", r.reads, r.n, 2*keySize+nonceSize)
	}
}

type countingReader struct {
	r        *detRand
	reads, n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestSealDoesNotLeakValuesInErrors(t *testing.T) {
	secret := "jane@example.com"
	fields := []Field{{Path: "data.email", Value: []byte(secret)}, {Path: "data.email", Value: []byte(secret)}}
	_, _, err := SealWith(testKey(t), newDetRand("x"), testHeader(), fields)
	if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "data.email") {
		t.Fatalf("SealWith(duplicate) error = %v, want an error naming no value or path", err)
	}
}

// TestSealBulkRand seals through crypto/rand's Reader (drawn in bulk per scratch) across several
// refills: every DEK-masking ref KEK and wrap nonce must be new, and the scratch must hold no
// randomness a call has already used.
func TestSealBulkRand(t *testing.T) {
	key := testKey(t)
	seen := make(map[[keySize]byte]bool)
	nonces := make(map[string]bool)
	for i := range 5 * randBulkSize / (2*keySize + nonceSize) {
		rec, toks, err := SealWith(key, systemRand, testHeader(), testFields(1, 10))
		if err != nil {
			t.Fatal(err)
		}
		if seen[toks[0].RefKEK] || nonces[string(rec.WrappedDEK[:nonceSize])] {
			t.Fatalf("seal %d reused a ref KEK or a wrap nonce", i)
		}
		seen[toks[0].RefKEK], nonces[string(rec.WrappedDEK[:nonceSize])] = true, true
		if _, err := OpenWith(key, rec, toks[0], testNow); err != nil {
			t.Fatalf("seal %d: OpenWith = %v", i, err)
		}
	}
	s := getScratch()
	defer putScratch(s)
	if err := s.readRand(systemRand); err != nil {
		t.Fatal(err)
	}
	if used := s.bulk[:s.used]; !bytes.Equal(used, make([]byte, len(used))) {
		t.Errorf("scratch keeps %d bytes of randomness already handed out", len(used))
	}
}
