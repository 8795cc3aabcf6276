package envelope

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/veil-project/veil/internal/aesgcm"
)

var (
	sinkString string
	sinkBytes  []byte
)

// BenchmarkSeal measures one entry per op with the default crypto/rand source, including encoding
// every token into an output buffer (AppendEncode), as the pipeline writes them into the entry's
// encrypted view. The "strings" variants encode each token to its own string instead (Encode),
// as a caller that keeps tokens as Go strings does.
func BenchmarkSeal(b *testing.B) {
	key := testKey(b)
	h := testHeader()
	for _, sz := range []struct{ n, size int }{{3, 100}, {3, 1 << 10}, {1, 64 << 10}} {
		fields := testFields(sz.n, sz.size)
		for _, strs := range []bool{false, true} {
			name := fmt.Sprintf("%dx%dB", sz.n, sz.size)
			if strs {
				name += "/strings"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(sz.n * sz.size))
				buf := make([]byte, 0, 1024)
				for b.Loop() {
					_, toks, err := SealWith(key, rand.Reader, h, fields)
					if err != nil {
						b.Fatal(err)
					}
					buf = buf[:0]
					for i := range toks {
						if strs {
							sinkString = toks[i].Encode()
						} else {
							buf = toks[i].AppendEncode(buf)
						}
					}
					sinkBytes = buf
				}
			})
		}
	}
}

// BenchmarkOpen measures opening one field: parsing its token string and decrypting.
func BenchmarkOpen(b *testing.B) {
	key := testKey(b)
	for _, size := range []int{100, 1 << 10, 64 << 10} {
		rec, toks, err := SealWith(key, rand.Reader, testHeader(), testFields(3, size))
		if err != nil {
			b.Fatal(err)
		}
		s := toks[1].Encode()
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				tok, err := ParseToken(s)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := OpenWith(key, rec, tok, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRecordUnmarshal(b *testing.B) {
	rec, _, _ := SealWith(testKey(b), rand.Reader, testHeader(), testFields(3, 100))
	data, _ := rec.MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		var r Record
		if err := r.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrimitives measures the standard-library work one Seal cannot avoid (two AES-GCM key
// setups, the field and wrap seals, one read of randomness), as a floor to read BenchmarkSeal
// against on a given machine.
func BenchmarkPrimitives(b *testing.B) {
	key := make([]byte, keySize)
	b.Run("NewGCM", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := aesgcm.New(key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GCMSeal100B", func(b *testing.B) {
		aead, _ := aesgcm.New(key)
		dst := make([]byte, 0, 128)
		pt := make([]byte, 100)
		nonce := make([]byte, nonceSize)
		b.ReportAllocs()
		for b.Loop() {
			aead.Seal(dst[:0], nonce, pt, pt[:48])
		}
	})
	b.Run("Rand76B", func(b *testing.B) {
		buf := make([]byte, 2*keySize+nonceSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rand.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
