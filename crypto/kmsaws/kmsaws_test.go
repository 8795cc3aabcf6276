package kmsaws_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmsaws"
	"github.com/veil-project/veil/crypto/kmsaws/kmsfake"
)

const (
	keyID  = "alias/veil-test"
	akid   = "AKIDVEILTEST"
	secret = "veil-test-secret"
)

var ectx = map[string]string{"veil:app": "app-1", "veil:period": "20779"}

func setup(t *testing.T) (*kmsfake.Server, *kms.Client) {
	t.Helper()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	fake := kmsfake.New(kmsfake.Config{KeyIDs: []string{keyID}, AccessKeyID: akid, SecretAccessKey: secret})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := kmsaws.New(context.Background(), kmsaws.Config{
		Region: "eu-west-1", Endpoint: srv.URL, KeyID: keyID,
		AccessKeyID: akid, SecretAccessKey: secret, MaxAttempts: 1,
	})
	if err != nil {
		t.Fatalf("kmsaws.New = %v", err)
	}
	return fake, c
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func TestGenerateDecryptRoundTrip(t *testing.T) {
	fake, c := setup(t)
	ctx := context.Background()
	gen, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256, EncryptionContext: ectx})
	if err != nil {
		t.Fatalf("GenerateDataKey = %v", err)
	}
	if len(gen.Plaintext) != 32 || len(gen.CiphertextBlob) == 0 || aws.ToString(gen.KeyId) != keyID {
		t.Fatalf("GenerateDataKey = %d-byte key, %d-byte blob, key id %q; want 32, some, %q", len(gen.Plaintext), len(gen.CiphertextBlob), aws.ToString(gen.KeyId), keyID)
	}
	for _, id := range []*string{nil, aws.String(keyID)} {
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, EncryptionContext: ectx, KeyId: id})
		if err != nil || !bytes.Equal(dec.Plaintext, gen.Plaintext) {
			t.Errorf("Decrypt(KeyId=%v) = %v, want the generated key", aws.ToString(id), err)
		}
	}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("kek"), EncryptionContext: ectx})
	if err != nil {
		t.Fatalf("Encrypt = %v", err)
	}
	if dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ectx}); err != nil || string(dec.Plaintext) != "kek" {
		t.Errorf("Decrypt(Encrypt(kek)) = %v, want kek", err)
	}
	for op, want := range map[string]int{kmsfake.OpGenerateDataKey: 1, kmsfake.OpDecrypt: 3, kmsfake.OpEncrypt: 1} {
		if got := fake.Calls(op); got != want {
			t.Errorf("Calls(%s) = %d, want %d", op, got, want)
		}
	}
}

func TestFakeRejects(t *testing.T) {
	_, c := setup(t)
	ctx := context.Background()
	gen, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256, EncryptionContext: ectx})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"wrong context", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, EncryptionContext: map[string]string{"veil:app": "app-2", "veil:period": "20779"}})
			return err
		}, "InvalidCiphertextException"},
		{"no context", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob})
			return err
		}, "InvalidCiphertextException"},
		{"unknown key on generate", func() error {
			_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String("alias/nope"), KeySpec: types.DataKeySpecAes256})
			return err
		}, "NotFoundException"},
		{"unknown key on decrypt", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, EncryptionContext: ectx, KeyId: aws.String("alias/nope")})
			return err
		}, "NotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := apiCode(err); got != tt.want {
				t.Errorf("%s = %v (code %q), want %s", tt.name, err, got, tt.want)
			}
			if keyring.IsTransient(&keyring.KMSError{Op: "x", Err: err}) {
				t.Errorf("IsTransient(%s) = true, want false", tt.name)
			}
		})
	}
	var nf *types.NotFoundException
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String("alias/nope"), KeySpec: types.DataKeySpecAes256})
	if !errors.As(err, &nf) {
		t.Errorf("unknown key error = %T, want *types.NotFoundException", err)
	}
}

func TestBadCredentialsRejected(t *testing.T) {
	fake, _ := setup(t)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c, err := kmsaws.New(context.Background(), kmsaws.Config{Region: "eu-west-1", Endpoint: srv.URL, AccessKeyID: akid, SecretAccessKey: "wrong", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256})
	if got := apiCode(err); got != "InvalidSignatureException" {
		t.Errorf("GenerateDataKey with a wrong secret = %v, want InvalidSignatureException", err)
	}
	if got := fake.Calls(kmsfake.OpGenerateDataKey); got != 0 {
		t.Errorf("Calls(GenerateDataKey) = %d, want 0: unsigned calls must not count", got)
	}
}

func TestDownThenUp(t *testing.T) {
	fake, c := setup(t)
	fake.SetDown(true)
	_, err := c.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256})
	if apiCode(err) != "KMSInternalException" || !keyring.IsTransient(&keyring.KMSError{Op: "x", Err: err}) {
		t.Errorf("GenerateDataKey while down = %v, want a transient KMSInternalException", err)
	}
	fake.SetDown(false)
	if _, err := c.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256}); err != nil {
		t.Errorf("GenerateDataKey after SetDown(false) = %v", err)
	}
}

func TestKeyringOnAWSClient(t *testing.T) {
	fake, c := setup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	store, err := keyring.NewFileKeyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	newKeyring := func() *keyring.Keyring {
		k, err := keyring.New(keyring.Config{KMS: c, KeyID: keyID, Store: store, Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		return k
	}

	// KMS down: no key, a transient error, nothing stored.
	fake.SetDown(true)
	if _, err := newKeyring().SealingKey(ctx, "app-1"); !keyring.IsTransient(err) {
		t.Errorf("SealingKey with KMS down = %v, want a transient error", err)
	}
	if keys, _ := store.List(ctx); len(keys) != 0 {
		t.Errorf("store holds %d keys after a failed generate, want 0", len(keys))
	}
	fake.SetDown(false)

	k := newKeyring()
	key, err := k.SealingKey(ctx, "app-1")
	if err != nil {
		t.Fatalf("SealingKey = %v", err)
	}
	sealer := envelope.NewSealer(newKeyring(), envelope.WithClock(func() time.Time { return now }))
	var ref envelope.RefID
	rand.Read(ref[:])
	rec, toks, err := envelope.SealWith(key, rand.Reader, envelope.Header{App: "app-1", Ledger: "event", Ref: ref, Expiry: now.Add(time.Hour)},
		[]envelope.Field{{Path: "data.text", Value: []byte(`"hello"`)}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := sealer.Open(ctx, rec, toks[0])
	if err != nil || string(got) != `"hello"` {
		t.Errorf("Open through a second keyring = %q, %v, want \"hello\"", got, err)
	}
	if g, d := fake.Calls(kmsfake.OpGenerateDataKey), fake.Calls(kmsfake.OpDecrypt); g != 2 || d != 1 {
		t.Errorf("fake saw %d GenerateDataKey (1 failed while down) and %d Decrypt, want 2 and 1", g, d)
	}
}
