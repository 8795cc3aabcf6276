package analytics_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/veil-project/veil/sinks/analytics"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

func TestLocalDirWriteFile(t *testing.T) {
	ctx := context.Background()
	w := newLocal(t)
	const name = "app=a/ledger=event/date=2026-11-22/hour=10/p0-o0-o9.parquet"
	full := filepath.Join(w.Root(), filepath.FromSlash(name))
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	if err := w.WriteFile(ctx, name, writeString("one")); err != nil {
		t.Fatalf("WriteFile = %v, want nil", err)
	}
	if got := read(); got != "one" {
		t.Fatalf("content = %q, want %q", got, "one")
	}
	if err := w.WriteFile(ctx, name, writeString("two")); err != nil {
		t.Fatalf("WriteFile (overwrite) = %v, want nil", err)
	}
	if got := read(); got != "two" {
		t.Fatalf("content after overwrite = %q, want %q", got, "two")
	}

	// A failing write leaves the previous file whole and no temporary file behind.
	boom := errors.New("boom")
	err := w.WriteFile(ctx, name, func(w io.Writer) error {
		io.WriteString(w, "partial")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFile with failing write = %v, want %v", err, boom)
	}
	if got := read(); got != "two" {
		t.Fatalf("content after failed write = %q, want %q", got, "two")
	}
	ents, err := os.ReadDir(filepath.Dir(full))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries after a failed write, want 1", len(ents))
	}

	// A cancelled context writes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.WriteFile(cctx, "app=a/x.parquet", writeString("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteFile(cancelled) = %v, want context.Canceled", err)
	}
}

func TestLocalDirListAndRemove(t *testing.T) {
	ctx := context.Background()
	w := newLocal(t)
	const dir = "app=a/ledger=event/date=2026-11-22/hour=10"
	if got, err := w.List(ctx, dir); err != nil || len(got) != 0 {
		t.Fatalf("List(missing) = %v, %v, want nothing, nil", got, err)
	}
	for _, n := range []string{"p0-o0-o9.parquet", "p1-o0-o9.parquet"} {
		if err := w.WriteFile(ctx, dir+"/"+n, writeString(n)); err != nil {
			t.Fatal(err)
		}
	}
	full := filepath.Join(w.Root(), filepath.FromSlash(dir))
	if err := os.WriteFile(filepath.Join(full, ".p2-o0-o9.parquet.tmp"), []byte("leftover"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(full, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	checkListRemove(t, w, dir)
}

func TestLocalDirRejectsNames(t *testing.T) {
	ctx := context.Background()
	w := newLocal(t)
	for _, name := range []string{"", "/abs/p0-o0-o0.parquet", "../p0-o0-o0.parquet", "a/../../p0.parquet",
		"a//b.parquet", "a/./b.parquet", ".hidden.parquet", "a/.p0.parquet.tmp", "a/", "a/.."} {
		t.Run(name, func(t *testing.T) {
			if err := w.WriteFile(ctx, name, writeString("x")); !errors.Is(err, analytics.ErrInvalidName) {
				t.Errorf("WriteFile(%q) = %v, want ErrInvalidName", name, err)
			}
			if err := w.Remove(ctx, name); !errors.Is(err, analytics.ErrInvalidName) {
				t.Errorf("Remove(%q) = %v, want ErrInvalidName", name, err)
			}
			if _, err := w.List(ctx, name); !errors.Is(err, analytics.ErrInvalidName) {
				t.Errorf("List(%q) = %v, want ErrInvalidName", name, err)
			}
		})
	}
}
