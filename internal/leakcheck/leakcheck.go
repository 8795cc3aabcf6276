// Package leakcheck is the tests' check of veil's rules that plaintext never reaches disk and a
// value holding a secret never prints it: Dir reads every file under a directory and fails the
// test for each one that holds a secret, naming the file and never the secret; Printed renders a
// value every way a log line or an error message could and fails the test for each rendering
// that holds a secret. It imports nothing of veil's, so any test package can use it, internal
// ones (package broker, package blob) included. Tests only.
package leakcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Walk calls check with the path, entry and contents of every regular file under dir and returns
// how many files it read. A file or directory removed between being listed and being read (a
// running store compacting, a temp file renamed) is passed over: it is gone. Any other error
// walking dir or reading a file, and a missing dir, fail t.
func Walk(t testing.TB, dir string, check func(path string, d fs.DirEntry, b []byte)) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		files++
		check(path, d, b)
		return nil
	})
	if err != nil {
		t.Fatalf("reading the files under %s: %v", dir, err)
	}
	return files
}

// Dir fails t for every regular file under dir that holds secret (what names the secret in the
// message, for example "plaintext media") and returns how many files it read. Errors are as
// for Walk. A caller that expects files checks the count: a check that
// read nothing cannot fail.
func Dir(t testing.TB, dir, what string, secret []byte) int {
	t.Helper()
	return Walk(t, dir, func(path string, _ fs.DirEntry, b []byte) {
		if bytes.Contains(b, secret) {
			t.Errorf("%s found on disk in %s", what, path)
		}
	})
}

// Printed renders v with %v, %+v, %#v and %s and as a slog attribute through the JSON and the
// text handler, and fails t for every rendering that holds one of secrets (naming the rendering,
// never the secret) or lacks one of shown (what it must still say: an address, a key id).
func Printed(t testing.TB, v any, secrets []string, shown ...string) {
	t.Helper()
	var js, txt strings.Builder
	slog.New(slog.NewJSONHandler(&js, nil)).Info("printing", "v", v)
	slog.New(slog.NewTextHandler(&txt, nil)).Info("printing", "v", v)
	for name, s := range map[string]string{
		"%v":        fmt.Sprintf("%v", v),
		"%+v":       fmt.Sprintf("%+v", v),
		"%#v":       fmt.Sprintf("%#v", v),
		"%s":        fmt.Sprintf("%s", v),
		"slog JSON": js.String(),
		"slog text": txt.String(),
	} {
		leaked := false
		for i, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("%s of %T holds secret #%d", name, v, i+1)
				leaked = true
			}
		}
		for _, want := range shown {
			switch {
			case strings.Contains(s, want):
			case leaked: // quoting s would quote the secret
				t.Errorf("%s of %T does not show %q", name, v, want)
			default:
				t.Errorf("%s of %T = %q, want it to show %q", name, v, s, want)
			}
		}
	}
}
