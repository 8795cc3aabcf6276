package envelope

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Record is what the store keeps for one sealed entry. Alone it decrypts nothing: the DEK is
// wrapped under the ref KEK, which only the tokens carry, and then under the app KEK.
type Record struct {
	Header            // App, Ledger, Ref, Expiry: all authenticated
	Period     int64  // app KEK period that wrapped the DEK
	WrappedDEK []byte // nonce(12) || AES-GCM(appKEK, AES-GCM(refKEK, DEK))
	Fields     []SealedField
}

// SealedField is one sealed value: Ciphertext is the GCM ciphertext followed by its 16-byte tag.
type SealedField struct {
	Path       string
	Ciphertext []byte
}

// recordVersion is the first byte of the binary layout:
//
//	version u8 = 2 (1 wrapped the DEK with AES-GCM under the ref KEK; it was never released)
//	appLen u8 | app | ledgerLen u8 | ledger | ref [16] | expiry i64 (unix s) | period i64
//	wrappedDEK [76]
//	fieldCount u8
//	fieldCount × ( pathLen u16 | path | ctLen u32 | ciphertext )
//
// Integers are big-endian; nothing may follow the last field.
const recordVersion = 2

const recordFixedLen = 1 + 1 + 1 + len(RefID{}) + 8 + 8 + wrappedDEKSize + 1

// check validates every limit of the layout; Marshal and Open both rely on it.
func (r *Record) check() error {
	switch {
	case !validName(r.App, MaxAppLen):
		return fmt.Errorf("%w: bad app id", ErrInvalidRecord)
	case !validName(r.Ledger, MaxLedgerLen):
		return fmt.Errorf("%w: bad ledger", ErrInvalidRecord)
	case len(r.WrappedDEK) != wrappedDEKSize:
		return fmt.Errorf("%w: bad wrapped DEK length", ErrInvalidRecord)
	case len(r.Fields) > MaxFields:
		return fmt.Errorf("%w: too many fields", ErrInvalidRecord)
	}
	for i := range r.Fields {
		f := &r.Fields[i]
		if len(f.Path) == 0 || len(f.Path) > MaxPathLen {
			return fmt.Errorf("%w: field %d: bad path length", ErrInvalidRecord, i)
		}
		if len(f.Ciphertext) < tagSize || len(f.Ciphertext) > MaxValueSize+tagSize {
			return fmt.Errorf("%w: field %d: bad ciphertext length", ErrInvalidRecord, i)
		}
	}
	return nil
}

func (r *Record) binarySize() int {
	n := recordFixedLen + len(r.App) + len(r.Ledger)
	for i := range r.Fields {
		n += 2 + len(r.Fields[i].Path) + 4 + len(r.Fields[i].Ciphertext)
	}
	return n
}

// MarshalBinary encodes the record in its versioned binary layout.
func (r *Record) MarshalBinary() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	return r.AppendBinary(make([]byte, 0, r.binarySize()))
}

// AppendBinary appends the binary layout of the record to b.
func (r *Record) AppendBinary(b []byte) ([]byte, error) {
	if err := r.check(); err != nil {
		return b, err
	}
	b = append(b, recordVersion, byte(len(r.App)))
	b = append(b, r.App...)
	b = append(b, byte(len(r.Ledger)))
	b = append(b, r.Ledger...)
	b = append(b, r.Ref[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expiry.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Period))
	b = append(b, r.WrappedDEK...)
	b = append(b, byte(len(r.Fields)))
	for i := range r.Fields {
		f := &r.Fields[i]
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Path)))
		b = append(b, f.Path...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.Ciphertext)))
		b = append(b, f.Ciphertext...)
	}
	return b, nil
}

// reader is a bounded cursor: every read checks the remaining length first.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) next(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() int {
	p := r.next(1)
	if p == nil {
		return 0
	}
	return int(p[0])
}

func (r *reader) u16() int {
	p := r.next(2)
	if p == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(p))
}

func (r *reader) u32() int64 {
	p := r.next(4)
	if p == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint32(p))
}

func (r *reader) i64() int64 {
	p := r.next(8)
	if p == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(p))
}

// UnmarshalBinary decodes a record. It checks the version, bounds every length before slicing
// (app, ledger, field count, path, ciphertext) and rejects trailing bytes; failures wrap
// ErrInvalidRecord and leave r unchanged. The record does not alias b: it keeps one copy of it,
// which WrappedDEK and the ciphertexts share.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) < recordFixedLen+2 {
		return fmt.Errorf("%w: too short", ErrInvalidRecord)
	}
	if b[0] != recordVersion {
		return fmt.Errorf("%w: unknown version", ErrInvalidRecord)
	}
	in := reader{b: append([]byte(nil), b[1:]...)}
	var rec Record
	if n := in.u8(); n == 0 || n > MaxAppLen {
		return fmt.Errorf("%w: bad app length", ErrInvalidRecord)
	} else if app := in.next(n); in.bad || !validName(string(app), MaxAppLen) {
		return fmt.Errorf("%w: bad app id", ErrInvalidRecord)
	} else {
		rec.App = string(app)
	}
	if n := in.u8(); n == 0 || n > MaxLedgerLen {
		return fmt.Errorf("%w: bad ledger length", ErrInvalidRecord)
	} else if ledger := in.next(n); in.bad || !validName(string(ledger), MaxLedgerLen) {
		return fmt.Errorf("%w: bad ledger", ErrInvalidRecord)
	} else {
		rec.Ledger = string(ledger)
	}
	copy(rec.Ref[:], in.next(len(rec.Ref)))
	rec.Expiry = time.Unix(in.i64(), 0).UTC()
	rec.Period = in.i64()
	rec.WrappedDEK = in.next(wrappedDEKSize)
	count := in.u8()
	if in.bad {
		return fmt.Errorf("%w: truncated header", ErrInvalidRecord)
	}
	// Each field takes at least 2+1+4+tagSize bytes: refuse counts the input cannot hold before
	// allocating for them.
	if count*(2+1+4+tagSize) > len(in.b) {
		return fmt.Errorf("%w: truncated fields", ErrInvalidRecord)
	}
	if count > 0 {
		rec.Fields = make([]SealedField, count)
	}
	for i := range rec.Fields {
		f := &rec.Fields[i]
		n := in.u16()
		if n == 0 || n > MaxPathLen {
			return fmt.Errorf("%w: field %d: bad path length", ErrInvalidRecord, i)
		}
		path := in.next(n)
		ctLen := in.u32()
		if ctLen < tagSize || ctLen > MaxValueSize+tagSize {
			return fmt.Errorf("%w: field %d: bad ciphertext length", ErrInvalidRecord, i)
		}
		f.Ciphertext = in.next(int(ctLen))
		if in.bad {
			return fmt.Errorf("%w: field %d: truncated", ErrInvalidRecord, i)
		}
		f.Path = string(path)
	}
	if len(in.b) != 0 {
		return fmt.Errorf("%w: trailing bytes", ErrInvalidRecord)
	}
	*r = rec
	return nil
}
