package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// Claims: so that the KMS is asked for each (app, version) once per deployment, not once per
// process that happens to need it first, a process stores a claim before calling
// GenerateDataKey. A claim is a WrappedKey whose KeyID starts with pendingPrefix and whose
// Ciphertext is a random nonce (never a wrapped key); it lives for claimTTL. Whoever's Create
// stores the claim calls the KMS and then swaps the claim for the wrapped key (Replace, a
// compare-and-swap on the nonce). Everyone else waits for that key and unwraps it; a claim left
// by a process that died is taken over (Replace) once it is past its DestroyAt. No record is ever
// sealed under a claim, so a claim opens nothing.
const (
	pendingPrefix = "veil-pending:"
	claimTTL      = 20 * time.Second
	claimPoll     = 25 * time.Millisecond
)

// Pending reports whether wk is a claim of a key being generated, not a key.
func (wk WrappedKey) Pending() bool { return strings.HasPrefix(wk.KeyID, pendingPrefix) }

func (k *Keyring) newClaim(app string, v int64) WrappedKey {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	return WrappedKey{App: app, Period: v, KeyID: pendingPrefix + hex.EncodeToString(nonce[:4]), Ciphertext: nonce, DestroyAt: k.cfg.Clock().Add(claimTTL)}
}

// obtain returns the key of (app, v), generating it through the KMS only if this process wins
// the claim: then raw holds the plaintext and stored the wrapped key; otherwise raw is nil and
// stored is the key another process stored (or a tombstone). Cancelling ctx abandons the wait.
func (k *Keyring) obtain(ctx context.Context, app string, v int64, destroyAt time.Time) (raw *secret, stored WrappedKey, err error) {
	claim := k.newClaim(app, v)
	cur, err := k.cfg.Store.Create(ctx, claim)
	for {
		switch {
		case err != nil:
			return nil, WrappedKey{}, fmt.Errorf("storing key: %w", err)
		case cur.Erased || !cur.Pending():
			return nil, cur, nil
		case bytes.Equal(cur.Ciphertext, claim.Ciphertext):
			return k.generateClaimed(ctx, claim, destroyAt)
		}
		// Another process's claim: wait for its key, or take the claim over once it is stale.
		select {
		case <-ctx.Done():
			return nil, WrappedKey{}, ctx.Err()
		case <-time.After(claimPoll):
		}
		next, gerr := k.cfg.Store.Get(ctx, app, v)
		switch {
		case errors.Is(gerr, ErrKeyNotFound):
			claim = k.newClaim(app, v)
			cur, err = k.cfg.Store.Create(ctx, claim)
		case gerr != nil:
			err = gerr
		case next.Pending() && !k.cfg.Clock().Before(next.DestroyAt):
			claim = k.newClaim(app, v)
			if rerr := k.cfg.Store.Replace(ctx, next, claim); rerr == nil {
				cur = claim
			} else {
				cur, err = next, nil
			}
		default:
			cur, err = next, nil
		}
	}
}

// generateClaimed calls the KMS under a claim this process holds and swaps the claim for the key.
func (k *Keyring) generateClaimed(ctx context.Context, claim WrappedKey, destroyAt time.Time) (*secret, WrappedKey, error) {
	k.generates.Add(1)
	if k.cfg.OnKMSCall != nil {
		k.cfg.OnKMSCall(OpGenerateDataKey)
	}
	out, err := k.cfg.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(k.cfg.KeyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: EncryptionContext(claim.App, claim.Period),
	})
	if err != nil {
		k.dropClaim(claim)
		return nil, WrappedKey{}, &KMSError{Op: OpGenerateDataKey, Err: err}
	}
	raw := &secret{b: out.Plaintext}
	if len(out.Plaintext) != KEKSize || len(out.CiphertextBlob) == 0 {
		raw.zero()
		k.dropClaim(claim)
		return nil, WrappedKey{}, &KMSError{Op: OpGenerateDataKey, Err: fmt.Errorf("unexpected data key of %d bytes", len(out.Plaintext))}
	}
	keyID := aws.ToString(out.KeyId)
	if keyID == "" {
		keyID = k.cfg.KeyID
	}
	wk := WrappedKey{App: claim.App, Period: claim.Period, KeyID: keyID, Ciphertext: out.CiphertextBlob, DestroyAt: destroyAt}
	err = k.cfg.Store.Replace(ctx, claim, wk)
	if errors.Is(err, ErrKeyNotFound) {
		// The claim expired (a store with native expiry) before the KMS answered: store plainly.
		var stored WrappedKey
		if stored, err = k.cfg.Store.Create(ctx, wk); err == nil && !bytes.Equal(stored.Ciphertext, wk.Ciphertext) {
			raw.zero()
			if stored.Pending() {
				return k.obtain(ctx, claim.App, claim.Period, destroyAt)
			}
			return nil, stored, nil
		}
	}
	if errors.Is(err, ErrKeyChanged) {
		// Taken over, or erased, meanwhile: use what is stored now.
		raw.zero()
		cur, gerr := k.cfg.Store.Get(ctx, claim.App, claim.Period)
		if gerr != nil {
			return nil, WrappedKey{}, fmt.Errorf("storing key: %w", gerr)
		}
		if cur.Pending() {
			return k.obtain(ctx, claim.App, claim.Period, destroyAt)
		}
		return nil, cur, nil
	}
	if err != nil {
		raw.zero()
		return nil, WrappedKey{}, fmt.Errorf("storing key: %w", err)
	}
	wk.DestroyAt = wk.DestroyAt.UTC()
	return raw, wk, nil
}

// dropClaim removes this process's claim after a failed KMS call, so others need not wait for it
// to go stale. It is best effort: a claim that stays is taken over after claimTTL.
func (k *Keyring) dropClaim(claim WrappedKey) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cur, err := k.cfg.Store.Get(ctx, claim.App, claim.Period); err == nil && bytes.Equal(cur.Ciphertext, claim.Ciphertext) {
		_ = k.cfg.Store.Delete(ctx, claim.App, claim.Period)
	}
}
