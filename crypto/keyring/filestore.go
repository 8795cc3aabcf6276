package keyring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/veil-project/veil/internal/atomicfile"
)

// FileKeyStore is the embedded KeyStore: one small file per (app, period) in one directory. It
// only ever holds KMS-wrapped ciphertext. Several processes may share the directory: Create is
// put-if-absent through a hard link of a fully written, synced temp file, so a reader never sees a
// partial file and exactly one writer wins.
type FileKeyStore struct {
	dir string
}

var _ KeyStore = (*FileKeyStore)(nil)

const (
	keyFileSuffix  = ".kek"
	tempFilePrefix = ".tmp-"
	maxKeyFileSize = 64 << 10
	keyFileVersion = 1
)

// NewFileKeyStore opens the key store in dir, creating dir with mode 0700 if needed.
func NewFileKeyStore(dir string) (*FileKeyStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating key store directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening key store directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening key store directory: %s is not a directory", dir)
	}
	s := &FileKeyStore{dir: dir}
	// A process that died mid-write may have left a temp copy of a key: never keep it around.
	_, _ = s.RemoveLeftovers(context.Background(), "")
	return s, nil
}

// keyFile is the on-disk form of a WrappedKey.
type keyFile struct {
	Version    int       `json:"v"`
	App        string    `json:"app"`
	Period     int64     `json:"period"`
	KeyID      string    `json:"key_id"`
	Ciphertext []byte    `json:"ciphertext,omitempty"`
	DestroyAt  time.Time `json:"destroy_at"`
	Erased     bool      `json:"erased,omitempty"`
}

func (s *FileKeyStore) path(app string, period int64) string {
	return filepath.Join(s.dir, app+"@"+strconv.FormatInt(period, 10)+keyFileSuffix)
}

// parseName returns the (app, period) of a key file name.
func parseName(name string) (string, int64, bool) {
	base, ok := strings.CutSuffix(name, keyFileSuffix)
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(base, '@')
	if i < 0 {
		return "", 0, false
	}
	app := base[:i]
	period, err := strconv.ParseInt(base[i+1:], 10, 64)
	if err != nil || ValidateApp(app) != nil {
		return "", 0, false
	}
	return app, period, true
}

// Create implements KeyStore.
func (s *FileKeyStore) Create(ctx context.Context, k WrappedKey) (WrappedKey, error) {
	if err := ValidateApp(k.App); err != nil {
		return WrappedKey{}, err
	}
	if err := ctx.Err(); err != nil {
		return WrappedKey{}, err
	}
	live := k
	live.Erased = false
	tmpName, err := s.writeTemp(live)
	if err != nil {
		return WrappedKey{}, err
	}
	defer os.Remove(tmpName)
	// Link fails if the target exists: that is the put-if-absent.
	if err := os.Link(tmpName, s.path(k.App, k.Period)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.Get(ctx, k.App, k.Period)
		}
		return WrappedKey{}, fmt.Errorf("linking key file: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return WrappedKey{}, err
	}
	k.DestroyAt = k.DestroyAt.UTC()
	return k, nil
}

// Get implements KeyStore.
func (s *FileKeyStore) Get(ctx context.Context, app string, period int64) (WrappedKey, error) {
	if err := ValidateApp(app); err != nil {
		return WrappedKey{}, err
	}
	if err := ctx.Err(); err != nil {
		return WrappedKey{}, err
	}
	return s.read(app, period)
}

func (s *FileKeyStore) read(app string, period int64) (WrappedKey, error) {
	f, err := os.Open(s.path(app, period))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return WrappedKey{}, ErrKeyNotFound
		}
		return WrappedKey{}, fmt.Errorf("opening key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return WrappedKey{}, fmt.Errorf("reading key file: %w", err)
	}
	k, err := DecodeKey(b, app, period)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("reading key file: %w", err)
	}
	return k, nil
}

// Delete implements KeyStore.
func (s *FileKeyStore) Delete(ctx context.Context, app string, period int64) error {
	if err := ValidateApp(app); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(s.path(app, period)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("removing key file: %w", err)
	}
	return s.syncDir()
}

// List implements KeyStore. Files that are not key files are ignored; a key file deleted while
// listing is skipped.
func (s *FileKeyStore) List(ctx context.Context) ([]WrappedKey, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing key store: %w", err)
	}
	var out []WrappedKey
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		app, period, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		k, err := s.read(app, period)
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func (s *FileKeyStore) syncDir() error {
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("syncing key store directory: %w", err)
	}
	return nil
}
