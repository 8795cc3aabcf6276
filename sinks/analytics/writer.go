package analytics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/veil-project/veil/internal/atomicfile"
)

// Writer stores the sink's files. Names are slash-separated paths relative to the writer's root,
// such as "app=A/ledger=L/date=2026-11-22/hour=10/p3-o1200-o1399.parquet".
type Writer interface {
	// WriteFile creates or replaces name with what write produces, atomically and durably: when it
	// returns nil the whole file is visible and survives a crash; when it fails, name is unchanged.
	WriteFile(ctx context.Context, name string, write func(io.Writer) error) error
	// List returns the base names of the complete files in dir; a missing dir holds none.
	List(ctx context.Context, dir string) ([]string, error)
	// Remove deletes name; removing a missing file is not an error.
	Remove(ctx context.Context, name string) error
}

// ErrInvalidName is returned when a file name is absolute, not clean, or has a segment that is
// empty, "..", or starts with a dot (the prefix of temporary files).
var ErrInvalidName = errors.New("analytics: invalid file name")

func checkName(name string) error {
	if name == "" || path.IsAbs(name) || path.Clean(name) != name {
		return ErrInvalidName
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || strings.HasPrefix(seg, ".") {
			return ErrInvalidName
		}
	}
	return nil
}

// LocalDir writes files under a local directory: each file goes to a temporary name in its final
// directory, is fsynced, renamed into place, and the directory is fsynced.
type LocalDir struct {
	root string
}

// NewLocalDir returns a writer rooted at root, creating it if needed.
func NewLocalDir(root string) (*LocalDir, error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("creating analytics directory: %w", err)
	}
	return &LocalDir{root: filepath.Clean(root)}, nil
}

// Root returns the directory the writer writes under.
func (d *LocalDir) Root() string { return d.root }

// tempName is the name a file is written under, beside it, before it is renamed into place. It
// is fixed per name, so a retry after a crash truncates the leftover instead of leaving another.
func tempName(full string) string { return "." + filepath.Base(full) + ".tmp" }

// WriteFile implements Writer.
func (d *LocalDir) WriteFile(ctx context.Context, name string, write func(io.Writer) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	full := filepath.Join(d.root, filepath.FromSlash(name))
	dir := filepath.Dir(full)
	if err := d.mkdirAll(dir); err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	err := atomicfile.Write(full, tempName(full), 0o640, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("writing file: %w", err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents under the root and fsyncs the parent of each
// directory it created, so that a renamed file's path survives a crash too.
func (d *LocalDir) mkdirAll(dir string) error {
	var missing []string
	for p := dir; p != d.root && p != filepath.Dir(p); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", filepath.Base(p))
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := atomicfile.SyncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// List implements Writer. Temporary files are not listed.
func (d *LocalDir) List(ctx context.Context, dir string) ([]string, error) {
	if err := checkName(dir); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(d.root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing directory: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Remove implements Writer.
func (d *LocalDir) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	full := filepath.Join(d.root, filepath.FromSlash(name))
	if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing file: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(full)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("syncing directory: %w", err)
	}
	return nil
}
