package kmslocal_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmslocal"
)

var _ keyring.ReEncrypter = (*kmslocal.Provider)(nil)

var ctxA = map[string]string{"veil:app": "app-a", "veil:period": "20000"}

func openTemp(t *testing.T) (*kmslocal.Provider, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys", "root.key")
	p, err := kmslocal.Open(path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	return p, path
}

func generate(t *testing.T, p *kmslocal.Provider, keyID string, ec map[string]string) *kms.GenerateDataKeyOutput {
	t.Helper()
	out, err := p.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{
		KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec,
	})
	if err != nil {
		t.Fatalf("GenerateDataKey = %v", err)
	}
	return out
}

func TestOpenCreatesRootWithModes(t *testing.T) {
	_, path := openTemp(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("root key mode = %#o, want 0600", got)
	}
	if fi.Size() != kmslocal.RootKeySize {
		t.Errorf("root key size = %d, want %d", fi.Size(), kmslocal.RootKeySize)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("root key dir mode = %#o, want 0700", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("root key dir holds %d entries, want 1 (no temp files left)", len(entries))
	}
}

func TestReopenGivesSameRoot(t *testing.T) {
	p1, path := openTemp(t)
	out := generate(t, p1, kmslocal.DefaultKeyID, ctxA)
	p2, err := kmslocal.Open(path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	dec, err := p2.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ctxA, KeyId: aws.String(kmslocal.DefaultKeyID)})
	if err != nil {
		t.Fatalf("Decrypt after reopen = %v", err)
	}
	if !bytes.Equal(dec.Plaintext, out.Plaintext) || len(dec.Plaintext) != 32 {
		t.Errorf("Decrypt after reopen returned a different data key")
	}
	if got := aws.ToString(dec.KeyId); got != kmslocal.DefaultKeyID {
		t.Errorf("Decrypt KeyId = %q, want %q", got, kmslocal.DefaultKeyID)
	}

	other, _ := openTemp(t)
	if _, err := other.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ctxA}); err == nil {
		t.Errorf("Decrypt under another root succeeded")
	}
}

func TestConcurrentFirstRunAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	const n = 8
	ps := make([]*kmslocal.Provider, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ps[i], errs[i] = kmslocal.Open(path) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d = %v", i, err)
		}
	}
	out := generate(t, ps[0], "k", nil)
	for i, p := range ps {
		if _, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob}); err != nil {
			t.Errorf("provider #%d cannot decrypt: %v", i, err)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"group readable", make([]byte, 32), 0o640, "group or others"},
		{"world readable", make([]byte, 32), 0o604, "group or others"},
		{"short", make([]byte, 31), 0o600, "31 bytes"},
		{"long", make([]byte, 33), 0o600, "33 bytes"},
		{"empty", nil, 0o600, "0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "root.key")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := kmslocal.Open(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%s) = %v, want error containing %q", tt.name, err, tt.want)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "root.key")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := kmslocal.Open(path); err == nil {
			t.Errorf("Open(directory) = nil error, want error")
		}
	})
}

func TestDecryptRejects(t *testing.T) {
	p, _ := openTemp(t)
	out := generate(t, p, "key-1", ctxA)
	tests := []struct {
		name string
		in   kms.DecryptInput
		code string
	}{
		{"other app", kms.DecryptInput{EncryptionContext: map[string]string{"veil:app": "app-b", "veil:period": "20000"}}, "InvalidCiphertextException"},
		{"other period", kms.DecryptInput{EncryptionContext: map[string]string{"veil:app": "app-a", "veil:period": "20001"}}, "InvalidCiphertextException"},
		{"missing context", kms.DecryptInput{}, "InvalidCiphertextException"},
		{"extra context", kms.DecryptInput{EncryptionContext: map[string]string{"veil:app": "app-a", "veil:period": "20000", "x": ""}}, "InvalidCiphertextException"},
		{"other key id", kms.DecryptInput{EncryptionContext: ctxA, KeyId: aws.String("key-2")}, "IncorrectKeyException"},
		{"other algorithm", kms.DecryptInput{EncryptionContext: ctxA, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256}, "ValidationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.CiphertextBlob = out.CiphertextBlob
			_, err := p.Decrypt(context.Background(), &in)
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != tt.code {
				t.Errorf("Decrypt(%s) = %v, want %s", tt.name, err, tt.code)
			}
		})
	}
}

func TestDecryptTamper(t *testing.T) {
	p, _ := openTemp(t)
	out := generate(t, p, "key-1", ctxA)
	blob := out.CiphertextBlob
	for i := range len(blob) * 8 {
		b := bytes.Clone(blob)
		b[i/8] ^= 1 << (i % 8)
		if _, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: b, EncryptionContext: ctxA}); err == nil {
			t.Fatalf("Decrypt with bit %d flipped succeeded", i)
		}
	}
	for n := range len(blob) {
		if _, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob[:n], EncryptionContext: ctxA}); err == nil {
			t.Fatalf("Decrypt of blob truncated to %d bytes succeeded", n)
		}
	}
	if _, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: append(bytes.Clone(blob), 0), EncryptionContext: ctxA}); err == nil {
		t.Fatalf("Decrypt of extended blob succeeded")
	}
}

func TestGenerateDataKeySizes(t *testing.T) {
	p, _ := openTemp(t)
	tests := []struct {
		name string
		in   kms.GenerateDataKeyInput
		want int // 0: error
	}{
		{"AES_256", kms.GenerateDataKeyInput{KeyId: aws.String("k"), KeySpec: types.DataKeySpecAes256}, 32},
		{"AES_128", kms.GenerateDataKeyInput{KeyId: aws.String("k"), KeySpec: types.DataKeySpecAes128}, 16},
		{"64 bytes", kms.GenerateDataKeyInput{KeyId: aws.String("k"), NumberOfBytes: aws.Int32(64)}, 64},
		{"both", kms.GenerateDataKeyInput{KeyId: aws.String("k"), KeySpec: types.DataKeySpecAes256, NumberOfBytes: aws.Int32(32)}, 0},
		{"neither", kms.GenerateDataKeyInput{KeyId: aws.String("k")}, 0},
		{"too many bytes", kms.GenerateDataKeyInput{KeyId: aws.String("k"), NumberOfBytes: aws.Int32(1025)}, 0},
		{"no key id", kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes256}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := p.GenerateDataKey(context.Background(), &tt.in)
			if tt.want == 0 {
				if err == nil {
					t.Errorf("GenerateDataKey(%s) = nil error, want error", tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("GenerateDataKey(%s) = %v", tt.name, err)
			}
			if len(out.Plaintext) != tt.want {
				t.Errorf("GenerateDataKey(%s) plaintext = %d bytes, want %d", tt.name, len(out.Plaintext), tt.want)
			}
			dec, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob})
			if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
				t.Errorf("Decrypt(GenerateDataKey(%s)) = %v, want the same data key", tt.name, err)
			}
		})
	}
}

func TestEncryptRoundTrip(t *testing.T) {
	p, _ := openTemp(t)
	out, err := p.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String("k2"), Plaintext: []byte("wrapped kek"), EncryptionContext: ctxA})
	if err != nil {
		t.Fatalf("Encrypt = %v", err)
	}
	if id, err := kmslocal.KeyIDOf(out.CiphertextBlob); err != nil || id != "k2" {
		t.Errorf("KeyIDOf = %q, %v, want k2", id, err)
	}
	dec, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ctxA})
	if err != nil || string(dec.Plaintext) != "wrapped kek" {
		t.Errorf("Decrypt(Encrypt(x)) = %v, want x", err)
	}
}

func TestProviderDoesNotPrintRoot(t *testing.T) {
	p, path := openTemp(t)
	root, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("provider", "p", p)
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), logged.String()} {
		if !strings.Contains(s, "REDACTED") || bytes.Contains([]byte(s), root) || strings.Contains(s, fmt.Sprintf("%x", root)) {
			t.Errorf("provider printed as %q, want a redacted form", s)
		}
	}
}

// The golden blob was made with root 0x07 × 32, key id DefaultKeyID and context ctxA; it pins the
// blob layout and AAD encoding so that keys wrapped by an older build still open.
func golden(t testing.TB) (*kmslocal.Provider, []byte) {
	t.Helper()
	p, err := kmslocal.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	h, err := os.ReadFile(filepath.Join("testdata", "golden_blob.hex"))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	return p, blob
}

const goldenPlaintext = "golden data key, 32 bytes long!!"

func TestGoldenBlob(t *testing.T) {
	p, blob := golden(t)
	out, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ctxA, KeyId: aws.String(kmslocal.DefaultKeyID)})
	if err != nil {
		t.Fatalf("Decrypt(golden) = %v", err)
	}
	if string(out.Plaintext) != goldenPlaintext {
		t.Errorf("Decrypt(golden) = %q, want %q", out.Plaintext, goldenPlaintext)
	}
}

func FuzzDecrypt(f *testing.F) {
	p, blob := golden(f)
	f.Add(blob)
	f.Add([]byte{1, 0, 1, 'k'})
	f.Add([]byte{1, 0xff, 0xff})
	f.Add(blob[:len(blob)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := p.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: b, EncryptionContext: ctxA})
		if err == nil && (!bytes.Equal(b, blob) || string(out.Plaintext) != goldenPlaintext) {
			t.Fatalf("Decrypt accepted a forged blob (%d bytes of plaintext)", len(out.Plaintext))
		}
	})
}
