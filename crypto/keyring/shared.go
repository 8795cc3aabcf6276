package keyring

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// SecretVersion is the version under which a KeyStore keeps a shared secret (see SharedSecret).
// No key version is ever this low (KeyVersion starts at -2^39), so a secret never seals or opens
// data, and Keys, Apps, Rotate and EraseApp leave it alone.
const SecretVersion = math.MinInt64

// secretDestroyAt is the DestroyAt of a shared secret: it lives as long as the deployment.
var secretDestroyAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// SharedSecret returns the 32-byte secret called name that every process sharing the key store
// shares: the first process to ask generates it through the KMS (GenerateDataKey, encryption
// context naming it) and stores it wrapped, put-if-absent; every other process unwraps the stored
// one. It is meant for keys that must agree across processes but seal no data, such as the
// signing key of media links. name follows the app id rule. The caller owns the returned bytes.
func (k *Keyring) SharedSecret(ctx context.Context, name string) ([]byte, error) {
	if err := ValidateApp(name); err != nil {
		return nil, err
	}
	if k.closed.Load() {
		return nil, ErrClosed
	}
	wk, err := k.cfg.Store.Get(ctx, name, SecretVersion)
	if errors.Is(err, ErrKeyNotFound) || err == nil && wk.Pending() {
		var raw *secret
		raw, wk, err = k.obtain(ctx, name, SecretVersion, secretDestroyAt)
		if err == nil && raw != nil {
			return raw.b, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading shared secret %s: %w", name, err)
	}
	if wk.Erased {
		return nil, fmt.Errorf("shared secret %s: %w", name, ErrKeyDestroyed)
	}
	return k.unwrapSecret(ctx, wk)
}

func (k *Keyring) unwrapSecret(ctx context.Context, wk WrappedKey) ([]byte, error) {
	k.decrypts.Add(1)
	if k.cfg.OnKMSCall != nil {
		k.cfg.OnKMSCall(OpDecrypt)
	}
	in := &kms.DecryptInput{CiphertextBlob: wk.Ciphertext, EncryptionContext: EncryptionContext(wk.App, wk.Period)}
	if wk.KeyID != "" {
		in.KeyId = aws.String(wk.KeyID)
	}
	out, err := k.cfg.KMS.Decrypt(ctx, in)
	if err != nil {
		return nil, &KMSError{Op: OpDecrypt, Err: err}
	}
	if len(out.Plaintext) != KEKSize {
		clear(out.Plaintext)
		return nil, &KMSError{Op: OpDecrypt, Err: fmt.Errorf("unexpected data key of %d bytes", len(out.Plaintext))}
	}
	return out.Plaintext, nil
}

// storeIDKeyID marks the record StoreID keeps: a random nonce, not a wrapped key.
const storeIDKeyID = "veil-store-id"

// wrapsKey reports whether wk holds a KMS-wrapped key: not a tombstone, a claim or the store id.
func (wk WrappedKey) wrapsKey() bool {
	return !wk.Erased && !wk.Pending() && wk.KeyID != storeIDKeyID
}

// StoreID returns an identifier of the key store: the same for every process sharing it,
// different for two stores (two data directories with file key stores, say). It is derived from a
// random nonce the first caller stores (put-if-absent) and needs no KMS call, so a process can
// say which key store it uses while the KMS is down. It reveals nothing about any key.
func (k *Keyring) StoreID(ctx context.Context) (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	stored, err := k.cfg.Store.Create(ctx, WrappedKey{App: "key-store-id", Period: SecretVersion, KeyID: storeIDKeyID, Ciphertext: nonce, DestroyAt: secretDestroyAt})
	if err != nil {
		return "", fmt.Errorf("reading the key store's identity: %w", err)
	}
	h := sha256.Sum256(stored.Ciphertext)
	return hex.EncodeToString(h[:8]), nil
}
