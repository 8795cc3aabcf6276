package keyring_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/testclock"
)

var _ keyring.KMS = (*kmslocal.Provider)(nil)

// t0 is 2026-11-22T10:00:00Z, in period 20779.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

const p0 = int64(20779)

func newClock() *testclock.Clock { return testclock.New(t0) }

// countingKMS counts the calls that reach a real provider.
type countingKMS struct {
	keyring.KMS
	generates, decrypts atomic.Int64
}

func (c *countingKMS) GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, opts ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	c.generates.Add(1)
	return c.KMS.GenerateDataKey(ctx, in, opts...)
}

func (c *countingKMS) Decrypt(ctx context.Context, in *kms.DecryptInput, opts ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	c.decrypts.Add(1)
	return c.KMS.Decrypt(ctx, in, opts...)
}

// env is one KMS root and one key-store directory, shared by every keyring it makes, as several
// veil processes on one host would share them.
type env struct {
	t     testing.TB
	kms   *countingKMS
	dir   string
	clock *testclock.Clock
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	p, err := kmslocal.Open(filepath.Join(dir, "root", "root.key"))
	if err != nil {
		t.Fatalf("kmslocal.Open = %v", err)
	}
	return &env{t: t, kms: &countingKMS{KMS: p}, dir: filepath.Join(dir, "keys"), clock: newClock()}
}

func (e *env) store() *keyring.FileKeyStore {
	e.t.Helper()
	s, err := keyring.NewFileKeyStore(e.dir)
	if err != nil {
		e.t.Fatalf("NewFileKeyStore = %v", err)
	}
	return s
}

func (e *env) keyring(mod ...func(*keyring.Config)) *keyring.Keyring {
	e.t.Helper()
	cfg := keyring.Config{KMS: e.kms, KeyID: kmslocal.DefaultKeyID, Store: e.store(), Clock: e.clock.Now}
	for _, m := range mod {
		m(&cfg)
	}
	k, err := keyring.New(cfg)
	if err != nil {
		e.t.Fatalf("keyring.New = %v", err)
	}
	e.t.Cleanup(func() { k.Close(context.Background()) })
	return k
}
