// Package aesgcm makes the one AEAD veil seals with: AES-256 in GCM with the standard 12-byte
// nonce and 16-byte tag, from a 32-byte key. The envelope's per-entry keys, the local KMS root,
// the embedded broker's raw-data keys, media chunk keys and signed-link keys all come from New,
// so a key of another size is refused in one place instead of silently choosing AES-128 or -192.
package aesgcm

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
)

// KeySize is the size of every AES-256-GCM key, in bytes.
const KeySize = 32

// New returns AES-256-GCM under key, which must be KeySize bytes. The error names only the
// size, never the key.
func New(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("AES-256-GCM key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
