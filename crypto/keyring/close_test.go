package keyring_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/veil-project/veil/crypto/keyring"
)

// blockingKMS lets the first GenerateDataKey through and holds every later one until its ctx
// ends; such a call returns only a moment after that, so a Close that does not wait for it
// returns first.
type blockingKMS struct {
	keyring.KMS
	calls    atomic.Int64
	entered  chan struct{}
	returned atomic.Bool
}

func (b *blockingKMS) GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, opts ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	if b.calls.Add(1) == 1 {
		return b.KMS.GenerateDataKey(ctx, in, opts...)
	}
	close(b.entered)
	<-ctx.Done()
	time.Sleep(50 * time.Millisecond)
	b.returned.Store(true)
	return nil, ctx.Err()
}

// TestCloseWaitsForPrefetch: Close cancels a prefetch stuck in the KMS and returns only after
// its goroutine did; a second Close returns nil.
func TestCloseWaitsForPrefetch(t *testing.T) {
	e := newEnv(t)
	bk := &blockingKMS{KMS: e.kms, entered: make(chan struct{})}
	k := e.keyring(func(c *keyring.Config) { c.KMS = bk; c.Window = 15 * time.Minute; c.Prefetch = true })
	if _, err := k.SealingKeyFor(ctx, "app-1", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bk.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the next window's key was never prefetched")
	}
	if err := k.Close(context.Background()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if !bk.returned.Load() {
		t.Error("Close returned while a prefetch was still in the KMS")
	}
	if err := k.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
