// Package atomicfile writes a file so that a reader, or the file system after a crash, sees
// either the old contents or the new ones, never a mix: the bytes go to a temporary file beside
// the target (mode perm from the start, so a secret is never readable by others), which is synced,
// renamed over the target, and then the directory is synced so the rename itself survives a crash.
// A failed write leaves no temporary file behind. WriteFile takes the bytes, Write streams them
// (media objects, Parquet files). WriteTemp is the first half alone, for writers
// that install the file their own way: the key store's and the local KMS root key's put-if-absent
// (a hard link that fails if the target exists), the key store's compare-then-rename.
//
// It is written here rather than taken from github.com/google/renameio/v2 (which the structure
// issue suggested), because renameio v2.0.0 does three things a key file must not: its WriteFile
// keeps an existing target's mode (WithExistingPermissions is always applied, so a 0644 file
// replaced with a secret stays 0644), it may put the temporary file in $TMPDIR when that is on
// the same file system, and it does not sync the directory after the rename; nor does it offer the
// temp-then-link that put-if-absent needs.
//
// The embedded broker keeps its own writer for its record files, group offsets and transaction
// log (broker/keep.go writeFileAtomic: fixed "path.tmp" temp, no directory sync): they are
// rewritten on its hot paths, and what a power cut loses of them is what the broker documents it
// may lose since its last sync. Its raw-data-key files (broker/rawkeys.go), written once a window
// and needed to read every raw record sealed under them, go through WriteFile.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteFile replaces path with b, atomically and durably, with mode perm. The temporary file is
// named "." + base(path) + ".tmp-*" in path's directory, which must exist.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	return Write(path, "."+filepath.Base(path)+".tmp-*", perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Write replaces path, atomically and durably, with what write writes, with mode perm: for
// contents streamed rather than held (a media object, a Parquet file). The temporary file in
// path's directory, which must exist, is named by temp: as os.CreateTemp's pattern when temp
// holds a '*' (a new name each time), otherwise that very name, truncated if a crash left it
// (so retries do not pile up leftovers; the caller must not write the same path twice at once).
// On failure the target is as it was and no temporary file is left.
func Write(path, temp string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, temp, perm, write)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// WriteTemp writes b to a new file in dir, named by pattern as os.CreateTemp names it, with mode
// perm from the start, syncs and closes it, and returns its path: the first half of an atomic
// write, for callers that install the file their own way (a hard link for put-if-absent, a rename
// after a check) and remove it afterwards. On failure no file is left.
func WriteTemp(dir, pattern string, b []byte, perm os.FileMode) (name string, err error) {
	if !strings.Contains(pattern, "*") {
		pattern += "*"
	}
	return writeTemp(dir, pattern, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// writeTemp creates the temporary file (see Write for temp), gives it mode perm before anything
// is written, runs write, syncs and closes it. On failure no file is left.
func writeTemp(dir, temp string, perm os.FileMode, write func(io.Writer) error) (name string, err error) {
	var f *os.File
	if strings.Contains(temp, "*") {
		f, err = os.CreateTemp(dir, temp) // mode 0600
	} else {
		f, err = os.OpenFile(filepath.Join(dir, temp), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	}
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if err := write(f); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// SyncDir fsyncs directory dir, so that a file created or renamed in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
