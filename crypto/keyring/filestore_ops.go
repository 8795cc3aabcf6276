package keyring

import (
	"bytes"
	"context"
	"encoding/json"
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

// staleTempAge is how old a temp file in the key store must be before anyone may remove it: a
// younger one may be a Create in flight in another process.
const staleTempAge = time.Minute

var (
	_ Replacer        = (*FileKeyStore)(nil)
	_ LeftoverRemover = (*FileKeyStore)(nil)
)

// Replace implements Replacer: it writes nw to a synced temp file and renames it over the file of
// old, so readers see either wrapping, never a partial file, and no copy of the old wrapping stays
// in the directory. It fails with ErrKeyNotFound if the key is gone (erased or destroyed: Replace
// never brings a key back) and with ErrKeyChanged if its ciphertext is no longer old's. The check
// and the rename are not one atomic step: do not rewrap while erasing the same app.
func (s *FileKeyStore) Replace(ctx context.Context, old, nw WrappedKey) error {
	if err := ValidateApp(old.App); err != nil {
		return err
	}
	if err := CheckReplacement(old, nw); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cur, err := s.read(old.App, old.Period)
	if err != nil {
		return err
	}
	if cur.Erased || !bytes.Equal(cur.Ciphertext, old.Ciphertext) {
		return ErrKeyChanged
	}
	return s.install(nw, "replacing key file")
}

// install writes k to a synced temp file and renames it over k's file, then syncs the directory:
// atomicfile.WriteFile's steps, with a temp name RemoveLeftovers knows. what names the step in
// errors.
func (s *FileKeyStore) install(k WrappedKey, what string) error {
	tmpName, err := s.writeTemp(k)
	if err != nil {
		return err
	}
	defer os.Remove(tmpName) // only left if the rename failed
	if err := os.Rename(tmpName, s.path(k.App, k.Period)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.syncDir()
}

// writeTemp writes k to a synced temp file in the store directory and returns its name.
func (s *FileKeyStore) writeTemp(k WrappedKey) (string, error) {
	b, err := json.Marshal(keyFile{
		Version: keyFileVersion, App: k.App, Period: k.Period, KeyID: k.KeyID,
		Ciphertext: k.Ciphertext, DestroyAt: k.DestroyAt.UTC(), Erased: k.Erased,
	})
	if err != nil {
		return "", fmt.Errorf("encoding key file: %w", err)
	}
	name, err := atomicfile.WriteTemp(s.dir, tempFilePrefix+"*", b, 0o600)
	if err != nil {
		return "", fmt.Errorf("writing key file: %w", err)
	}
	return name, nil
}

// RemoveLeftovers implements LeftoverRemover. A temp file is left behind only when a process dies
// between writing it and removing it; this removes every such file that names app, and every temp
// file older than a minute whatever it names. It returns how many it removed.
func (s *FileKeyStore) RemoveLeftovers(ctx context.Context, app string) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("listing key store: %w", err)
	}
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if !strings.HasPrefix(e.Name(), tempFilePrefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		if !s.leftover(p, app) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("removing leftover key file: %w", err)
		}
		n++
	}
	if n > 0 {
		return n, s.syncDir()
	}
	return n, nil
}

func (s *FileKeyStore) leftover(path, app string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	if time.Since(fi.ModTime()) > staleTempAge {
		return true
	}
	if app == "" {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize))
	if err != nil {
		return false
	}
	var kf keyFile
	return json.Unmarshal(b, &kf) == nil && kf.App == app
}

// changesFile counts changes by its size: NoteChange appends one byte with O_APPEND, which the
// kernel makes atomic among the processes sharing the directory, and Changes reads the size.
const changesFile = ".changes"

// Tombstone implements KeyStore: it renames a tombstone file over the key file, so the wrapped
// key is gone from the directory in one step and no later Create can link a new key there.
func (s *FileKeyStore) Tombstone(ctx context.Context, app string, period int64, destroyAt time.Time) error {
	if err := ValidateApp(app); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.install(WrappedKey{App: app, Period: period, DestroyAt: destroyAt, Erased: true}, "writing tombstone")
}

// Changes implements KeyStore.
func (s *FileKeyStore) Changes(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(filepath.Join(s.dir, changesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading change counter: %w", err)
	}
	return fi.Size(), nil
}

// NoteChange implements KeyStore.
func (s *FileKeyStore) NoteChange(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, changesFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("noting key change: %w", err)
	}
	_, werr := f.Write([]byte{'+'})
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("noting key change: %w", werr)
	}
	return nil
}
