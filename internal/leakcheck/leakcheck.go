// Package leakcheck is the tests' check of veil's rule that plaintext never reaches disk: it
// reads every file under a directory and fails the test for each one that holds a secret, naming
// the file and never the secret. It imports nothing of veil's, so any test package can use it,
// internal ones (package broker, package blob) included. Tests only.
package leakcheck

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Walk calls check with the path, entry and contents of every regular file under dir and returns
// how many files it read. An error walking dir or reading a file fails t.
func Walk(t testing.TB, dir string, check func(path string, d fs.DirEntry, b []byte)) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
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
// message, for example "plaintext media") and returns how many files it read. An error walking
// dir or reading a file fails t. A caller that expects files checks the count: a check that
// read nothing cannot fail.
func Dir(t testing.TB, dir, what string, secret []byte) int {
	t.Helper()
	return Walk(t, dir, func(path string, _ fs.DirEntry, b []byte) {
		if bytes.Contains(b, secret) {
			t.Errorf("%s found on disk in %s", what, path)
		}
	})
}
