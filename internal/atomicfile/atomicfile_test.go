package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/atomicfile"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"create", "first", 0o600},
		{"replace", "second, longer than the first", 0o600},
		{"replace shorter, other mode", "3", 0o640},
	} {
		if err := atomicfile.WriteFile(p, []byte(tc.data), tc.perm); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tc.data {
			t.Fatalf("%s: read %q, %v, want %q", tc.name, b, err, tc.data)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != tc.perm {
			t.Fatalf("%s: mode %v, %v, want %v", tc.name, fi.Mode().Perm(), err, tc.perm)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Fatalf("directory holds %d entries, want only the file (no temporary left)", len(es))
	}
}

// TestWriteFileFailsCleanly: a write that cannot rename (the target is a non-empty directory)
// fails, leaves the target as it was and leaves no temporary file.
func TestWriteFileFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(p, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	es, _ := os.ReadDir(dir)
	if len(es) != 1 || es[0].Name() != "target" || !es[0].IsDir() {
		t.Fatalf("directory after a failed write: %v, want only target/", es)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

// TestWriteTemp: the temp file holds the bytes, has the mode asked for, is named by the pattern
// and is the only entry; a pattern the directory cannot take leaves nothing behind.
func TestWriteTemp(t *testing.T) {
	dir := t.TempDir()
	name, err := atomicfile.WriteTemp(dir, ".tmp-*", []byte("wrapped"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(name) != dir || !strings.HasPrefix(filepath.Base(name), ".tmp-") {
		t.Errorf("WriteTemp name = %s, want .tmp-* in %s", name, dir)
	}
	b, err := os.ReadFile(name)
	if err != nil || string(b) != "wrapped" {
		t.Errorf("temp holds %q, %v, want %q", b, err, "wrapped")
	}
	if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("temp mode %v, %v, want 0600", fi.Mode().Perm(), err)
	}
	if _, err := atomicfile.WriteTemp(filepath.Join(dir, "missing"), ".tmp-*", []byte("x"), 0o600); err == nil {
		t.Error("WriteTemp into a missing directory succeeded")
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("directory holds %d entries, want only the first temp", len(es))
	}
}

// TestWrite: a streamed write under a fixed temporary name replaces the target and reuses (and
// truncates) a leftover of that name; a failing write leaves the target as it was and no
// temporary file, under a fixed name or a pattern.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "part.parquet")
	const temp = ".part.parquet.tmp"
	if err := os.WriteFile(filepath.Join(dir, temp), []byte("leftover of a crash, longer than the new contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeString := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	if err := atomicfile.Write(p, temp, 0o640, writeString("rows")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "rows" {
		t.Fatalf("target holds %q, %v, want %q", b, err, "rows")
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("target mode %v, %v, want 0640", fi.Mode().Perm(), err)
	}
	failed := errors.New("disk full")
	for _, temp := range []string{temp, ".tmp-*"} {
		err := atomicfile.Write(p, temp, 0o640, func(w io.Writer) error {
			io.WriteString(w, "half")
			return failed
		})
		if !errors.Is(err, failed) {
			t.Errorf("Write(temp %q) with a failing writer = %v, want %v", temp, err, failed)
		}
		if b, _ := os.ReadFile(p); string(b) != "rows" {
			t.Errorf("after a failed write (temp %q) the target holds %q, want %q", temp, b, "rows")
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Fatalf("directory holds %d entries, want only the target (no temporary left)", len(es))
	}
}
