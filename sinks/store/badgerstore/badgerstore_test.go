package badgerstore

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/storetest"
	"github.com/veil-project/veil/sinks/store"
)

func open(t *testing.T, clock func() time.Time) store.Store {
	t.Helper()
	s, err := Open(t.TempDir(), WithClock(clock), WithGCInterval(50*time.Millisecond))
	if err != nil {
		t.Fatalf("Open() = %v, want nil", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}

// TestReopen checks that items and deletions survive closing and reopening the directory.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open() = %v, want nil", err)
	}
	kept := store.Item{App: "app-1", Ref: [16]byte{1}, Expiry: time.Now().Add(time.Hour), Value: []byte("sealed")}
	gone := store.Item{App: "app-1", Ref: [16]byte{2}, Expiry: time.Now().Add(time.Hour), Value: []byte("sealed too")}
	if err := s.Put(ctx, []store.Item{kept, gone}); err != nil {
		t.Fatalf("Put() = %v, want nil", err)
	}
	if err := s.Delete(ctx, gone.App, gone.Ref); err != nil {
		t.Fatalf("Delete() = %v, want nil", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatalf("Open() again = %v, want nil", err)
	}
	defer s.Close(context.Background())
	got, err := s.Get(ctx, kept.App, kept.Ref)
	if err != nil || !bytes.Equal(got.Value, kept.Value) || got.Expiry.Unix() != kept.Expiry.Unix() {
		t.Fatalf("Get(kept) after reopen = %q, %v, %v, want %q, %v, nil", got.Value, got.Expiry, err, kept.Value, kept.Expiry)
	}
	if _, err := s.Get(ctx, gone.App, gone.Ref); err != store.ErrNotFound {
		t.Fatalf("Get(deleted) after reopen = %v, want ErrNotFound", err)
	}
}

// TestLogger checks that Badger's messages reach the slog logger at warn level and above only.
func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(t.TempDir(), WithLogger(l))
	if err != nil {
		t.Fatalf("Open() = %v, want nil", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	// Badger logs its start-up and shut-down at info level: none of it may come through.
	if buf.Len() != 0 {
		t.Fatalf("logger received %q, want nothing below warn", buf.String())
	}
	sl := slogLogger{l}
	sl.Infof("info %d", 1)
	sl.Warningf("warn %d\n", 2)
	if got := buf.String(); !bytes.Contains(buf.Bytes(), []byte(`level=WARN msg="warn 2"`)) {
		t.Fatalf("logger output = %q, want a WARN line \"warn 2\"", got)
	}
}

func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatalf("Open() = %v", err)
	}
	defer s.Close(context.Background())
	storetest.Bench(b, s)
}
