package broker

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/internal/aesgcm"
	"github.com/veil-project/veil/internal/atomicfile"
)

// KMS is the subset of *kms.Client the embedded broker uses to wrap the data keys of the raw
// records it keeps. *kms.Client and crypto/kmslocal.Provider satisfy it.
type KMS interface {
	GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// RawWindow is the span of one raw data key and of one raw record file: raw records written in
// the same RawWindow share a key and a file, and both are deleted once the window is older than
// the retention of the raw topic (the file) or of the longest raw topic (the key).
const RawWindow = 15 * time.Minute

const (
	rawKeysDir    = "rawkeys"
	rawRecordsDir = "raw"
	// Encryption context of a raw data key.
	ctxPurpose = "veil:purpose"
	ctxWindow  = "veil:window"
	purposeRaw = "embedded-broker-raw"
)

// rawKeys seals and opens raw records under one data key per RawWindow, each wrapped by the KMS
// and kept wrapped in dir. Plaintext keys live in memory only.
type rawKeys struct {
	kms   KMS
	keyID string
	dir   string

	mu   sync.Mutex
	aead map[int64]cipher.AEAD // window → AES-256-GCM
}

func newRawKeys(k KMS, keyID, dir string) (*rawKeys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating raw key directory: %w", err)
	}
	return &rawKeys{kms: k, keyID: keyID, dir: dir, aead: make(map[int64]cipher.AEAD)}, nil
}

func windowOf(t time.Time) int64 { return t.UnixNano() / int64(RawWindow) }

func windowEnd(w int64) time.Time { return time.Unix(0, (w+1)*int64(RawWindow)) }

func (r *rawKeys) keyPath(w int64) string {
	return filepath.Join(r.dir, "raw-"+strconv.FormatInt(w, 10)+".key")
}

func encryptionContext(w int64) map[string]string {
	return map[string]string{ctxPurpose: purposeRaw, ctxWindow: strconv.FormatInt(w, 10)}
}

// key returns the AEAD of window w, unwrapping its kept key, or creating one if create is set.
// It returns errRawKeyGone for a window whose key does not exist and may not be created.
func (r *rawKeys) key(ctx context.Context, w int64, create bool) (cipher.AEAD, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.aead[w]; a != nil {
		return a, nil
	}
	blob, err := os.ReadFile(r.keyPath(w))
	var dk []byte
	switch {
	case err == nil:
		out, err := r.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(r.keyID), EncryptionContext: encryptionContext(w)})
		if err != nil {
			return nil, fmt.Errorf("unwrapping raw data key of window %d: %w", w, err)
		}
		dk = out.Plaintext
	case errors.Is(err, fs.ErrNotExist) && create:
		out, err := r.kms.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(r.keyID), KeySpec: types.DataKeySpecAes256, EncryptionContext: encryptionContext(w)})
		if err != nil {
			return nil, fmt.Errorf("generating raw data key: %w", err)
		}
		// Durable before any record is sealed under it: the directory is synced too, so a power
		// cut cannot keep records whose key file's rename was lost.
		if err := atomicfile.WriteFile(r.keyPath(w), out.CiphertextBlob, 0o600); err != nil {
			clear(out.Plaintext)
			return nil, fmt.Errorf("keeping raw data key: %w", err)
		}
		dk = out.Plaintext
	case errors.Is(err, fs.ErrNotExist):
		return nil, errRawKeyGone
	default:
		return nil, err
	}
	defer clear(dk)
	a, err := aesgcm.New(dk)
	if err != nil {
		return nil, fmt.Errorf("raw data key of window %d: %w", w, err)
	}
	r.aead[w] = a
	return a, nil
}

var errRawKeyGone = errors.New("raw data key deleted")

// Sealed raw record payload: i64 offset, i64 window, 12-byte nonce, AES-256-GCM of the record
// payload (see encodeRecord) with associated data topic, partition and offset. At least 44 bytes,
// so it never reads as a gap (16).
const sealedOverhead = 8 + 8 + 12 + 16

func rawAAD(topic string, p int32, offset int64) []byte {
	b := make([]byte, 0, len(topic)+16)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(topic)))
	b = append(b, topic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(p))
	return binary.LittleEndian.AppendUint64(b, uint64(offset))
}

// sealRecord returns the frame of r sealed under the key of window w.
func (r *rawKeys) sealRecord(ctx context.Context, w int64, rec *kgo.Record) ([]byte, error) {
	a, err := r.key(ctx, w, true)
	if err != nil {
		return nil, err
	}
	plain := encodeRecord(rec, rec.Offset)[8:]
	defer clear(plain)
	payload := make([]byte, 8, 8+8+8+12+len(plain)+16)
	payload = binary.LittleEndian.AppendUint64(payload, uint64(rec.Offset))
	payload = binary.LittleEndian.AppendUint64(payload, uint64(w))
	nonce := payload[len(payload) : len(payload)+12]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	payload = payload[:len(payload)+12]
	payload = a.Seal(payload, nonce, plain, rawAAD(rec.Topic, rec.Partition, rec.Offset))
	return frame(payload[8:], payload), nil
}

// openRecord opens a sealed payload. A payload whose key is deleted opens as errRawKeyGone.
func (r *rawKeys) openRecord(ctx context.Context, topic string, p int32, payload []byte) (*kgo.Record, error) {
	if len(payload) < sealedOverhead {
		return nil, errors.New("sealed raw record too short")
	}
	off := int64(binary.LittleEndian.Uint64(payload[0:8]))
	w := int64(binary.LittleEndian.Uint64(payload[8:16]))
	a, err := r.key(ctx, w, false)
	if err != nil {
		return nil, err
	}
	plain, err := a.Open(nil, payload[16:28], payload[28:], rawAAD(topic, p, off))
	if err != nil {
		return nil, fmt.Errorf("opening raw record %s/%d@%d: %w", topic, p, off, err)
	}
	rec, ok := decodeRecord(plain)
	if !ok || rec.Offset != off {
		return nil, fmt.Errorf("raw record %s/%d@%d does not decode", topic, p, off)
	}
	rec.Topic, rec.Partition = topic, p
	return rec, nil
}

// frame puts the length and CRC-32C of payload in the 8 bytes before it; buf is those 8 bytes
// followed by payload.
func frame(payload, buf []byte) []byte {
	binary.LittleEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[4:8], crc32Checksum(payload))
	return buf
}

// shred deletes the keys of windows that ended more than maxRet ago.
func (r *rawKeys) shred(now time.Time, maxRet time.Duration) {
	ents, _ := os.ReadDir(r.dir)
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "raw-")
		if !ok {
			continue
		}
		w, err := strconv.ParseInt(strings.TrimSuffix(s, ".key"), 10, 64)
		if err != nil || now.Sub(windowEnd(w)) <= maxRet {
			continue
		}
		os.Remove(filepath.Join(r.dir, e.Name()))
		r.mu.Lock()
		delete(r.aead, w)
		r.mu.Unlock()
	}
}
