package envelope

import (
	cryptorand "crypto/rand"
	"encoding/binary"
	"io"
	"sync"
)

// Associated data. Both kinds start with a domain byte and the same header encoding:
//
//	domain u8 | appLen u8 | app | ledgerLen u8 | ledger | ref [16] | expiry i64 (unix s)
//
// then a field adds  pathLen u16 | path  and the DEK wrap adds  period i64.
// Every variable part is length-prefixed and every other part has a fixed width, so two
// different (app, ledger, ref, expiry, path/period) tuples never encode to the same bytes, and the
// domain byte keeps a field's AAD from ever equalling a wrap's.
const (
	domainField = 'F'
	domainWrap  = 'W'

	aadHeaderMax = 1 + 1 + MaxAppLen + 1 + MaxLedgerLen + len(RefID{}) + 8
	aadMax       = aadHeaderMax + 2 + MaxPathLen
)

// scratch holds the per-call secrets and buffers that must not be allocated per call (they are
// passed to cipher.AEAD, an interface, so they would escape) and must be zeroed after use.
type scratch struct {
	rnd    [2*keySize + nonceSize]byte // DEK || ref KEK || app-wrap nonce, read in one call
	inner  [keySize + tagSize]byte     // the DEK masked by the ref KEK (and room for a GCM tag)
	dek    [keySize]byte
	nonce  [nonceSize]byte
	aad    [aadMax]byte
	hdrLen int // bytes of aad holding the header encoding

	// bulk holds crypto/rand output not used yet: bulk[used:]. Bytes are zeroed as they are
	// taken, so only randomness no call has used yet stays in memory.
	bulk [randBulkSize]byte
	used int
}

// randBulkSize is how much crypto/rand output a scratch draws at once: enough for 16 Seals. One
// getrandom call costs about 45 ns beyond the bytes it returns, a third of drawing 76 bytes;
// drawing them in bulk leaves only the per-byte cost.
const randBulkSize = 16 * (2*keySize + nonceSize)

var scratchPool = sync.Pool{New: func() any { return &scratch{used: randBulkSize} }}

// systemRand is crypto/rand's Reader as the program started with it. A Reader replaced later
// (a test's) is not it, and is read directly like any other.
var systemRand = cryptorand.Reader

// readRand fills s.rnd from r in one read. When r is crypto/rand's own Reader the bytes come from the
// scratch's bulk buffer, refilled from crypto/rand.Read when it runs short: the same generator,
// drawn in fewer calls. Any other reader (tests, WithRand) is read directly, exactly len(s.rnd)
// bytes per call, so a deterministic stream yields the same records as before.
func (s *scratch) readRand(r io.Reader) error {
	if r != systemRand {
		_, err := io.ReadFull(r, s.rnd[:])
		return err
	}
	if randBulkSize-s.used < len(s.rnd) {
		// crypto/rand.Read never fails: it crashes the program if the OS source does.
		cryptorand.Read(s.bulk[:])
		s.used = 0
	}
	b := s.bulk[s.used : s.used+len(s.rnd)]
	copy(s.rnd[:], b)
	clear(b)
	s.used += len(s.rnd)
	return nil
}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	clear(s.rnd[:])
	clear(s.inner[:])
	clear(s.dek[:])
	scratchPool.Put(s)
}

// setHeader encodes h into s.aad once per call; fieldAAD and wrapAAD reuse it.
func (s *scratch) setHeader(h *Header, expiry int64) {
	b := append(s.aad[:1], byte(len(h.App)))
	b = append(b, h.App...)
	b = append(b, byte(len(h.Ledger)))
	b = append(b, h.Ledger...)
	b = append(b, h.Ref[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(expiry))
	s.hdrLen = len(b)
}

func (s *scratch) fieldAAD(path string) []byte {
	b := s.aad[:s.hdrLen]
	b[0] = domainField
	b = binary.BigEndian.AppendUint16(b, uint16(len(path)))
	return append(b, path...)
}

func (s *scratch) wrapAAD(period int64) []byte {
	b := s.aad[:s.hdrLen]
	b[0] = domainWrap
	return binary.BigEndian.AppendUint64(b, uint64(period))
}

// fieldNonce sets s.nonce to the field index. See SealWith for why a counter nonce is safe.
func (s *scratch) fieldNonce(i int) []byte {
	clear(s.nonce[:])
	s.nonce[nonceSize-1] = byte(i)
	return s.nonce[:]
}
