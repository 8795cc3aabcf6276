package blob

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecryptReader feeds arbitrary streams to the decrypting reader: it must never panic, and
// anything but the one authentic stream must fail with ErrCorrupt.
func FuzzDecryptReader(f *testing.F) {
	key := testKey(1)
	pt := media(100)
	// A fixed salt: fuzz workers rebuild this stream in their own processes and must get the
	// same bytes.
	var out bytes.Buffer
	w, err := newEncryptWriter(&out, key, testBinding, 32, bytes.NewReader(make([]byte, saltLen)))
	if err != nil {
		f.Fatal(err)
	}
	_, _ = w.Write(pt)
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	valid := out.Bytes()
	f.Add(valid)
	f.Add(valid[:headerLen])
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		r, err := NewDecryptReader(bytes.NewReader(ct), key, testBinding)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if bytes.Equal(ct, valid) {
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("authentic stream = %v", err)
			}
			return
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("altered stream = %d bytes, %v; want ErrCorrupt", len(got), err)
		}
	})
}

// FuzzOpenLink checks that no path but a link the service made verifies.
func FuzzOpenLink(f *testing.F) {
	e := newEnv(f, nil)
	tok, _ := e.seal("app-42", 1<<40, bytes.NewReader([]byte("x")))
	link, _, err := e.svc.Link(tok, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(link)
	f.Add("/v1/blobs/1/AAAA")
	f.Add("/")
	f.Fuzz(func(t *testing.T, p string) {
		got, _, ok := e.svc.openLink(p)
		if ok && (p != link || got != tok) {
			// Only the made link (or a path ending in its last two segments) verifies.
			if !bytesHasSuffix(p, link[len("/v1/blobs/"):]) || got != tok {
				t.Fatalf("openLink(%q) verified", p)
			}
		}
	})
}

func bytesHasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}
