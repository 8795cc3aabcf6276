package blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/sinks/store"
)

// FieldPath is the field a media DEK is sealed under (the blob entry's data.content).
const FieldPath = "data.content"

// Status is the outcome of opening a blob token; the strings match reveal.Status.
type Status string

const (
	StatusOK      Status = "ok"
	StatusExpired Status = "expired" // past its TTL, erased, keys destroyed or object swept
	StatusInvalid Status = "invalid" // not a blob token, or it does not authenticate
)

// Config configures a Service.
type Config struct {
	Objects Objects          // required: where ciphertext goes
	Store   store.Store      // required by Open and SealStaged: where sealed DEK records live
	Sealer  *envelope.Sealer // required: seals and opens media DEKs
	// ChunkSize is the plaintext bytes per chunk; default DefaultChunkSize.
	ChunkSize int

	// Staging: see ResolveStaging.
	StagingDir     string    // local staging directory; empty refuses local staging references
	StagingS3      StagingS3 // reads s3:// staging references; nil refuses them
	StagingBuckets []string  // the only buckets s3:// references may name

	// LinkSecret keys signed links (at least 32 bytes). Every process serving links of one
	// deployment needs the same secret; empty means a random secret per Service, so links die
	// with the process.
	LinkSecret []byte
	// LinkPrefix starts every link path; default "/v1/blobs/".
	LinkPrefix string

	// Audit, when set, is called for every link fetch once the blob is opened (or found gone),
	// before a byte is streamed; an error answers 503 and streams nothing (fail closed).
	Audit func(ctx context.Context, tok envelope.Token, st Status) error

	// Now is the clock for sweeping and links; default time.Now. The Sealer and the Store keep
	// their own clocks for expiry on open.
	Now func() time.Time
}

// Service seals media into the blob store and opens them again. It is safe for concurrent use.
type Service struct {
	cfg     Config
	staging *stagingDir
	links   *linkSealer
	now     func() time.Time

	closeOnce sync.Once
	closeErr  error
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Objects == nil || cfg.Sealer == nil {
		return nil, errors.New("configuring blob service: objects and sealer are required")
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ChunkSize < MinChunkSize || cfg.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("configuring blob service: %w: chunk size out of range", ErrInvalidInput)
	}
	if cfg.LinkPrefix == "" {
		cfg.LinkPrefix = "/v1/blobs/"
	}
	if !strings.HasSuffix(cfg.LinkPrefix, "/") {
		cfg.LinkPrefix += "/"
	}
	s := &Service{cfg: cfg, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	links, err := newLinkSealer(cfg.LinkSecret)
	if err != nil {
		return nil, err
	}
	s.links = links
	if cfg.StagingDir != "" {
		if s.staging, err = openStagingDir(cfg.StagingDir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close releases the staging directory handle. It starts no goroutine to wait for (Sweep runs
// in its caller's). It is idempotent: later calls return the first call's result.
func (s *Service) Close(context.Context) error {
	s.closeOnce.Do(func() {
		if s.staging != nil {
			s.closeErr = s.staging.close()
		}
	})
	return s.closeErr
}

// ObjectKey is where the ciphertext of (app, ref) expiring at expiry lives:
// "<app>/<expiry unix seconds, 12 digits>-<ref hex>". The expiry in the name is the expiry
// index: Sweep finds dead objects by listing names, without reading objects or metadata.
func ObjectKey(app string, expiry time.Time, ref envelope.RefID) string {
	return fmt.Sprintf("%s/%012d-%s", app, expiry.Unix(), ref)
}

// parseObjectKey returns the expiry of a key built by ObjectKey.
func parseObjectKey(key string) (time.Time, bool) {
	_, name, ok := strings.Cut(key, "/")
	if !ok {
		return time.Time{}, false
	}
	exp, ref, ok := strings.Cut(name, "-")
	if !ok || len(exp) != 12 || len(ref) != 32 {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(ref); err != nil {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// mediaKey is the sealed value of a blob field: the media DEK and what a reader needs to check.
// It is a secret (it holds the DEK) and is only ever inside a sealed field or in memory.
type mediaKey struct {
	Kind   string `json:"kind"` // "veil.blob"
	V      int    `json:"v"`    // 1
	DEK    []byte `json:"dek"`  // base64 in JSON
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Chunk  int    `json:"chunk"`
	Object string `json:"object"`
}

const mediaKind = "veil.blob"

// Encrypt encrypts media under a fresh media DEK, streaming it in chunks into the object store at
// ObjectKey(app, expiry, ref), and returns the field to seal into the record of (app, ref): its
// value holds the DEK, so it must go straight to envelope sealing and never be logged. Use it to
// seal the DEK together with other fields of the same entry; Seal does both steps for a blob
// alone. Memory stays at a few chunks and one backend buffer whatever the size of media.
// Cancelling ctx aborts the upload; nothing is visible then.
func (s *Service) Encrypt(ctx context.Context, app string, ref envelope.RefID, expiry time.Time, media io.Reader) (envelope.Field, int64, error) {
	if err := store.ValidateApp(app); err != nil {
		return envelope.Field{}, 0, fmt.Errorf("encrypting media: %w", err)
	}
	if ref.IsZero() {
		return envelope.Field{}, 0, fmt.Errorf("encrypting media: %w: zero ref", ErrInvalidInput)
	}
	if store.Expired(expiry, s.now()) {
		return envelope.Field{}, 0, fmt.Errorf("encrypting media: %w: already expired", ErrInvalidInput)
	}
	key := ObjectKey(app, expiry, ref)
	if err := checkKey(key); err != nil {
		return envelope.Field{}, 0, fmt.Errorf("encrypting media: %w: app id unusable in an object key", ErrInvalidInput)
	}
	dek := make([]byte, KeySize)
	defer clear(dek)
	if _, err := io.ReadFull(rand.Reader, dek); err != nil {
		return envelope.Field{}, 0, fmt.Errorf("encrypting media: drawing key: %w", err)
	}
	pr, pw := io.Pipe()
	h := sha256.New()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := NewEncryptWriter(pw, dek, Binding{App: app, Ref: ref}, s.cfg.ChunkSize)
		var n int64
		if err == nil {
			n, err = io.Copy(w, io.TeeReader(media, h))
			if err == nil {
				err = w.Close()
			}
		}
		pw.CloseWithError(err)
		done <- result{n, err}
	}()
	perr := s.cfg.Objects.Put(ctx, key, pr)
	// Unblock the encrypting goroutine if Put stopped reading early.
	pr.CloseWithError(errors.New("blob: upload ended"))
	res := <-done
	if res.err != nil && perr == nil {
		// The writer failed after Put saw a clean EOF: impossible with io.Pipe, but never keep
		// an object whose stream was not finished.
		perr = res.err
	}
	if perr != nil {
		if res.err != nil && !errors.Is(perr, res.err) {
			perr = fmt.Errorf("%w (reading media: %w)", perr, res.err)
		}
		s.deleteQuietly(ctx, key)
		return envelope.Field{}, 0, fmt.Errorf("storing encrypted media: %w", perr)
	}
	val, err := json.Marshal(mediaKey{
		Kind: mediaKind, V: 1, DEK: dek, Size: res.n,
		SHA256: hex.EncodeToString(h.Sum(nil)), Chunk: s.cfg.ChunkSize, Object: key,
	})
	if err != nil {
		s.deleteQuietly(ctx, key)
		return envelope.Field{}, 0, fmt.Errorf("encoding media key: %w", err)
	}
	return envelope.Field{Path: FieldPath, Value: val}, res.n, nil
}

// Seal encrypts media (see Encrypt) and seals its DEK as the only field of a record for (app,
// ledger, ref, expiry). It returns the blob token, the store item to write (the caller writes
// it with the entry's other store writes) and the plaintext size. ref must not be shared with
// another record. If sealing fails the object is deleted again.
func (s *Service) Seal(ctx context.Context, app, ledger string, ref envelope.RefID, expiry time.Time, media io.Reader) (envelope.Token, store.Item, int64, error) {
	field, n, err := s.Encrypt(ctx, app, ref, expiry, media)
	if err != nil {
		return envelope.Token{}, store.Item{}, 0, err
	}
	defer clear(field.Value)
	key := ObjectKey(app, expiry, ref)
	rec, toks, err := s.cfg.Sealer.Seal(ctx, envelope.Header{App: app, Ledger: ledger, Ref: ref, Expiry: expiry}, []envelope.Field{field})
	if err != nil {
		s.deleteQuietly(ctx, key)
		return envelope.Token{}, store.Item{}, 0, fmt.Errorf("sealing media key: %w", err)
	}
	val, err := rec.MarshalBinary()
	if err != nil {
		s.deleteQuietly(ctx, key)
		return envelope.Token{}, store.Item{}, 0, fmt.Errorf("encoding media record: %w", err)
	}
	return toks[0], store.Item{App: app, Ref: ref, Expiry: rec.Expiry, Value: val}, n, nil
}

// SealStaged seals the media a staging reference names (see ResolveStaging), writes the store
// item, and only then deletes the staging copy: until the sealed record is stored, the staging
// copy is the only way to the media, so a crash in between leaves it to be sealed again.
func (s *Service) SealStaged(ctx context.Context, app, ledger string, ref envelope.RefID, expiry time.Time, staging string) (envelope.Token, store.Item, int64, error) {
	if s.cfg.Store == nil {
		return envelope.Token{}, store.Item{}, 0, errors.New("sealing staged media: no store configured")
	}
	src, err := s.OpenStaging(ctx, app, staging)
	if err != nil {
		return envelope.Token{}, store.Item{}, 0, err
	}
	tok, item, n, err := s.Seal(ctx, app, ledger, ref, expiry, src)
	src.Close()
	if err != nil {
		return envelope.Token{}, store.Item{}, 0, err
	}
	if err := s.cfg.Store.Put(ctx, []store.Item{item}); err != nil {
		return envelope.Token{}, store.Item{}, 0, fmt.Errorf("storing media record: %w", err)
	}
	if err := s.DeleteStaging(ctx, app, staging); err != nil {
		return envelope.Token{}, store.Item{}, 0, err
	}
	return tok, item, n, nil
}

func (s *Service) deleteQuietly(ctx context.Context, key string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = s.cfg.Objects.Delete(dctx, key)
}

// Media is an opened blob: reading it yields the plaintext, each chunk only after it
// authenticated. A stream that ends early, was altered or does not match its recorded size
// fails with ErrCorrupt.
type Media struct {
	Size   int64  // plaintext bytes
	SHA256 []byte // of the plaintext, as recorded when sealing
	body   io.ReadCloser
	dec    *DecryptReader
	read   int64
}

func (m *Media) Read(p []byte) (int, error) {
	n, err := m.dec.Read(p)
	m.read += int64(n)
	if m.read > m.Size || err == io.EOF && m.read != m.Size {
		return n, fmt.Errorf("%w: size differs from the recorded one", ErrCorrupt)
	}
	return n, err
}

// Close closes the object.
func (m *Media) Close() error { return m.body.Close() }

// OpenSealed reads the sealed item tok names from st and opens it with sealer: the one rule of
// what opening a token comes to, for reveal's values as for media keys. A missing item (expired,
// erased) and a key past its TTL or destroyed are StatusExpired; a record that does not decode
// or authenticate is StatusInvalid; any other error is a transient failure (store, KMS),
// returned, and never carries the value. With StatusOK the caller owns the value and clears it
// when done. rec receives the record read (its expiry names a media object).
func OpenSealed(ctx context.Context, st store.Store, sealer *envelope.Sealer, tok envelope.Token, rec *envelope.Record) ([]byte, Status, error) {
	item, err := st.Get(ctx, tok.App, tok.Ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, StatusExpired, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading sealed record: %w", err)
	}
	if err := rec.UnmarshalBinary(item.Value); err != nil {
		return nil, StatusInvalid, nil
	}
	v, err := sealer.Open(ctx, rec, tok)
	switch {
	case err == nil:
		return v, StatusOK, nil
	case errors.Is(err, envelope.ErrExpired), errors.Is(err, keyring.ErrKeyDestroyed):
		return nil, StatusExpired, nil
	case errors.Is(err, envelope.ErrInvalid):
		return nil, StatusInvalid, nil
	}
	return nil, "", fmt.Errorf("opening sealed record: %w", err)
}

// Open opens the blob a token names. A non-nil error is a transient failure (store, KMS,
// object store); every other outcome is a Status, with Media only for StatusOK.
func (s *Service) Open(ctx context.Context, token string) (*Media, Status, error) {
	tok, err := envelope.ParseToken(token)
	if err != nil {
		return nil, StatusInvalid, nil
	}
	return s.OpenToken(ctx, tok)
}

// OpenToken is Open for a parsed token.
func (s *Service) OpenToken(ctx context.Context, tok envelope.Token) (*Media, Status, error) {
	if s.cfg.Store == nil {
		return nil, "", errors.New("opening blob: no store configured")
	}
	var rec envelope.Record
	val, st, err := OpenSealed(ctx, s.cfg.Store, s.cfg.Sealer, tok, &rec)
	if st != StatusOK || err != nil {
		return nil, st, err
	}
	defer clear(val)
	var mk mediaKey
	if err := json.Unmarshal(val, &mk); err != nil || mk.Kind != mediaKind || mk.V != 1 || len(mk.DEK) != KeySize || mk.Size < 0 {
		return nil, StatusInvalid, nil // a token of another kind of field
	}
	defer clear(mk.DEK)
	sum, _ := hex.DecodeString(mk.SHA256)
	body, err := s.cfg.Objects.Get(ctx, ObjectKey(rec.App, rec.Expiry, rec.Ref))
	if errors.Is(err, ErrObjectNotFound) {
		return nil, StatusExpired, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("opening blob: %w", err)
	}
	dec, err := NewDecryptReader(body, mk.DEK, Binding{App: rec.App, Ref: rec.Ref})
	if err != nil {
		body.Close()
		return nil, StatusInvalid, nil
	}
	return &Media{Size: mk.Size, SHA256: sum, body: body, dec: dec}, StatusOK, nil
}

// Sweep deletes every object whose expiry (from its key) has passed and reports how many it
// deleted. Its cost is one listing of the live objects; objects are never read. veil deletes
// blobs itself because S3 lifecycle rules act on whole days, far past a 24 h TTL. With the local
// directory it also removes temporary files left by interrupted writes.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	var dead []string
	err := s.cfg.Objects.List(ctx, "", func(key string) error {
		if exp, ok := parseObjectKey(key); ok && store.Expired(exp, now) {
			dead = append(dead, key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweeping blobs: %w", err)
	}
	n := 0
	for _, key := range dead {
		if err := s.cfg.Objects.Delete(ctx, key); err != nil {
			return n, fmt.Errorf("sweeping blobs: %w", err)
		}
		n++
	}
	if d, ok := s.cfg.Objects.(*Dir); ok {
		if _, err := d.RemoveStaleTemp(ctx, time.Hour, now); err != nil {
			return n, fmt.Errorf("sweeping blobs: %w", err)
		}
	}
	return n, nil
}

// DeleteApp deletes every object of app (tenant erasure) and reports how many. Its records in
// the encrypted store and its keys are erased by their own owners; once the keys are gone the
// objects are unreadable already, this only frees the space.
func (s *Service) DeleteApp(ctx context.Context, app string) (int, error) {
	if err := store.ValidateApp(app); err != nil {
		return 0, fmt.Errorf("deleting app blobs: %w", err)
	}
	var keys []string
	if err := s.cfg.Objects.List(ctx, app+"/", func(key string) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("deleting app blobs: %w", err)
	}
	for i, key := range keys {
		if err := s.cfg.Objects.Delete(ctx, key); err != nil {
			return i, fmt.Errorf("deleting app blobs: %w", err)
		}
	}
	return len(keys), nil
}

// IsMediaKey reports whether a revealed value is a sealed media DEK. Such values are never handed
// to a caller: media are read only through Open and signed links, so the reveal API refuses them.
func IsMediaKey(val []byte) bool {
	var mk mediaKey
	if err := json.Unmarshal(val, &mk); err != nil {
		return false
	}
	defer clear(mk.DEK)
	return mk.Kind == mediaKind && mk.V == 1 && len(mk.DEK) == KeySize
}
