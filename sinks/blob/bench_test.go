package blob

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// BenchmarkSealLocal measures Service.Seal into the local directory (encrypt, write, sync,
// rename, seal the DEK) and BenchmarkOpenLocal reading it back.
func BenchmarkSealLocal(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			e := newEnv(b, nil, func(c *Config) { c.ChunkSize = 0 })
			in := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := e.svc.Seal(b.Context(), "app-42", "blob", newRef(), e.clock.Now().Add(time.Hour), bytes.NewReader(in)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpenLocal(b *testing.B) {
	const size = 16 << 20
	e := newEnv(b, nil, func(c *Config) { c.ChunkSize = 0 })
	tok, _ := e.seal("app-42", time.Hour, bytes.NewReader(make([]byte, size)))
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		m, st, err := e.svc.Open(b.Context(), tok)
		if err != nil || st != StatusOK {
			b.Fatal(st, err)
		}
		if _, err := io.Copy(io.Discard, m); err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}
