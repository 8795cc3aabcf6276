package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// StagingS3 reads and deletes s3:// staging objects; *S3 implements it.
type StagingS3 interface {
	OpenStaged(ctx context.Context, bucket, key string) (io.ReadCloser, error)
	DeleteStaged(ctx context.Context, bucket, key string) error
}

// ErrStagingRefused is returned for a staging reference veil will not read: a path that leaves
// the staging directory (through "..", an absolute path elsewhere or a symlink), a file that is
// not regular, a bucket not in Config.StagingBuckets, or a kind of reference not configured.
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

// ResolveStaging reports how a staging reference would be read, without reading it: "s3" for
// s3://bucket/key in an allowed bucket, "file" for a path inside the staging directory.
func (s *Service) ResolveStaging(ref string) (kind, bucket, key string, err error) {
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
	return "file", "", p, nil
}

// OpenStaging opens the media a staging reference names.
func (s *Service) OpenStaging(ctx context.Context, ref string) (io.ReadCloser, error) {
	kind, bucket, key, err := s.ResolveStaging(ref)
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
	f, err := s.staging.root.Open(key)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrStagingNotFound
	}
	if err != nil {
		// os.Root refuses symlinks that leave the directory with an error of its own.
		return nil, fmt.Errorf("%w: cannot open inside the staging directory", ErrStagingRefused)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: not a regular file", ErrStagingRefused)
	}
	return f, nil
}

// DeleteStaging deletes the staging copy a reference names; a missing one is not an error.
func (s *Service) DeleteStaging(ctx context.Context, ref string) error {
	kind, bucket, key, err := s.ResolveStaging(ref)
	if err != nil {
		return err
	}
	if kind == "s3" {
		if err := s.cfg.StagingS3.DeleteStaged(ctx, bucket, key); err != nil {
			return fmt.Errorf("deleting staged media: %w", err)
		}
		return nil
	}
	fi, err := s.staging.root.Lstat(key)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: cannot reach inside the staging directory", ErrStagingRefused)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: not a regular file", ErrStagingRefused)
	}
	if err := s.staging.root.Remove(key); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting staged media: %w", err)
	}
	return nil
}
