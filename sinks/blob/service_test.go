package blob

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/sinks/store"
)

func TestServiceRoundTrip(t *testing.T) {
	e := newEnv(t, nil) // 1 KiB chunks
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"exactly one chunk", 1 << 10},
		{"many chunks", 37<<10 + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := media(tt.size)
			tok, _ := e.seal("app-42", 24*time.Hour, bytes.NewReader(in))
			m, st, err := e.svc.Open(t.Context(), tok)
			if err != nil || st != StatusOK {
				t.Fatalf("Open = %v, %v; want ok, nil", st, err)
			}
			defer m.Close()
			if m.Size != int64(tt.size) || !bytes.Equal(m.SHA256, sum(in)) {
				t.Errorf("Open size, sha256 = %d, %x; want %d, %x", m.Size, m.SHA256, tt.size, sum(in))
			}
			got := mustRead(t, m)
			if !bytes.Equal(got, in) {
				t.Errorf("Open(Seal(%d bytes)) read %d bytes that differ", tt.size, len(got))
			}
		})
	}
}

// Only ciphertext reaches disk: no object file holds any part of the plaintext.
func TestServiceNoPlaintextOnDisk(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, d)
	e.seal("app-42", time.Hour, bytes.NewReader(media(100<<10)))
	if files := leakcheck.Dir(t, dir, "plaintext", canary[:16]); files != 1 {
		t.Fatalf("blob dir holds %d files, want 1", files)
	}
}

func TestServiceOpenStatuses(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()

	t.Run("not a token", func(t *testing.T) {
		if _, st, err := e.svc.Open(ctx, "veil:v1:nope"); st != StatusInvalid || err != nil {
			t.Errorf("Open(garbage) = %v, %v; want invalid, nil", st, err)
		}
	})
	t.Run("token of an ordinary field", func(t *testing.T) {
		toks := testkit.SealStored(t, e.sealer, e.store, envelope.Header{App: "app-42", Ledger: "event", Ref: newRef(), Expiry: e.clock.Now().Add(time.Hour)},
			envelope.Field{Path: "data.text", Value: []byte(`"hello"`)})
		if _, st, err := e.svc.Open(ctx, toks[0].Encode()); st != StatusInvalid || err != nil {
			t.Errorf("Open(text token) = %v, %v; want invalid, nil", st, err)
		}
	})
	t.Run("forged ref KEK", func(t *testing.T) {
		tok, _ := e.seal("app-42", time.Hour, bytes.NewReader([]byte("x")))
		pt, _ := envelope.ParseToken(tok)
		pt.RefKEK[0] ^= 1
		if _, st, err := e.svc.Open(ctx, pt.Encode()); st != StatusInvalid || err != nil {
			t.Errorf("Open(forged) = %v, %v; want invalid, nil", st, err)
		}
	})
	t.Run("store row erased", func(t *testing.T) {
		tok, ref := e.seal("app-42", time.Hour, bytes.NewReader([]byte("x")))
		if err := e.store.Delete(ctx, "app-42", ref); err != nil {
			t.Fatal(err)
		}
		e.checkExpired(t, "erased row", tok)
	})
	t.Run("object swept", func(t *testing.T) {
		tok, ref := e.seal("app-42", time.Hour, bytes.NewReader([]byte("x")))
		if err := e.objects.Delete(ctx, ObjectKey("app-42", e.clock.Now().Add(time.Hour), ref)); err != nil {
			t.Fatal(err)
		}
		e.checkExpired(t, "swept object", tok)
	})
	t.Run("keys erased", func(t *testing.T) {
		tok, _ := e.seal("app-erased", time.Hour, bytes.NewReader([]byte("x")))
		if _, err := e.keys.EraseApp(ctx, "app-erased"); err != nil {
			t.Fatal(err)
		}
		e.checkExpired(t, "after key erasure", tok)
	})
	t.Run("past TTL", func(t *testing.T) {
		e := newEnv(t, nil)
		tok, _ := e.seal("app-42", time.Hour, bytes.NewReader([]byte("x")))
		if _, st, err := e.open(tok); st != StatusOK || err != nil {
			t.Fatalf("Open before TTL = %v, %v; want ok, nil", st, err)
		}
		e.clock.Advance(time.Hour)
		e.checkExpired(t, "at TTL", tok)
	})
}

func TestServiceTamperedObject(t *testing.T) {
	dir := t.TempDir()
	d, _ := NewDir(dir)
	e := newEnv(t, d)
	tok, ref := e.seal("app-42", time.Hour, bytes.NewReader(media(10<<10)))
	p := filepath.Join(dir, filepath.FromSlash(ObjectKey("app-42", e.clock.Now().Add(time.Hour), ref)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"bit flip", func() []byte { c := bytes.Clone(b); c[len(c)/2] ^= 4; return c }()},
		{"truncated", b[:len(b)-(1<<10+chunkTagLen)]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(p, tc.b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, st, err := e.open(tok)
			if st != StatusOK || !errors.Is(err, ErrCorrupt) {
				t.Errorf("reading tampered blob = %d bytes, %v, %v; want ok then ErrCorrupt", len(got), st, err)
			}
		})
	}
}

func TestServiceSealInvalid(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now()
	tests := []struct {
		name   string
		app    string
		ref    envelope.RefID
		expiry time.Time
	}{
		{"bad app", "app/42", newRef(), now.Add(time.Hour)},
		{"dot app", "..", newRef(), now.Add(time.Hour)},
		{"zero ref", "app-42", envelope.RefID{}, now.Add(time.Hour)},
		{"expired", "app-42", newRef(), now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := e.svc.Seal(t.Context(), tt.app, "blob", tt.ref, tt.expiry, bytes.NewReader([]byte("x")))
			if err == nil {
				t.Errorf("Seal(%s) = nil error, want one", tt.name)
			}
		})
	}
	n := 0
	_ = e.objects.List(t.Context(), "", func(string) error { n++; return nil })
	if n != 0 {
		t.Errorf("objects after refused seals = %d, want 0", n)
	}
}

// A media reader that fails midway leaves no object behind.
func TestServiceSealReaderError(t *testing.T) {
	e := newEnv(t, nil)
	boom := errors.New("staging read failed")
	r := io.MultiReader(bytes.NewReader(media(5<<10)), errReader{boom})
	_, _, _, err := e.svc.Seal(t.Context(), "app-42", "blob", newRef(), e.clock.Now().Add(time.Hour), r)
	if !errors.Is(err, boom) {
		t.Fatalf("Seal(failing reader) = %v, want it to wrap the read error", err)
	}
	n := 0
	_ = e.objects.List(t.Context(), "", func(string) error { n++; return nil })
	if n != 0 {
		t.Errorf("objects after failed seal = %d, want 0", n)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestServiceSweep(t *testing.T) {
	e := newEnv(t, nil)
	short, _ := e.seal("app-a", time.Hour, bytes.NewReader([]byte("1h")))
	long, _ := e.seal("app-b", 24*time.Hour, bytes.NewReader([]byte("24h")))
	if n, err := e.svc.Sweep(t.Context()); n != 0 || err != nil {
		t.Fatalf("Sweep before any TTL = %d, %v; want 0, nil", n, err)
	}
	e.clock.Advance(time.Hour)
	if n, err := e.svc.Sweep(t.Context()); n != 1 || err != nil {
		t.Fatalf("Sweep after 1h = %d, %v; want 1, nil", n, err)
	}
	e.checkExpired(t, "1h blob after sweep", short)
	e.checkOpens(t, "24h blob after sweep", long, []byte("24h"))
}

func TestServiceDeleteApp(t *testing.T) {
	e := newEnv(t, nil)
	a1, _ := e.seal("app-a", time.Hour, bytes.NewReader([]byte("a1")))
	e.seal("app-a", 2*time.Hour, bytes.NewReader([]byte("a2")))
	b, _ := e.seal("app-ab", time.Hour, bytes.NewReader([]byte("b")))
	if n, err := e.svc.DeleteApp(t.Context(), "app-a"); n != 2 || err != nil {
		t.Fatalf("DeleteApp(app-a) = %d, %v; want 2, nil", n, err)
	}
	e.checkExpired(t, "app-a blob after DeleteApp", a1)
	e.checkOpens(t, "app-ab blob", b, []byte("b"))
}

func TestStaging(t *testing.T) {
	stage := t.TempDir()
	outside := t.TempDir()
	e := newEnv(t, nil, func(c *Config) { c.StagingDir = stage })
	write := func(name string, b []byte) {
		t.Helper()
		p := filepath.Join(stage, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	write("app-42/in/ok", []byte("inside"))
	write("app-7/theirs", []byte("app-7's media"))
	write("loose", []byte("at the shared root"))
	for link, target := range map[string]string{
		"app-42/escape":      secret,
		"app-42/escapedir":   outside,
		"app-42/innerlink":   "in/ok",
		"app-42/otherapp":    "../app-7/theirs",
		"app-42/otherappdir": filepath.Join(stage, "app-7"),
		"app-42/rootfile":    "../loose",
		"app-9":              "app-7", // an app root that is a symlink to another app's
	} {
		if err := os.Symlink(target, filepath.Join(stage, link)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("relative path sealed and deleted", func(t *testing.T) {
		write("app-42/up/1.bin", media(3000))
		ref := newRef()
		tok, _, n, err := e.svc.SealStaged(t.Context(), "app-42", "blob", ref, e.clock.Now().Add(time.Hour), "app-42/up/1.bin")
		if err != nil || n != 3000 {
			t.Fatalf("SealStaged = %d, %v; want 3000, nil", n, err)
		}
		if _, err := os.Stat(filepath.Join(stage, "app-42/up/1.bin")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("staging copy after seal: Stat = %v, want not exist", err)
		}
		// SealStaged wrote the item itself.
		e.checkOpens(t, "staged blob", tok.Encode(), media(3000))
	})
	t.Run("absolute path inside", func(t *testing.T) {
		write("app-42/up/2.bin", []byte("two"))
		_, _, _, err := e.svc.SealStaged(t.Context(), "app-42", "blob", newRef(), e.clock.Now().Add(time.Hour), filepath.Join(stage, "app-42/up/2.bin"))
		if err != nil {
			t.Errorf("SealStaged(absolute inside) = %v, want nil", err)
		}
	})
	t.Run("symlink inside", func(t *testing.T) {
		r, err := e.svc.OpenStaging(t.Context(), "app-42", "app-42/innerlink")
		if err != nil {
			t.Fatalf("OpenStaging(symlink within) = %v, want nil", err)
		}
		defer r.Close()
		if got := mustRead(t, r); string(got) != "inside" {
			t.Errorf("OpenStaging(symlink within) read %q, want \"inside\"", got)
		}
	})
	refused := []struct{ app, ref string }{
		{"app-42", "../" + filepath.Base(outside) + "/secret"},
		{"app-42", "app-42/in/../../x"},
		{"app-42", secret},
		{"app-42", "app-42/escape"},
		{"app-42", "app-42/escapedir/secret"},
		{"app-42", "app-42/in"},
		{"app-42", "app-42"},
		{"app-42", "app-42/"},
		{"app-42", ""},
		{"app-42", "s3://bucket/app-42/key"},
		{"app-42", "http://example.com/x"},
		{"app-42", "file://" + filepath.Join(stage, "app-42/in/ok")},
		// Another tenant's files, by every spelling.
		{"app-42", "app-7/theirs"},
		{"app-42", filepath.Join(stage, "app-7/theirs")},
		{"app-42", "./app-7/theirs"},
		{"app-42", "app-42/../app-7/theirs"},
		{"app-42", "APP-7/theirs"},
		{"app-42", "App-42/../app-7/theirs"},
		{"app-42", "app-42/otherapp"},
		{"app-42", "app-42/otherappdir/theirs"},
		{"app-42", "app-42/rootfile"},
		{"app-42", "app-42/%2e%2e/app-7/theirs"},
		{"app-42", "app-42/%2E%2E/app-7/theirs"},
		{"app-42", "app-42%2f..%2fapp-7/theirs"},
		{"app-42", `app-42\..\app-7\theirs`},
		{"app-42", "loose"},
		{"app-9", "app-9/theirs"}, // app root is a symlink to app-7's
		{"APP-7", "APP-7/theirs"}, // a differently cased app id is another app
		{"app-7", "app-7/theirs\x00"},
		{".", "./app-7/theirs"},
		{"..", "../" + filepath.Base(outside) + "/secret"},
		{"", "app-7/theirs"},
		{"app-7/..", "app-7/../loose"},
	}
	for _, c := range refused {
		t.Run("refused "+c.app+" "+c.ref, func(t *testing.T) {
			r, err := e.svc.OpenStaging(t.Context(), c.app, c.ref)
			if err == nil {
				r.Close()
			}
			if !errors.Is(err, ErrStagingRefused) && !(c.app == "APP-7" && errors.Is(err, ErrStagingNotFound)) {
				t.Errorf("OpenStaging(%q, %q) = %v, want ErrStagingRefused", c.app, c.ref, err)
			}
			err = e.svc.DeleteStaging(t.Context(), c.app, c.ref)
			if c.ref != "app-42/escape" && c.ref != "app-42/otherapp" && c.ref != "app-42/rootfile" && c.app != "APP-7" && !errors.Is(err, ErrStagingRefused) {
				t.Errorf("DeleteStaging(%q, %q) = %v, want ErrStagingRefused", c.app, c.ref, err)
			}
		})
	}
	for path, want := range map[string]string{secret: "outside", filepath.Join(stage, "app-7/theirs"): "app-7's media", filepath.Join(stage, "loose"): "at the shared root"} {
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			t.Errorf("%s after refused references = %q, %v; want untouched", path, b, err)
		}
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := e.svc.OpenStaging(t.Context(), "app-42", "app-42/nope"); !errors.Is(err, ErrStagingNotFound) {
			t.Errorf("OpenStaging(missing) = %v, want ErrStagingNotFound", err)
		}
		if _, err := e.svc.OpenStaging(t.Context(), "app-new", "app-new/x"); !errors.Is(err, ErrStagingNotFound) {
			t.Errorf("OpenStaging(app without a staging root) = %v, want ErrStagingNotFound", err)
		}
	})
	t.Run("no staging dir", func(t *testing.T) {
		e := newEnv(t, nil)
		if _, err := e.svc.OpenStaging(t.Context(), "app-42", "app-42/x"); !errors.Is(err, ErrStagingRefused) || !strings.Contains(err.Error(), "no staging") {
			t.Errorf("OpenStaging without staging dir = %v, want ErrStagingRefused", err)
		}
	})
}

// TestOpenSealed: the one token-status rule reveal's Opener shares. What Service.Open's statuses
// above do not reach: the value itself, a store row that is not a record, a store that fails.
func TestOpenSealed(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	h := envelope.Header{App: "app-42", Ledger: "event", Ref: newRef(), Expiry: e.clock.Now().Add(time.Hour)}
	toks := testkit.SealStored(t, e.sealer, e.store, h, envelope.Field{Path: "data.text", Value: []byte(`"hello"`)})
	var rec envelope.Record
	v, st, err := OpenSealed(ctx, e.store, e.sealer, toks[0], &rec)
	if st != StatusOK || err != nil || string(v) != `"hello"` || !rec.Expiry.Equal(h.Expiry) {
		t.Errorf("OpenSealed = %q, %v, %v (record expiry %v); want the value, ok, nil, expiry %v", v, st, err, rec.Expiry, h.Expiry)
	}

	t.Run("store row is not a record", func(t *testing.T) {
		tok := toks[0]
		tok.Ref = newRef()
		if err := e.store.Put(ctx, []store.Item{{App: tok.App, Ref: tok.Ref, Expiry: h.Expiry, Value: []byte("not a sealed record")}}); err != nil {
			t.Fatal(err)
		}
		if v, st, err := OpenSealed(ctx, e.store, e.sealer, tok, new(envelope.Record)); st != StatusInvalid || err != nil || v != nil {
			t.Errorf("OpenSealed(garbage row) = %q, %v, %v; want nil, invalid, nil", v, st, err)
		}
	})
	t.Run("store down", func(t *testing.T) {
		e := newEnv(t, nil)
		toks := testkit.SealStored(t, e.sealer, e.store, h, envelope.Field{Path: "data.text", Value: []byte(`"hello"`)})
		if err := e.store.Close(ctx); err != nil {
			t.Fatal(err)
		}
		v, st, err := OpenSealed(ctx, e.store, e.sealer, toks[0], new(envelope.Record))
		if err == nil || st != "" || v != nil {
			t.Errorf("OpenSealed(closed store) = %q, %v, %v; want nil, no status, an error", v, st, err)
		}
	})
}
