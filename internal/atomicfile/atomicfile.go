// Package atomicfile writes a small file so that a reader, or the file system after a crash, sees
// either the old contents or the new ones, never a mix: the bytes go to a temporary file beside
// the target (mode perm from the start, so a secret is never readable by others), which is synced,
// renamed over the target, and then the directory is synced so the rename itself survives a crash.
// A failed write leaves no temporary file behind.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with b, atomically and durably, with mode perm. The temporary file is
// named "." + base(path) + ".tmp-*" in path's directory, which must exist.
func WriteFile(path string, b []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
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
