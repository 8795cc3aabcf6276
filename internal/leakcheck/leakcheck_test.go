package leakcheck

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Errorf and Fatalf calls instead of failing.
type recorder struct {
	testing.TB
	errors []string
	fatals []string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a": "sealed", "sub/b": "x SECRET-1 y", "sub/c": "nothing"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{TB: t}
	if n := Dir(r, dir, "plaintext", []byte("SECRET-1")); n != 3 {
		t.Errorf("Dir read %d files, want 3", n)
	}
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], filepath.Join("sub", "b")) {
		t.Fatalf("Dir reported %q, want one leak, in sub/b", r.errors)
	}
	if strings.Contains(r.errors[0], "SECRET") {
		t.Error("the message quotes the secret")
	}
	r = &recorder{TB: t}
	if n := Dir(r, dir, "plaintext", []byte("SECRET-2")); n != 3 || len(r.errors) != 0 {
		t.Errorf("Dir of an absent secret = %d files, %d leaks; want 3, 0", n, len(r.errors))
	}
	if n := Dir(t, t.TempDir(), "plaintext", []byte("x")); n != 0 {
		t.Errorf("Dir of an empty directory read %d files", n)
	}
}

type leaky struct{ User, Password string }

type redacted struct{ User, Password string }

func (r redacted) String() string   { return "user=" + r.User + " password=[redacted]" }
func (r redacted) GoString() string { return r.String() }
func (r redacted) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", r.User), slog.Bool("password_set", r.Password != ""))
}

// TestPrinted: a plain struct leaks its password in each of the six renderings, a redacting one
// in none; a rendering that lacks what it must show is reported; the messages never quote the
// secret.
// TestWalkLiveDirectory: a file removed after the walk listed it is passed over, not an error (a
// running store compacts while a test scans it); a missing directory still fails.
func TestWalkLiveDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("sealed "+n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	files := Walk(t, dir, func(path string, _ fs.DirEntry, _ []byte) {
		seen = append(seen, filepath.Base(path))
		if filepath.Base(path) == "a" {
			os.Remove(filepath.Join(dir, "b")) // listed already, gone before it is read
		}
	})
	if files != 2 || strings.Join(seen, ",") != "a,c" {
		t.Errorf("Walk read %d files (%v), want a and c", files, seen)
	}
	r := &recorder{TB: t}
	Walk(r, filepath.Join(dir, "missing"), func(string, fs.DirEntry, []byte) {})
	if len(r.fatals) != 1 {
		t.Errorf("Walk(missing dir) failed %d times, want once", len(r.fatals))
	}
}

func TestPrinted(t *testing.T) {
	r := &recorder{TB: t}
	Printed(r, leaky{"veil", "SECRET-3"}, []string{"SECRET-3"}, "veil", "nowhere")
	if len(r.errors) != 12 {
		t.Fatalf("Printed(leaky) reported %q, want 6 leaks and 6 misses", r.errors)
	}
	for _, e := range r.errors {
		if strings.Contains(e, "SECRET") {
			t.Errorf("message %q quotes the secret", e)
		}
	}
	r = &recorder{TB: t}
	Printed(r, redacted{"veil", "SECRET-3"}, []string{"SECRET-3", "absent"}, "veil")
	if len(r.errors) != 0 {
		t.Errorf("Printed(redacted) reported %q, want nothing", r.errors)
	}
	r = &recorder{TB: t}
	Printed(r, redacted{"veil", "SECRET-3"}, nil, "nowhere")
	if len(r.errors) != 6 || !strings.Contains(r.errors[0], `want it to show "nowhere"`) {
		t.Errorf("Printed(redacted) of an absent word reported %q, want 6 misses", r.errors)
	}
}
