package aesgcm_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/aesgcm"
)

func TestNew(t *testing.T) {
	key := bytes.Repeat([]byte{7}, aesgcm.KeySize)
	a, err := aesgcm.New(key)
	if err != nil {
		t.Fatal(err)
	}
	if a.NonceSize() != 12 || a.Overhead() != 16 {
		t.Errorf("nonce %d, tag %d; want 12, 16", a.NonceSize(), a.Overhead())
	}
	nonce := make([]byte, a.NonceSize())
	if got, err := a.Open(nil, nonce, a.Seal(nil, nonce, []byte("x"), nil), nil); err != nil || string(got) != "x" {
		t.Errorf("round trip = %q, %v", got, err)
	}
	// AES-128 and AES-192 keys, and the empty and oversized ones, are refused; the error does not
	// hold the key.
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		k := bytes.Repeat([]byte{'K'}, n)
		_, err := aesgcm.New(k)
		if err == nil {
			t.Errorf("New(%d-byte key) succeeded", n)
			continue
		}
		if n > 0 && strings.Contains(err.Error(), string(k)) {
			t.Errorf("New(%d-byte key) error %q holds the key", n, err)
		}
	}
}
