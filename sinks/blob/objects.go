package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veil-project/veil/internal/atomicfile"
)

// Objects is where ciphertext objects live. Keys are slash-separated, start with the app id
// ("app/…") and never hold "." or ".." segments. Implementations store bytes as given: the
// Service only ever hands them ciphertext.
type Objects interface {
	// Put stores the bytes read from r under key, replacing any object there. The object becomes
	// visible only once r is read to EOF and stored completely; on error nothing is visible.
	Put(ctx context.Context, key string, r io.Reader) error
	// Get opens the object at key, or returns ErrObjectNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the object at key; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn with every key that starts with prefix, in no guaranteed order. An error from
	// fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(key string) error) error
	// PresignGet returns a URL that fetches the object (ciphertext) without credentials until
	// ttl has passed, or ErrPresignUnsupported.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// ErrObjectNotFound is returned by Objects.Get when no object exists at the key.
var ErrObjectNotFound = errors.New("blob: object not found")

// ErrPresignUnsupported is returned by PresignGet of a backend that cannot sign URLs (the local
// directory).
var ErrPresignUnsupported = errors.New("blob: presigned URLs not supported by this backend")

// ErrBadKey is returned for an object key that is empty, absolute, or holds an empty, "." or
// ".." segment.
var ErrBadKey = errors.New("blob: bad object key")

func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return ErrBadKey
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsRune(seg, '\\') || strings.ContainsRune(seg, 0) {
			return ErrBadKey
		}
	}
	return nil
}

// Dir is the local-directory backend: one file per object under a root directory. Writes go to
// a temporary file in the object's directory, are synced, then renamed into place, so a reader
// never sees a partial object and a crash leaves at most a temporary file (which List skips and
// Sweep removes).
type Dir struct {
	root string
}

const tmpPrefix = ".tmp-"

// NewDir returns the backend rooted at dir, creating it (0700) if needed.
func NewDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating blob directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving blob directory: %w", err)
	}
	return &Dir{root: abs}, nil
}

func (d *Dir) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// Put writes r to a temporary file beside the object and renames it into place, syncing the
// file and then its directory (atomicfile.Write), so a stored object survives a crash.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("creating object directory: %w", err)
	}
	err = atomicfile.Write(p, tmpPrefix+"*", 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, ctxReader{ctx, r})
		return err
	})
	if err != nil {
		return fmt.Errorf("writing object: %w", err)
	}
	return nil
}

// Get opens the object file.
func (d *Dir) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrObjectNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("opening object: %w", err)
	}
	return f, nil
}

// Delete removes the object file. Directories stay: removing one could race with a Put
// creating a file in it.
func (d *Dir) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting object: %w", err)
	}
	return nil
}

// List walks the directory. Temporary files are skipped.
func (d *Dir) List(ctx context.Context, prefix string, fn func(key string) error) error {
	// Walk only the deepest directory the prefix names.
	start := d.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if checkKey(prefix[:i]) != nil {
			return ErrBadKey
		}
		start = filepath.Join(d.root, filepath.FromSlash(prefix[:i]))
	}
	err := walk(ctx, start, func(p string, e fs.DirEntry) error {
		if e.IsDir() || !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		return fn(key)
	})
	if err != nil {
		return fmt.Errorf("listing objects: %w", err)
	}
	return nil
}

// RemoveStaleTemp removes temporary files older than age, left by writes a crash interrupted.
// They hold only ciphertext, but nothing else would ever delete them.
func (d *Dir) RemoveStaleTemp(ctx context.Context, age time.Duration, now time.Time) (int, error) {
	n := 0
	err := walk(ctx, d.root, func(p string, e fs.DirEntry) error {
		if e.IsDir() || !strings.HasPrefix(e.Name(), tmpPrefix) {
			return nil
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > age {
			if os.Remove(p) == nil {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("removing stale temporary files: %w", err)
	}
	return n, nil
}

// walk calls fn for every entry under root, in lexical order, until ctx ends. What a concurrent
// delete removed during the walk is skipped, not an error.
func walk(ctx context.Context, root string, fn func(p string, e fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(p, e)
	})
}

// PresignGet is not supported by the local directory.
func (d *Dir) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return "", ErrPresignUnsupported
}

// ctxReader stops a copy once ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// keyApp returns the app segment of a key.
func keyApp(key string) string {
	app, _, _ := strings.Cut(key, "/")
	return app
}
