package testkit_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/testkit"
)

// testOnly are the packages that hold test setup, fakes and conformance suites: a non-test file
// outside them that imported one would ship it in the binary (a fake KMS, a settable clock).
var testOnly = []string{
	"internal/keystoretest", "internal/kmsfake", "internal/leakcheck", "internal/nametest",
	"internal/storetest", "internal/testclock", "internal/testenv", "internal/testkit",
	"internal/testsvc",
}

// TestOnlyTestsImport: only tests, and the test-only packages themselves, import a test-only
// package.
func TestOnlyTestsImport(t *testing.T) {
	const module = "github.com/veil-project/veil/"
	root := filepath.Join("..", "..")
	for _, p := range testOnly {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Fatalf("test-only package %s: %v", p, err)
		}
	}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		if slices.Contains(testOnly, filepath.ToSlash(rel)) {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); slices.Contains(testOnly, strings.TrimPrefix(p, module)) {
				t.Errorf("%s imports %s, which is for tests only", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked %d non-test files, want the whole module", checked)
	}
}

func TestJSONValues(t *testing.T) {
	var v any
	if err := json.Unmarshal([]byte(`{"a":"x","b":[1,{"c":"y"}],"d":null}`), &v); err != nil {
		t.Fatal(err)
	}
	var strs []string
	n := 0
	for x := range testkit.JSONValues(v) {
		n++
		if s, ok := x.(string); ok {
			strs = append(strs, s)
		}
	}
	slices.Sort(strs)
	// The object, "x", the array, 1, the inner object, "y", null.
	if n != 7 || !slices.Equal(strs, []string{"x", "y"}) {
		t.Errorf("JSONValues visited %d values with strings %q, want 7 with [x y]", n, strs)
	}
	for range testkit.JSONValues(v) {
		break // stopping early must not panic
	}
}
