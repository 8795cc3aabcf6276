package kmslocal_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/veil-project/veil/crypto/kmslocal"
)

// TestMove: the root key moves out of a data directory byte for byte (blobs wrapped before open
// after), with 0600 in a new 0700 directory; an interrupted move (both copies equal) finishes; two
// different keys are refused and both left in place; nothing to move is not an error.
func TestMove(t *testing.T) {
	dir := t.TempDir()
	from := filepath.Join(dir, "data", "root.key")
	to := filepath.Join(dir, "data.kms", "root.key")
	p, err := kmslocal.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := p.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(kmslocal.DefaultKeyID), Plaintext: []byte("k"), EncryptionContext: ctxA})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(from)

	moved, err := kmslocal.Move(from, to)
	if err != nil || !moved {
		t.Fatalf("Move = %v, %v; want true, nil", moved, err)
	}
	if _, err := os.Stat(from); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old root key after Move: Stat = %v, want not exist", err)
	}
	after, _ := os.ReadFile(to)
	if !bytes.Equal(before, after) {
		t.Fatalf("moved root key differs from the original")
	}
	for path, want := range map[string]os.FileMode{to: 0o600, filepath.Dir(to): 0o700} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, %v; want %#o", path, fi.Mode().Perm(), err, want)
		}
	}
	q, err := kmslocal.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := q.Decrypt(context.Background(), &kms.DecryptInput{KeyId: aws.String(kmslocal.DefaultKeyID), CiphertextBlob: blob.CiphertextBlob, EncryptionContext: ctxA}); err != nil || string(out.Plaintext) != "k" {
		t.Errorf("blob wrapped before the move: Decrypt = %v, want it to open", err)
	}

	if moved, err := kmslocal.Move(from, to); err != nil || moved {
		t.Errorf("Move with nothing to move = %v, %v; want false, nil", moved, err)
	}

	// Interrupted after the copy: both hold the same key.
	if err := os.WriteFile(from, after, 0o600); err != nil {
		t.Fatal(err)
	}
	if moved, err := kmslocal.Move(from, to); err != nil || !moved {
		t.Errorf("Move finishing an interrupted move = %v, %v; want true, nil", moved, err)
	}
	if _, err := os.Stat(from); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old root key after finishing: Stat = %v, want not exist", err)
	}

	// Two different keys: refuse, touch neither.
	other := filepath.Join(dir, "other", "root.key")
	if _, err := kmslocal.Open(other); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(other)
	if _, err := kmslocal.Move(other, to); !errors.Is(err, kmslocal.ErrRootKeyConflict) {
		t.Errorf("Move onto a different key = %v, want ErrRootKeyConflict", err)
	}
	if a, _ := os.ReadFile(other); !bytes.Equal(a, otherKey) {
		t.Errorf("source changed by a refused move")
	}
	if b, _ := os.ReadFile(to); !bytes.Equal(b, after) {
		t.Errorf("destination changed by a refused move")
	}

	// A source readable by others is refused like Open refuses it.
	os.Chmod(other, 0o644)
	if _, err := kmslocal.Move(other, filepath.Join(dir, "x", "root.key")); err == nil {
		t.Errorf("Move of a 0644 root key = nil, want refused")
	}
}
