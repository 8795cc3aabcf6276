package keyring

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// ErrKeyChanged is returned by Replacer.Replace when the stored key is no longer the one the caller
// read.
var ErrKeyChanged = errors.New("keyring: stored key changed")

// Replacer is a KeyStore that can swap the wrapping of a stored key in place. FileKeyStore is one.
type Replacer interface {
	// Replace stores nw in place of old (same app and version) atomically, keeping no copy of old.
	// It returns ErrKeyNotFound if the key is no longer stored, and ErrKeyChanged if it is stored
	// with another ciphertext than old's.
	Replace(ctx context.Context, old, nw WrappedKey) error
}

// CheckReplacement is the check every Replacer makes before touching its store: nw must name the
// same app and version as old and hold a wrapped key (a tombstone is not a replacement).
func CheckReplacement(old, nw WrappedKey) error {
	if nw.App != old.App || nw.Period != old.Period {
		return errors.New("replacing key: app or version differs")
	}
	if nw.Erased {
		return errors.New("replacing key: a tombstone is not a replacement")
	}
	if len(nw.Ciphertext) == 0 {
		return errors.New("replacing key: empty ciphertext")
	}
	return nil
}

// ExpectedValue is CheckReplacement for a store that replaces by compare-and-swap: it returns
// EncodeKey(old), the value the store must still hold for nw to replace it.
func ExpectedValue(old, nw WrappedKey) ([]byte, error) {
	if err := CheckReplacement(old, nw); err != nil {
		return nil, err
	}
	return EncodeKey(old)
}

// LeftoverRemover is a KeyStore that may hold partial copies of keys (temp files of writes that
// never finished). EraseApp calls it so that no copy of an erased key survives.
type LeftoverRemover interface {
	// RemoveLeftovers removes leftovers naming app and any stale ones; it reports how many.
	RemoveLeftovers(ctx context.Context, app string) (int, error)
}

func removeLeftovers(ctx context.Context, ks KeyStore, app string) error {
	lr, ok := ks.(LeftoverRemover)
	if !ok {
		return nil
	}
	if _, err := lr.RemoveLeftovers(ctx, app); err != nil {
		return fmt.Errorf("removing leftover key copies: %w", err)
	}
	return nil
}

// RewrapResult counts what Rewrap did.
type RewrapResult struct {
	Rewrapped int // keys now wrapped under the new KMS key
	Already   int // keys the new KMS key already wrapped (an earlier, interrupted Rewrap)
	Skipped   int // keys past their DestroyAt: they open nothing, DestroyExpired deletes them
}

// Rewrap re-wraps every live app KEK in ks under the KMS key toKeyID of to, without touching any
// data: each key is unwrapped by from (under its stored KMS key id) and wrapped again by to under
// the same encryption context, then replaced in the store atomically (ks must be a Replacer).
// Afterwards only to's key is needed to open the data; from's key may be retired. For AWS KMS,
// from and to are the same client; for the local provider, from holds the old root key and to the
// new one. An interrupted Rewrap can be run again: keys already under to are counted, not
// rewrapped. now judges which keys are past their DestroyAt. Unwrapped key bytes are zeroed as
// soon as they are wrapped again.
func Rewrap(ctx context.Context, ks KeyStore, from KMS, to ReEncrypter, toKeyID string, now time.Time) (RewrapResult, error) {
	var res RewrapResult
	rp, ok := ks.(Replacer)
	if !ok {
		return res, errors.New("rewrapping keys: the key store cannot replace keys in place")
	}
	if toKeyID == "" {
		return res, errors.New("rewrapping keys: no new KMS key id")
	}
	keys, err := ks.List(ctx)
	if err != nil {
		return res, fmt.Errorf("listing keys: %w", err)
	}
	for _, wk := range keys {
		if !wk.wrapsKey() {
			continue // a tombstone, a claim or the store id wraps nothing
		}
		if !now.Before(wk.DestroyAt) {
			res.Skipped++
			continue
		}
		ec := EncryptionContext(wk.App, wk.Period)
		pt, err := decrypt(ctx, from, wk, ec)
		if err != nil {
			// Interrupted earlier? Then the new key already opens it.
			if pt2, err2 := decrypt(ctx, to, wk, ec); err2 == nil {
				clear(pt2)
				res.Already++
				continue
			}
			return res, &KMSError{Op: OpDecrypt, Err: fmt.Errorf("app %s version %d: %w", wk.App, wk.Period, err)}
		}
		out, err := to.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(toKeyID), Plaintext: pt, EncryptionContext: ec})
		clear(pt)
		if err != nil {
			return res, &KMSError{Op: "Encrypt", Err: fmt.Errorf("app %s version %d: %w", wk.App, wk.Period, err)}
		}
		nw := wk
		nw.Ciphertext = out.CiphertextBlob
		nw.KeyID = aws.ToString(out.KeyId)
		if nw.KeyID == "" {
			nw.KeyID = toKeyID
		}
		switch err := rp.Replace(ctx, wk, nw); {
		case errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrKeyChanged) && erasedNow(ctx, ks, wk):
			continue // erased or destroyed meanwhile: nothing to rewrap
		case err != nil:
			return res, fmt.Errorf("replacing key of app %s version %d: %w", wk.App, wk.Period, err)
		}
		res.Rewrapped++
	}
	return res, nil
}

func decrypt(ctx context.Context, k KMS, wk WrappedKey, ec map[string]string) ([]byte, error) {
	out, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wk.Ciphertext, EncryptionContext: ec})
	if err != nil {
		return nil, err
	}
	if len(out.Plaintext) != KEKSize {
		clear(out.Plaintext)
		return nil, fmt.Errorf("unexpected data key of %d bytes", len(out.Plaintext))
	}
	return out.Plaintext, nil
}

// erasedNow reports whether the key of wk is now a tombstone.
func erasedNow(ctx context.Context, ks KeyStore, wk WrappedKey) bool {
	cur, err := ks.Get(ctx, wk.App, wk.Period)
	return err == nil && cur.Erased
}
