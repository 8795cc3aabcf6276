package blob

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
)

var testBinding = Binding{App: "app-42", Ref: envelope.RefID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}

func testKey(seed byte) []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

// seeded is a deterministic source of n pseudo-random bytes that never holds them all.
func seeded(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func encrypt(t testing.TB, pt []byte, key []byte, b Binding, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewEncryptWriter(&out, key, b, chunk)
	if err != nil {
		t.Fatalf("NewEncryptWriter = %v", err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatalf("Write = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	return out.Bytes()
}

func decrypt(key []byte, b Binding, ct []byte) ([]byte, error) {
	r, err := NewDecryptReader(bytes.NewReader(ct), key, b)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestStreamRoundTrip(t *testing.T) {
	const chunk = 64
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"less than a chunk", chunk - 1},
		{"exactly one chunk", chunk},
		{"one chunk and a byte", chunk + 1},
		{"exactly many chunks", 7 * chunk},
		{"many chunks", 7*chunk + 13},
	}
	key := testKey(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, _ := io.ReadAll(seeded(uint64(tt.size), int64(tt.size)))
			ct := encrypt(t, pt, key, testBinding, chunk)
			chunks := (tt.size + chunk) / chunk // a full last chunk is the final one
			if tt.size > 0 && tt.size%chunk == 0 {
				chunks = tt.size / chunk
			}
			if want := headerLen + tt.size + chunks*chunkTagLen; len(ct) != want {
				t.Errorf("len(ciphertext) = %d, want %d", len(ct), want)
			}
			got, err := decrypt(key, testBinding, ct)
			if err != nil {
				t.Fatalf("decrypt = %v", err)
			}
			if !bytes.Equal(got, pt) {
				t.Errorf("decrypt(encrypt(%d bytes)) differs", tt.size)
			}
		})
	}
}

func TestStreamDefaultChunk(t *testing.T) {
	pt, _ := io.ReadAll(seeded(9, 3*DefaultChunkSize+5))
	ct := encrypt(t, pt, testKey(2), testBinding, 0)
	if want := headerLen + len(pt) + 4*chunkTagLen; len(ct) != want {
		t.Errorf("len(ciphertext) = %d, want %d", len(ct), want)
	}
	// Read through small buffers: chunk boundaries must not show.
	r, err := NewDecryptReader(bytes.NewReader(ct), testKey(2), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(struct{ io.Reader }{r}, 1<<30))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt = %d bytes, %v; want %d bytes, nil", len(got), err, len(pt))
	}
}

// chunksOf splits a stream into header and chunk ciphertexts.
func chunksOf(ct []byte, chunk int) (header []byte, chunks [][]byte) {
	header, ct = ct[:headerLen], ct[headerLen:]
	for len(ct) > 0 {
		n := min(len(ct), chunk+chunkTagLen)
		chunks = append(chunks, ct[:n])
		ct = ct[n:]
	}
	return header, chunks
}

func join(header []byte, chunks ...[]byte) []byte {
	out := append([]byte(nil), header...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

func TestStreamTamper(t *testing.T) {
	const chunk = 32
	key := testKey(3)
	pt, _ := io.ReadAll(seeded(3, 4*chunk+10)) // 5 chunks, the last one short
	ct := encrypt(t, pt, key, testBinding, chunk)
	header, chunks := chunksOf(ct, chunk)
	if len(chunks) != 5 {
		t.Fatalf("chunks = %d, want 5", len(chunks))
	}
	mustFail := func(t *testing.T, name string, bad []byte) {
		t.Helper()
		got, err := decrypt(key, testBinding, bad)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decrypt = %d bytes, %v; want ErrCorrupt", name, len(got), err)
		}
	}
	t.Run("reorder", func(t *testing.T) {
		for i := range chunks {
			for j := range chunks {
				if i == j {
					continue
				}
				c := append([][]byte(nil), chunks...)
				c[i], c[j] = c[j], c[i]
				mustFail(t, "swap", join(header, c...))
			}
		}
	})
	t.Run("drop", func(t *testing.T) {
		for i := range chunks {
			c := append(append([][]byte(nil), chunks[:i]...), chunks[i+1:]...)
			mustFail(t, "drop", join(header, c...))
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		for i := range chunks {
			c := append(append([][]byte(nil), chunks[:i+1]...), chunks[i:]...)
			mustFail(t, "duplicate", join(header, c...))
		}
	})
	t.Run("truncate", func(t *testing.T) {
		// Every prefix, including each chunk boundary (whole final chunk missing).
		for n := 0; n < len(ct); n++ {
			mustFail(t, "truncate", ct[:n])
		}
	})
	t.Run("append", func(t *testing.T) {
		mustFail(t, "trailing byte", append(append([]byte(nil), ct...), 0))
		mustFail(t, "final chunk twice", join(header, append(chunks, chunks[4])...))
	})
	t.Run("bit flip", func(t *testing.T) {
		bad := append([]byte(nil), ct...)
		for i := range bad {
			for bit := range 8 {
				bad[i] ^= 1 << bit
				if _, err := decrypt(key, testBinding, bad); err == nil {
					t.Errorf("decrypt with byte %d bit %d flipped = nil error", i, bit)
				}
				bad[i] ^= 1 << bit
			}
		}
	})
	t.Run("binding", func(t *testing.T) {
		other := testBinding
		other.Ref[0]++
		if _, err := decrypt(key, other, ct); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decrypt under another ref = %v, want ErrCorrupt", err)
		}
		other = testBinding
		other.App = "app-43"
		if _, err := decrypt(key, other, ct); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decrypt under another app = %v, want ErrCorrupt", err)
		}
		if _, err := decrypt(testKey(4), testBinding, ct); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decrypt under another key = %v, want ErrCorrupt", err)
		}
	})
	t.Run("other stream", func(t *testing.T) {
		// Same key, same binding: a chunk of another stream never fits (fresh salt per stream).
		ct2 := encrypt(t, pt, key, testBinding, chunk)
		_, chunks2 := chunksOf(ct2, chunk)
		c := append([][]byte(nil), chunks...)
		c[2] = chunks2[2]
		mustFail(t, "spliced", join(header, c...))
	})
	t.Run("unclosed writer", func(t *testing.T) {
		var out bytes.Buffer
		w, _ := NewEncryptWriter(&out, key, testBinding, chunk)
		_, _ = w.Write(pt)
		mustFail(t, "unclosed", out.Bytes())
	})
}

func TestStreamInvalidInput(t *testing.T) {
	tests := []struct {
		name  string
		key   []byte
		b     Binding
		chunk int
	}{
		{"short key", make([]byte, 16), testBinding, 0},
		{"no app", testKey(1), Binding{}, 0},
		{"chunk too small", testKey(1), testBinding, MinChunkSize - 1},
		{"chunk too large", testKey(1), testBinding, MaxChunkSize + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewEncryptWriter(io.Discard, tt.key, tt.b, tt.chunk); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("NewEncryptWriter = %v, want ErrInvalidInput", err)
			}
		})
	}
}

// A header announcing a huge chunk size is refused before anything is allocated for it.
func TestStreamHeaderBounds(t *testing.T) {
	ct := encrypt(t, []byte("x"), testKey(1), testBinding, 64)
	ct[5], ct[6], ct[7], ct[8] = 0xff, 0xff, 0xff, 0xff
	if _, err := decrypt(testKey(1), testBinding, ct); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decrypt with chunk size 2^32-1 = %v, want ErrCorrupt", err)
	}
}

// heapPeak samples HeapInuse until stop is closed and returns the largest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// A 200 MiB stream is encrypted and decrypted through a pipe, never held whole: the heap stays
// within a few chunks of where it started.
func TestStreamLargeBoundedMemory(t *testing.T) {
	const size = 200 << 20
	const budget = 32 << 20
	key := testKey(7)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := make(chan struct{})
	peak := heapPeak(stop)

	pr, pw := io.Pipe()
	inHash := sha256.New()
	var written atomic.Int64
	go func() {
		w, err := NewEncryptWriter(pw, key, testBinding, 0)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		n, err := io.Copy(w, io.TeeReader(seeded(42, size), inHash))
		written.Store(n)
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	r, err := NewDecryptReader(pr, key, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	outHash := sha256.New()
	n, err := io.Copy(outHash, r)
	close(stop)
	if err != nil {
		t.Fatalf("decrypting = %v", err)
	}
	if n != size || written.Load() != size {
		t.Fatalf("bytes in, out = %d, %d; want %d", written.Load(), n, size)
	}
	if !bytes.Equal(inHash.Sum(nil), outHash.Sum(nil)) {
		t.Fatal("sha256 of decrypted stream differs from input")
	}
	p := <-peak
	if p > base.HeapInuse+budget {
		t.Errorf("peak HeapInuse = %d MiB above start, want < %d MiB", (p-base.HeapInuse)>>20, budget>>20)
	}
	t.Logf("200 MiB: peak HeapInuse %.1f MiB (start %.1f MiB)", float64(p)/(1<<20), float64(base.HeapInuse)/(1<<20))
}

func BenchmarkEncrypt(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			pt := make([]byte, size)
			key := testKey(1)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				w, err := NewEncryptWriter(io.Discard, key, testBinding, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.Write(pt); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	const size = 16 << 20
	key := testKey(1)
	ct := encrypt(b, make([]byte, size), key, testBinding, 0)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewDecryptReader(bytes.NewReader(ct), key, testBinding)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
