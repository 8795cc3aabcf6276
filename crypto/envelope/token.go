package envelope

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Token is the encrypted view of one field: TokenPrefix followed by the unpadded base64url
// encoding of
//
//	appLen u8 (1..MaxAppLen) | app | ref [16] | refKEK [32] | field u8 | tag [16]
//
// The ref KEK is the only copy of the key that unwraps the record's DEK, so a token is a
// capability: whoever holds it can open that one field until the record expires. Field and Tag
// tie it to one field of one record: Tag is the GCM tag of that field's ciphertext, so a token
// edited to name another field (or copied onto another record) no longer matches and is
// rejected before any key is touched.
//
// String, GoString and LogValue redact the ref KEK; only Encode and AppendEncode reveal it.
type Token struct {
	App    string
	Ref    RefID
	RefKEK [keySize]byte
	Field  uint8
	Tag    [tagSize]byte
}

const (
	tokenFixedLen  = 1 + len(RefID{}) + keySize + 1 + tagSize
	tokenMinRawLen = tokenFixedLen + 1
	tokenMaxRawLen = tokenFixedLen + MaxAppLen
)

var tokenEncoding = base64.RawURLEncoding.Strict()

var (
	tokenMinEncLen = tokenEncoding.EncodedLen(tokenMinRawLen)
	tokenMaxEncLen = tokenEncoding.EncodedLen(tokenMaxRawLen)
)

// IsToken reports whether s looks like a token (has TokenPrefix). It does not validate the rest:
// use it to let tokens pass through untouched, and ParseToken to open them.
func IsToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// ParseToken decodes a token string. Every failure wraps ErrInvalidToken (and so ErrInvalid). The
// total length is checked before decoding and the app length before slicing, so ParseToken reads
// at most a fixed number of bytes whatever it is given.
func ParseToken(s string) (Token, error) {
	if !IsToken(s) {
		return Token{}, fmt.Errorf("%w: missing prefix", ErrInvalidToken)
	}
	p := s[len(TokenPrefix):]
	if len(p) < tokenMinEncLen || len(p) > tokenMaxEncLen {
		return Token{}, fmt.Errorf("%w: bad length", ErrInvalidToken)
	}
	var raw [tokenMaxRawLen]byte
	n, err := tokenEncoding.Decode(raw[:], []byte(p))
	// The decoder skips '\r' and '\n'; requiring the canonical encoded length rejects them, so a
	// parsed token always re-encodes to the same string.
	if err != nil || tokenEncoding.EncodedLen(n) != len(p) {
		return Token{}, fmt.Errorf("%w: bad encoding", ErrInvalidToken)
	}
	b := raw[:n]
	appLen := int(b[0])
	if appLen == 0 || appLen > MaxAppLen || len(b) != tokenFixedLen+appLen {
		return Token{}, fmt.Errorf("%w: bad app length", ErrInvalidToken)
	}
	app := b[1 : 1+appLen]
	if !validName(string(app), MaxAppLen) { // the conversion does not allocate
		return Token{}, fmt.Errorf("%w: bad app id", ErrInvalidToken)
	}
	var t Token
	t.App = string(app)
	b = b[1+appLen:]
	copy(t.Ref[:], b[:len(t.Ref)])
	b = b[len(t.Ref):]
	copy(t.RefKEK[:], b[:keySize])
	b = b[keySize:]
	t.Field = b[0]
	copy(t.Tag[:], b[1:1+tagSize])
	clear(raw[:])
	return t, nil
}

// appendRaw appends the binary layout. An App that is empty, too long or outside the charset is
// written with length zero, which ParseToken rejects: an invalid token never round-trips.
func (t *Token) appendRaw(dst []byte) []byte {
	if validName(t.App, MaxAppLen) {
		dst = append(dst, byte(len(t.App)))
		dst = append(dst, t.App...)
	} else {
		dst = append(dst, 0)
	}
	dst = append(dst, t.Ref[:]...)
	dst = append(dst, t.RefKEK[:]...)
	dst = append(dst, t.Field)
	return append(dst, t.Tag[:]...)
}

// AppendEncode appends the token string (TokenPrefix + base64url) to dst.
func (t Token) AppendEncode(dst []byte) []byte {
	var raw [tokenMaxRawLen]byte
	dst = append(dst, TokenPrefix...)
	dst = appendBase64URL(dst, t.appendRaw(raw[:0]))
	clear(raw[:])
	return dst
}

// base64Pairs maps 12 bits to the two base64url characters that encode them (first in the low
// byte), so appendBase64URL writes eight characters with four lookups and one store.
var base64Pairs = func() (t [1 << 12]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = uint16(alphabet[i>>6]) | uint16(alphabet[i&63])<<8
	}
	return t
}()

// appendBase64URL appends base64.RawURLEncoding of src: the same bytes as its AppendEncode (a
// test compares them on every length up to twice a token's), in about 60% of the time. Tokens
// are encoded once per sealed field, on the pipeline's hot path.
func appendBase64URL(dst, src []byte) []byte {
	n := tokenEncoding.EncodedLen(len(src))
	dst = slices.Grow(dst, n)
	out := dst[len(dst) : len(dst)+n]
	i, o := 0, 0
	for ; len(src)-i >= 8; i, o = i+6, o+8 {
		v := binary.BigEndian.Uint64(src[i:]) // 6 bytes used: 48 bits, four 12-bit pairs
		binary.LittleEndian.PutUint64(out[o:], uint64(base64Pairs[v>>52])|
			uint64(base64Pairs[v>>40&0xfff])<<16|
			uint64(base64Pairs[v>>28&0xfff])<<32|
			uint64(base64Pairs[v>>16&0xfff])<<48)
	}
	tokenEncoding.Encode(out[o:], src[i:])
	return dst[:len(dst)+n]
}

// Encode returns the token string. It carries the ref KEK: treat it as the secret it is.
func (t Token) Encode() string {
	var buf [len(TokenPrefix) + 4*((tokenMaxRawLen+2)/3)]byte
	b := t.AppendEncode(buf[:0])
	s := string(b)
	clear(buf[:])
	return s
}

// String returns a redacted description for logs: app, ref and field, never the ref KEK.
func (t Token) String() string {
	return fmt.Sprintf("token{app=%s ref=%s field=%d}", t.App, t.Ref, t.Field)
}

// GoString redacts like String, so %#v cannot print the ref KEK either.
func (t Token) GoString() string { return t.String() }

// LogValue redacts like String.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("app", t.App),
		slog.String("ref", t.Ref.String()),
		slog.Int("field", int(t.Field)),
	)
}
