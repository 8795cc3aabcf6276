package envelope

import (
	"encoding/binary"
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
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

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
