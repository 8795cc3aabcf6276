package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/veil-project/veil/sinks/store"
)

// StagingS3 reads and deletes s3:// staging objects; *S3 implements it.
type StagingS3 interface {
	OpenStaged(ctx context.Context, bucket, key string) (io.ReadCloser, error)
	DeleteStaged(ctx context.Context, bucket, key string) error
}

// ErrStagingRefused is returned for a staging reference veil will not read: one outside the
// entry's app root (<staging>/<app_id>/ or s3://<bucket>/<app_id>/), a path that leaves it
// (through "..", an absolute path elsewhere or a symlink), a file that is not regular, a bucket
// not in Config.StagingBuckets, or a kind of reference not configured.
var ErrStagingRefused = errors.New("blob: staging reference refused")

// ErrStagingNotFound is returned when a staging reference names nothing (already sealed and
// deleted, or never uploaded).
var ErrStagingNotFound = errors.New("blob: staging object not found")

// stagingDir is the local staging directory, opened as an os.Root so that no path, symlink or
// race can make a producer's reference read or delete a file outside it.
type stagingDir struct {
	dir  string
	root *os.Root
}

func openStagingDir(dir string) (*stagingDir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving staging directory: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("opening staging directory: %w", err)
	}
	return &stagingDir{dir: abs, root: root}, nil
}

func (d *stagingDir) close() error { return d.root.Close() }

// rel turns a reference into a path relative to the staging directory, refusing ".." anywhere
// and absolute paths outside it. Symlinks are checked when opening, by os.Root.
func (d *stagingDir) rel(ref string) (string, error) {
	p := ref
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(d.dir, filepath.Clean(p))
		if err != nil {
			return "", fmt.Errorf("%w: outside the staging directory", ErrStagingRefused)
		}
		p = r
	}
	if p == "" || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: empty path", ErrStagingRefused)
	}
	for seg := range strings.SplitSeq(filepath.ToSlash(p), "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: path leaves the staging directory", ErrStagingRefused)
		}
	}
	return filepath.Clean(p), nil
}

// openApp opens the app's own root inside the staging directory. The app directory must be a
// real directory, not a symlink (one app's name pointing at another app's files).
func (d *stagingDir) openApp(app string) (*os.Root, error) {
	fi, err := d.root.Lstat(app)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrStagingNotFound
	}
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: the app's staging root is not a directory", ErrStagingRefused)
	}
	r, err := d.root.OpenRoot(app)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open the app's staging root", ErrStagingRefused)
	}
	// Swapped for a symlink between Lstat and OpenRoot: refuse.
	if got, err := r.Stat("."); err != nil || !os.SameFile(fi, got) {
		r.Close()
		return nil, fmt.Errorf("%w: the app's staging root changed while opening", ErrStagingRefused)
	}
	return r, nil
}

// stagingApp checks that app can name a directory and an S3 key prefix of its own.
func stagingApp(app string) error {
	if err := store.ValidateApp(app); err != nil || app == "." || app == ".." {
		return fmt.Errorf("%w: app id cannot name a staging root", ErrStagingRefused)
	}
	return nil
}

// underApp splits a slash-separated path whose first segment must be app exactly (byte for
// byte: no case folding, no decoding) and returns the rest. Every other segment must be a plain
// name: no empty, ".", ".." (also percent-encoded) or backslash, since some S3-compatible
// servers map keys onto files.
func underApp(app, p string) (string, error) {
	first, rest, ok := strings.Cut(p, "/")
	if !ok || first != app {
		return "", fmt.Errorf("%w: not under the entry's app root", ErrStagingRefused)
	}
	if rest == "" {
		return "", fmt.Errorf("%w: names the app root itself", ErrStagingRefused)
	}
	for seg := range strings.SplitSeq(rest, "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			dec = seg
		}
		if seg == "" || dec == "." || dec == ".." || strings.ContainsAny(dec, "\\/\x00") {
			return "", fmt.Errorf("%w: malformed path segment", ErrStagingRefused)
		}
	}
	return rest, nil
}

// ResolveStaging reports how a staging reference of app would be read, without reading it: "s3"
// for s3://bucket/<app>/key in an allowed bucket, "file" for <app>/path inside the staging
// directory (relative to it, or absolute). key is the whole key (s3) or the path relative to the
// app's root (file). A reference outside the app's root is refused, whatever it names.
func (s *Service) ResolveStaging(app, ref string) (kind, bucket, key string, err error) {
	if err := stagingApp(app); err != nil {
		return "", "", "", err
	}
	if rest, ok := strings.CutPrefix(ref, "s3://"); ok {
		if s.cfg.StagingS3 == nil {
			return "", "", "", fmt.Errorf("%w: s3 staging not configured", ErrStagingRefused)
		}
		bucket, key, ok := strings.Cut(rest, "/")
		if !ok || bucket == "" || key == "" {
			return "", "", "", fmt.Errorf("%w: malformed s3 reference", ErrStagingRefused)
		}
		if !slices.Contains(s.cfg.StagingBuckets, bucket) {
			return "", "", "", fmt.Errorf("%w: bucket not allowed for staging", ErrStagingRefused)
		}
		if _, err := underApp(app, key); err != nil {
			return "", "", "", err
		}
		return "s3", bucket, key, nil
	}
	if strings.Contains(ref, "://") {
		return "", "", "", fmt.Errorf("%w: unknown scheme", ErrStagingRefused)
	}
	if s.staging == nil {
		return "", "", "", fmt.Errorf("%w: no staging directory configured", ErrStagingRefused)
	}
	p, err := s.staging.rel(ref)
	if err != nil {
		return "", "", "", err
	}
	rest, err := underApp(app, filepath.ToSlash(p))
	if err != nil {
		return "", "", "", err
	}
	return "file", "", filepath.FromSlash(rest), nil
}

// OpenStaging opens the media a staging reference of app names (see ResolveStaging).
func (s *Service) OpenStaging(ctx context.Context, app, ref string) (io.ReadCloser, error) {
	kind, bucket, key, err := s.ResolveStaging(app, ref)
	if err != nil {
		return nil, err
	}
	if kind == "s3" {
		r, err := s.cfg.StagingS3.OpenStaged(ctx, bucket, key)
		if errors.Is(err, ErrObjectNotFound) {
			return nil, ErrStagingNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("opening staged media: %w", err)
		}
		return r, nil
	}
	root, err := s.staging.openApp(app)
	if err != nil {
		return nil, err
	}
	defer root.Close() // an open file outlives its root
	f, err := root.Open(key)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrStagingNotFound
	}
	if err != nil {
		// os.Root refuses symlinks that leave the app's root with an error of its own.
		return nil, fmt.Errorf("%w: cannot open inside the app's staging root", ErrStagingRefused)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: not a regular file", ErrStagingRefused)
	}
	return f, nil
}

// DeleteStaging deletes the staging copy a reference of app names; a missing one is not an error.
func (s *Service) DeleteStaging(ctx context.Context, app, ref string) error {
	kind, bucket, key, err := s.ResolveStaging(app, ref)
	if err != nil {
		return err
	}
	if kind == "s3" {
		if err := s.cfg.StagingS3.DeleteStaged(ctx, bucket, key); err != nil {
			return fmt.Errorf("deleting staged media: %w", err)
		}
		return nil
	}
	root, err := s.staging.openApp(app)
	if errors.Is(err, ErrStagingNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer root.Close()
	fi, err := root.Lstat(key)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: cannot reach inside the app's staging root", ErrStagingRefused)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: not a regular file", ErrStagingRefused)
	}
	if err := root.Remove(key); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting staged media: %w", err)
	}
	return nil
}
