// Package kmslocal is the embedded KMS: a local root key file wraps data keys with AES-256-GCM,
// speaking the request and response types of aws-sdk-go-v2/service/kms so that it can stand in for
// *kms.Client (it satisfies keyring.KMS).
//
// Guarantees: the root key file is 32 random bytes, created with mode 0600 (in a 0700 directory
// if the directory is new) and refused when readable or writable by group or others or of the
// wrong length; the root key never leaves the Provider (it does not print); every ciphertext
// blob authenticates its key id and the full encryption context, so decrypting under any other
// context or key id fails.
package kmslocal

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/internal/aesgcm"
	"github.com/veil-project/veil/internal/atomicfile"
)

// DefaultKeyID is the key id veil uses with the local provider. Any non-empty id works: it is
// bound into each blob, not looked up.
const DefaultKeyID = "veil-local-root"

// RootKeySize is the size of the root key file in bytes.
const RootKeySize = 32

const (
	blobVersion  = 1
	nonceSize    = 12
	tagSize      = 16
	maxKeyIDLen  = 2048
	maxPlaintext = 4096
	maxDataKey   = 1024
	aadLabel     = "veil-kmslocal-v1"
)

// Provider wraps and unwraps data keys under one root key.
type Provider struct {
	root cipher.AEAD
}

// Open loads the root key file at path, creating it (and its directory, mode 0700) on first run.
func Open(path string) (*Provider, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating root key directory: %w", err)
	}
	root, err := readRoot(path)
	if errors.Is(err, fs.ErrNotExist) {
		root, err = createRoot(path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(root)
	return New(root)
}

// New returns a Provider for the given 32-byte root key, which it does not retain: the caller may
// zero it afterwards.
func New(root []byte) (*Provider, error) {
	if len(root) != RootKeySize {
		return nil, fmt.Errorf("creating root cipher: root key is %d bytes, want %d", len(root), RootKeySize)
	}
	aead, err := aesgcm.New(root)
	if err != nil {
		return nil, fmt.Errorf("creating root cipher: %w", err)
	}
	return &Provider{root: aead}, nil
}

func readRoot(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading root key file: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("reading root key file %s: not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("reading root key file %s: mode %#o lets group or others access it, want 0600", path, fi.Mode().Perm())
	case fi.Size() != RootKeySize:
		return nil, fmt.Errorf("reading root key file %s: %d bytes, want %d", path, fi.Size(), RootKeySize)
	}
	root := make([]byte, RootKeySize)
	if _, err := io.ReadFull(f, root); err != nil {
		return nil, fmt.Errorf("reading root key file: %w", err)
	}
	return root, nil
}

// createRoot writes a fresh root key through a synced temp file hard-linked into place, so a
// concurrent first run never sees a partial file and both processes end up with the same key.
func createRoot(path string) ([]byte, error) {
	root := make([]byte, RootKeySize)
	if _, err := rand.Read(root); err != nil {
		return nil, fmt.Errorf("generating root key: %w", err)
	}
	defer clear(root)
	return writeRoot(path, root)
}

// ErrRootKeyConflict is returned by Move when both files exist and hold different keys.
var ErrRootKeyConflict = errors.New("kmslocal: two different root keys")

// Move moves the root key file at from to to (creating to's directory, mode 0700), unless from
// does not exist (moved is false). The key is written and synced at to before from is removed,
// so a crash leaves at least one copy; a later Move finishes the job when both hold the same key.
// When both exist with different keys it returns ErrRootKeyConflict and touches neither.
func Move(from, to string) (moved bool, err error) {
	old, err := readRoot(from)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer clear(old)
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return false, fmt.Errorf("creating root key directory: %w", err)
	}
	cur, err := readRoot(to)
	if errors.Is(err, fs.ErrNotExist) {
		cur, err = writeRoot(to, old)
	}
	if err != nil {
		return false, err
	}
	defer clear(cur)
	if subtle.ConstantTimeCompare(cur, old) != 1 {
		return false, fmt.Errorf("%w: %s and %s (keep the one the key store was wrapped under)", ErrRootKeyConflict, from, to)
	}
	if err := os.Remove(from); err != nil {
		return false, fmt.Errorf("removing the old root key file: %w", err)
	}
	syncDir(filepath.Dir(from))
	return true, nil
}

// syncDir is atomicfile.SyncDir, best effort: the root key is written and read back either way.
func syncDir(dir string) { _ = atomicfile.SyncDir(dir) }

// writeRoot installs root at path through a synced temp file hard-linked into place (never over
// an existing file) and returns what path then holds.
func writeRoot(path string, root []byte) ([]byte, error) {
	dir := filepath.Dir(path)
	tmp, err := atomicfile.WriteTemp(dir, ".root-*", root, 0o600)
	if err != nil {
		return nil, fmt.Errorf("writing root key file: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("linking root key file: %w", err)
	}
	syncDir(dir)
	// Read back whatever won the race.
	return readRoot(path)
}

func (p *Provider) String() string       { return "kmslocal.Provider{root:REDACTED}" }
func (p *Provider) GoString() string     { return p.String() }
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// GenerateDataKey returns a fresh data key of KeySpec (AES_128, AES_256) or NumberOfBytes (1 to
// 1024), in plaintext and wrapped under the root key, bound to KeyId and EncryptionContext.
func (p *Provider) GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, _ ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	if err := begin(ctx, in == nil); err != nil {
		return nil, err
	}
	keyID, err := checkKeyID(in.KeyId)
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case in.KeySpec != "" && in.NumberOfBytes != nil:
		return nil, validation("KeySpec and NumberOfBytes are mutually exclusive")
	case in.KeySpec == types.DataKeySpecAes256:
		n = 32
	case in.KeySpec == types.DataKeySpecAes128:
		n = 16
	case in.KeySpec != "":
		return nil, validation("unsupported KeySpec")
	case in.NumberOfBytes != nil && *in.NumberOfBytes >= 1 && *in.NumberOfBytes <= maxDataKey:
		n = int(*in.NumberOfBytes)
	default:
		return nil, validation("KeySpec or NumberOfBytes (1 to 1024) is required")
	}
	dk := make([]byte, n)
	if _, err := rand.Read(dk); err != nil {
		return nil, fmt.Errorf("generating data key: %w", err)
	}
	blob, err := p.seal(keyID, dk, in.EncryptionContext)
	if err != nil {
		clear(dk)
		return nil, err
	}
	return &kms.GenerateDataKeyOutput{CiphertextBlob: blob, Plaintext: dk, KeyId: aws.String(keyID)}, nil
}

// Encrypt wraps up to 4096 bytes of Plaintext under the root key, bound to KeyId and
// EncryptionContext.
func (p *Provider) Encrypt(ctx context.Context, in *kms.EncryptInput, _ ...func(*kms.Options)) (*kms.EncryptOutput, error) {
	if err := begin(ctx, in == nil); err != nil {
		return nil, err
	}
	keyID, err := checkKeyID(in.KeyId)
	if err != nil {
		return nil, err
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > maxPlaintext {
		return nil, validation("Plaintext must be 1 to 4096 bytes")
	}
	if in.EncryptionAlgorithm != "" && in.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		return nil, validation("unsupported EncryptionAlgorithm")
	}
	blob, err := p.seal(keyID, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kms.EncryptOutput{CiphertextBlob: blob, KeyId: aws.String(keyID), EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault}, nil
}

// Decrypt unwraps a blob made by GenerateDataKey or Encrypt. It fails with
// InvalidCiphertextException unless the blob is intact and EncryptionContext is exactly the one
// it was made with, and with IncorrectKeyException if KeyId is set and differs from the blob's.
func (p *Provider) Decrypt(ctx context.Context, in *kms.DecryptInput, _ ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	if err := begin(ctx, in == nil); err != nil {
		return nil, err
	}
	if in.EncryptionAlgorithm != "" && in.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		return nil, validation("unsupported EncryptionAlgorithm")
	}
	keyID, nonce, sealed, err := parseBlob(in.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	if in.KeyId != nil && *in.KeyId != keyID {
		return nil, &types.IncorrectKeyException{Message: aws.String("the ciphertext was not wrapped under the requested key")}
	}
	pt, err := p.root.Open(nil, nonce, sealed, aad(keyID, in.EncryptionContext))
	if err != nil {
		return nil, invalidCiphertext()
	}
	return &kms.DecryptOutput{Plaintext: pt, KeyId: aws.String(keyID), EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault}, nil
}

// begin is what every KMS call checks first: ctx is live and there is an input.
func begin(ctx context.Context, missing bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if missing {
		return validation("missing input")
	}
	return nil
}

// KeyIDOf returns the key id bound into a blob, or an error if the blob is malformed.
func KeyIDOf(blob []byte) (string, error) {
	keyID, _, _, err := parseBlob(blob)
	return keyID, err
}

// seal returns version || u16 len(keyID) || keyID || nonce || AES-256-GCM(root, pt, aad).
func (p *Provider) seal(keyID string, pt []byte, ec map[string]string) ([]byte, error) {
	blob := make([]byte, 0, 1+2+len(keyID)+nonceSize+len(pt)+tagSize)
	blob = append(blob, blobVersion)
	blob = binary.BigEndian.AppendUint16(blob, uint16(len(keyID)))
	blob = append(blob, keyID...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("generating nonce: %w", err)
	}
	blob = append(blob, nonce...)
	return p.root.Seal(blob, nonce, pt, aad(keyID, ec)), nil
}

// parseBlob bounds every length before slicing.
func parseBlob(blob []byte) (keyID string, nonce, sealed []byte, err error) {
	if len(blob) < 1+2 || blob[0] != blobVersion {
		return "", nil, nil, invalidCiphertext()
	}
	n := int(binary.BigEndian.Uint16(blob[1:3]))
	rest := blob[3:]
	if n == 0 || n > maxKeyIDLen || len(rest) < n+nonceSize+tagSize {
		return "", nil, nil, invalidCiphertext()
	}
	return string(rest[:n]), rest[n : n+nonceSize], rest[n+nonceSize:], nil
}

// aad is the canonical encoding of the key id and the encryption context: a label, then
// length-prefixed key id, pair count and pairs sorted by key.
func aad(keyID string, ec map[string]string) []byte {
	keys := make([]string, 0, len(ec))
	size := len(aadLabel) + 8 + len(keyID)
	for k, v := range ec {
		keys = append(keys, k)
		size += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, aadLabel...)
	b = appendString(b, keyID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, ec[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func checkKeyID(id *string) (string, error) {
	s := aws.ToString(id)
	if s == "" || len(s) > maxKeyIDLen {
		return "", validation("KeyId must be 1 to 2048 bytes")
	}
	return s, nil
}

func validation(msg string) error {
	return &smithy.GenericAPIError{Code: "ValidationException", Message: msg, Fault: smithy.FaultClient}
}

func invalidCiphertext() error {
	return &types.InvalidCiphertextException{Message: aws.String("the ciphertext is invalid or its encryption context does not match")}
}
