package kmsaws_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmsaws"
	"github.com/veil-project/veil/internal/kmsfake"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/testsvc"
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

// backend is one KMS the conformance cases run against: local-kms (a real emulator nobody here
// wrote) or the fake (internal/kmsfake), which alone can also fail on purpose and count calls.
type backend struct {
	name   string
	c      *kms.Client
	alias  string // what veil is configured with
	arn    string // the key's ARN, what KMS answers as KeyId ("" for the fake: any ARN)
	alias2 string // a second key, for rewrapping
	fake   *kmsfake.Server
}

func backends(t *testing.T) []backend {
	t.Helper()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	fake := kmsfake.New(kmsfake.Config{KeyIDs: []string{keyID, keyID + "-2"}, AccessKeyID: akid, SecretAccessKey: secret})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	fc, err := kmsaws.New(context.Background(), kmsaws.Config{Region: "eu-west-1", Endpoint: srv.URL, KeyID: keyID, AccessKeyID: akid, SecretAccessKey: secret, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	out := []backend{{name: "fake", c: fc, alias: keyID, arn: kmsfake.ARN(keyID), alias2: keyID + "-2", fake: fake}}
	lk := testsvc.StartLocalKMS(t)
	lc, err := kmsaws.New(context.Background(), kmsaws.Config{Region: lk.Region, Endpoint: lk.Endpoint, KeyID: lk.Alias, AccessKeyID: akid, SecretAccessKey: secret, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, backend{name: "local-kms", c: lc, alias: lk.Alias, arn: lk.KeyARN, alias2: lk.Alias2})
}

// conformance runs f against every backend.
func conformance(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// TestGenerateDecryptRoundTrip: GenerateDataKey called with an alias answers with the key's ARN
// (real KMS never echoes the alias), and the blob decrypts with or without a key id, under the
// alias or the ARN.
func TestGenerateDecryptRoundTrip(t *testing.T) {
	conformance(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		gen, err := b.c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(b.alias), KeySpec: types.DataKeySpecAes256, EncryptionContext: ectx})
		if err != nil {
			t.Fatalf("GenerateDataKey = %v", err)
		}
		if len(gen.Plaintext) != 32 || len(gen.CiphertextBlob) == 0 || aws.ToString(gen.KeyId) != b.arn {
			t.Fatalf("GenerateDataKey(%s) = %d-byte key, %d-byte blob, key id %q; want 32, some, the ARN %q", b.alias, len(gen.Plaintext), len(gen.CiphertextBlob), aws.ToString(gen.KeyId), b.arn)
		}
		for _, id := range []*string{nil, aws.String(b.alias), gen.KeyId} {
			dec, err := b.c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, EncryptionContext: ectx, KeyId: id})
			if err != nil || !bytes.Equal(dec.Plaintext, gen.Plaintext) || aws.ToString(dec.KeyId) != b.arn {
				t.Errorf("Decrypt(KeyId=%v) = key id %q, %v, want the generated key under %s", aws.ToString(id), aws.ToString(dec.KeyId), err, b.arn)
			}
		}
		enc, err := b.c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(b.alias), Plaintext: []byte("kek"), EncryptionContext: ectx})
		if err != nil {
			t.Fatalf("Encrypt = %v", err)
		}
		if aws.ToString(enc.KeyId) != b.arn {
			t.Errorf("Encrypt key id = %q, want the ARN %q", aws.ToString(enc.KeyId), b.arn)
		}
		if dec, err := b.c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ectx}); err != nil || string(dec.Plaintext) != "kek" {
			t.Errorf("Decrypt(Encrypt(kek)) = %v, want kek", err)
		}
		if b.fake != nil {
			for op, want := range map[string]int{kmsfake.OpGenerateDataKey: 1, kmsfake.OpDecrypt: 4, kmsfake.OpEncrypt: 1} {
				if got := b.fake.Calls(op); got != want {
					t.Errorf("Calls(%s) = %d, want %d", op, got, want)
				}
			}
		}
	})
}

func TestRejects(t *testing.T) {
	conformance(t, func(t *testing.T, b backend) {
		c := b.c
		ctx := context.Background()
		gen, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(b.alias), KeySpec: types.DataKeySpecAes256, EncryptionContext: ectx})
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
	})
}

// TestKeyringEndToEnd: seal through one keyring, reveal through a new one (a restart), rewrap
// every app KEK to a second key by alias, and reveal again.
func TestKeyringEndToEnd(t *testing.T) {
	conformance(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		store, err := keyring.NewFileKeyStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		newKeyring := func(keyID string) *keyring.Keyring {
			k, err := keyring.New(keyring.Config{KMS: b.c, KeyID: keyID, Store: store, Clock: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { k.Close(context.Background()) })
			return k
		}
		key, err := newKeyring(b.alias).SealingKey(ctx, "app-1")
		if err != nil {
			t.Fatalf("SealingKey = %v", err)
		}
		stored, _ := store.List(ctx)
		if len(stored) != 1 || stored[0].KeyID != b.arn {
			t.Errorf("stored key = %+v, want one wrapped under %s", stored, b.arn)
		}
		rec, toks := sealHello(t, key, now)
		open := func(k *keyring.Keyring) (string, error) {
			got, err := envelope.NewSealer(k, envelope.WithClock(func() time.Time { return now })).Open(ctx, rec, toks[0])
			return string(got), err
		}
		if got, err := open(newKeyring(b.alias)); err != nil || got != `"hello"` {
			t.Errorf("Open after a restart = %q, %v, want \"hello\"", got, err)
		}
		res, err := keyring.Rewrap(ctx, store, b.c, b.c, b.alias2, now)
		if err != nil || res.Rewrapped != 1 {
			t.Fatalf("Rewrap to %s = %+v, %v, want 1 rewrapped", b.alias2, res, err)
		}
		stored, _ = store.List(ctx)
		if len(stored) != 1 || stored[0].KeyID == b.arn || !strings.HasPrefix(stored[0].KeyID, "arn:aws:kms:") {
			t.Errorf("after Rewrap stored key = %+v, want one wrapped under the second key's ARN", stored)
		}
		if got, err := open(newKeyring(b.alias2)); err != nil || got != `"hello"` {
			t.Errorf("Open after Rewrap = %q, %v, want \"hello\"", got, err)
		}
	})
}

// TestDisabledKeyIsAnOutage: a disabled KMS key (local-kms, DisableKey) stops sealing with a
// transient error, so veil waits for an operator instead of dead-lettering every entry, and
// sealing resumes once the key is enabled again.
func TestDisabledKeyIsAnOutage(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	lk := testsvc.StartLocalKMS(t)
	c, err := kmsaws.New(context.Background(), kmsaws.Config{Region: lk.Region, Endpoint: lk.Endpoint, KeyID: lk.Alias, AccessKeyID: akid, SecretAccessKey: secret, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(lk.KeyID)}); err != nil {
		t.Fatalf("DisableKey = %v", err)
	}
	store, _ := keyring.NewFileKeyStore(t.TempDir())
	k, err := keyring.New(keyring.Config{KMS: c, KeyID: lk.Alias, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(context.Background())
	_, err = k.SealingKey(ctx, "app-1")
	if apiCode(err) != "DisabledException" || !keyring.IsTransient(err) {
		t.Errorf("SealingKey under a disabled key = %v (code %q), want a transient DisabledException", err, apiCode(err))
	}
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(lk.KeyID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.SealingKey(ctx, "app-1"); err != nil {
		t.Errorf("SealingKey after EnableKey = %v", err)
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
		t.Cleanup(func() { k.Close(context.Background()) })
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
	rec, toks := sealHello(t, key, now)
	got, err := sealer.Open(ctx, rec, toks[0])
	if err != nil || string(got) != `"hello"` {
		t.Errorf("Open through a second keyring = %q, %v, want \"hello\"", got, err)
	}
	if g, d := fake.Calls(kmsfake.OpGenerateDataKey), fake.Calls(kmsfake.OpDecrypt); g != 2 || d != 1 {
		t.Errorf("fake saw %d GenerateDataKey (1 failed while down) and %d Decrypt, want 2 and 1", g, d)
	}
}

// sealHello seals the value "hello" at data.text of an app-1 event entry under key, expiring an
// hour after now, with a fresh ref.
func sealHello(t *testing.T, key *envelope.AppKey, now time.Time) (*envelope.Record, []envelope.Token) {
	t.Helper()
	var ref envelope.RefID
	rand.Read(ref[:])
	rec, toks, err := envelope.SealWith(key, rand.Reader, envelope.Header{App: "app-1", Ledger: "event", Ref: ref, Expiry: now.Add(time.Hour)},
		[]envelope.Field{{Path: "data.text", Value: []byte(`"hello"`)}})
	if err != nil {
		t.Fatal(err)
	}
	return rec, toks
}

// TestConfigRedacts: every way a Config prints or logs shows the region, endpoint, key id and
// access key id, and never the secret access key or the session token.
func TestConfigRedacts(t *testing.T) {
	c := kmsaws.Config{Region: "eu-west-1", Endpoint: "http://kms:4566", KeyID: keyID, AccessKeyID: akid, SecretAccessKey: secret, SessionToken: "kms-t0ken-never-printed"}
	leakcheck.Printed(t, c, []string{secret, c.SessionToken}, "eu-west-1", "http://kms:4566", keyID, akid)
	if got, want := c.String(), "kmsaws{region=eu-west-1 key="+akid+" secret=[redacted] session_token=[redacted] endpoint=http://kms:4566 key_id="+keyID+"}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
