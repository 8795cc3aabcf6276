package envelope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

// detRand is a deterministic byte stream for golden tests: block i is SHA-256(seed || i).
type detRand struct {
	seed []byte
	ctr  uint64
	buf  []byte
}

func newDetRand(seed string) *detRand { return &detRand{seed: []byte(seed)} }

func (r *detRand) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			h := sha256.New()
			h.Write(r.seed)
			h.Write(binary.BigEndian.AppendUint64(nil, r.ctr))
			r.ctr++
			r.buf = h.Sum(nil)
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return n, nil
}

// memKeys is an in-memory Keys over fixed KEKs: the real keyring lives in crypto/keyring.
type memKeys struct {
	current int64
	keks    map[string]map[int64][]byte
	calls   int
}

var errNoKey = errors.New("no such key")

func (k *memKeys) get(app string, period int64) (*AppKey, error) {
	k.calls++
	kek, ok := k.keks[app][period]
	if !ok {
		return nil, errNoKey
	}
	return NewAppKey(app, period, kek)
}

func (k *memKeys) SealingKey(_ context.Context, app string) (*AppKey, error) {
	return k.get(app, k.current)
}

func (k *memKeys) OpeningKey(_ context.Context, app string, period int64) (*AppKey, error) {
	return k.get(app, period)
}

var (
	testKEK    = bytes.Repeat([]byte{0x42}, 32)
	testExpiry = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	testNow    = testExpiry.Add(-time.Hour)
)

func testKey(t testing.TB) *AppKey {
	t.Helper()
	k, err := NewAppKey("app-42", 20414, testKEK)
	if err != nil {
		t.Fatalf("NewAppKey: %v", err)
	}
	return k
}

func testHeader() Header {
	return Header{
		App:    "app-42",
		Ledger: "event",
		Ref:    RefID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Expiry: testExpiry,
	}
}

func testFields(n, size int) []Field {
	fs := make([]Field, n)
	for i := range fs {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte('a' + (i+j)%26)
		}
		fs[i] = Field{Path: fmt.Sprintf("data.f%d", i), Value: v}
	}
	return fs
}

func mustSeal(t testing.TB, key *AppKey, h Header, fields []Field) (*Record, []Token) {
	t.Helper()
	rec, toks, err := SealWith(key, newDetRand(t.Name()), h, fields)
	if err != nil {
		t.Fatalf("SealWith: %v", err)
	}
	return rec, toks
}

// mustFail asserts that opening failed without plaintext.
func mustFail(t *testing.T, what string, pt []byte, err error) {
	t.Helper()
	if err == nil || pt != nil {
		t.Fatalf("%s: Open = (%d bytes, %v), want no plaintext and an error", what, len(pt), err)
	}
	if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
		t.Fatalf("%s: Open error = %v, want ErrInvalid or ErrExpired", what, err)
	}
}
