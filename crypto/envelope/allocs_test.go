package envelope

import (
	"crypto/rand"
	"testing"

	"github.com/veil-project/veil/internal/testenv"
)

// TestSealAllocs pins the allocation budget of the hot path: two for the DEK's AES-GCM (the block
// crypto/aes builds and the GCM crypto/cipher copies it into), one for record, fields and tokens
// together, one backing buffer for the wrapped DEK and every ciphertext, and one string per
// encoded token. Randomness comes from a pooled buffer and the associated data is built in a
// pooled scratch: neither allocates.
func TestSealAllocs(t *testing.T) {
	testenv.SkipAllocCounts(t)
	key := testKey(t)
	h := testHeader()
	fields := testFields(3, 100)
	got := testing.AllocsPerRun(200, func() {
		_, toks, err := SealWith(key, rand.Reader, h, fields)
		if err != nil {
			t.Fatal(err)
		}
		for i := range toks {
			sinkString = toks[i].Encode()
		}
	})
	if want := 2.0 + 1 + 1 + 3; got > want {
		t.Errorf("SealWith + 3×Encode = %v allocs, want at most %v", got, want)
	}
}
