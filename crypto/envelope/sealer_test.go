package envelope

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestSealer(t *testing.T) {
	keys := &memKeys{current: 100, keks: map[string]map[int64][]byte{
		"app-42": {100: testKEK, 101: bytes.Repeat([]byte{9}, 32)},
	}}
	now := testNow
	s := NewSealer(keys, WithClock(func() time.Time { return now }))
	fields := testFields(2, 30)
	rec, toks, err := s.Seal(t.Context(), testHeader(), fields)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Period != 100 {
		t.Fatalf("Seal: record period = %d, want 100", rec.Period)
	}
	keys.current = 101 // rotation: new records use the new key, old ones open with theirs
	for i, tok := range toks {
		pt, err := s.Open(t.Context(), rec, tok)
		if err != nil || !bytes.Equal(pt, fields[i].Value) {
			t.Fatalf("Open(field %d) = (%q, %v), want the sealed value", i, pt, err)
		}
	}

	t.Run("expired needs no key", func(t *testing.T) {
		calls := keys.calls
		now = testExpiry
		defer func() { now = testNow }()
		pt, err := s.Open(t.Context(), rec, toks[0])
		if !errors.Is(err, ErrExpired) || pt != nil {
			t.Fatalf("Open at expiry = (%q, %v), want ErrExpired", pt, err)
		}
		if keys.calls != calls {
			t.Fatalf("Open at expiry fetched a key")
		}
	})
	t.Run("invalid needs no key", func(t *testing.T) {
		calls := keys.calls
		bad := toks[0]
		bad.Field = 1
		if _, err := s.Open(t.Context(), rec, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Open(edited token) = %v, want ErrInvalid", err)
		}
		if keys.calls != calls {
			t.Fatalf("Open(edited token) fetched a key")
		}
	})
	t.Run("erased app", func(t *testing.T) {
		delete(keys.keks, "app-42")
		defer func() { keys.keks["app-42"] = map[int64][]byte{100: testKEK} }()
		pt, err := s.Open(t.Context(), rec, toks[0])
		if !errors.Is(err, errNoKey) || pt != nil {
			t.Fatalf("Open after erasure = (%q, %v), want the key error", pt, err)
		}
		if _, _, err := s.Seal(t.Context(), testHeader(), fields); !errors.Is(err, errNoKey) {
			t.Fatalf("Seal after erasure = %v, want the key error", err)
		}
	})
	t.Run("bad input needs no key", func(t *testing.T) {
		calls := keys.calls
		h := testHeader()
		h.Ledger = ""
		if _, _, err := s.Seal(t.Context(), h, fields); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("Seal(no ledger) = %v, want ErrInvalidInput", err)
		}
		if keys.calls != calls {
			t.Fatalf("Seal(no ledger) fetched a key")
		}
	})
}

func TestSealerRand(t *testing.T) {
	keys := &memKeys{current: 1, keks: map[string]map[int64][]byte{"app-42": {1: testKEK}}}
	a, _, err := NewSealer(keys, WithRand(newDetRand("r"))).Seal(t.Context(), testHeader(), testFields(1, 3))
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := NewSealer(keys, WithRand(newDetRand("r"))).Seal(t.Context(), testHeader(), testFields(1, 3))
	if !bytes.Equal(a.WrappedDEK, b.WrappedDEK) {
		t.Errorf("WithRand: same stream gave different records")
	}
}
