package blob

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/aesgcm"
)

// The stream layout (version 1):
//
//	magic "vblb" | version u8 = 1 | chunkSize u32 | salt [16]
//	chunk 0 | chunk 1 | … | chunk n-1
//
// Every chunk is AES-256-GCM(streamKey, nonce_i, plaintext_i, aad_i) with its 16-byte tag
// appended. Every chunk but the last holds exactly chunkSize bytes of plaintext; the last holds
// 0..chunkSize bytes, so an empty stream is one final chunk of just a tag.
//
//	streamKey = HKDF-SHA256(secret = media DEK, salt = salt, info = "veil blob v1" | header | binding)
//	nonce_i   = 0^4 | i u64
//	aad_i     = binding | i u64 | final u8
//	binding   = appLen u8 | app | ref [16]
//
// The chunk index in the nonce and the associated data makes reordering, dropping and duplicating
// chunks fail; the final flag makes truncation at a chunk boundary (the last chunk missing) and
// appended data fail; the header and binding are in the key derivation, so a changed chunk size,
// salt, app or ref fails on the first chunk. The salt makes the stream key fresh even if a caller
// reused a media DEK, so nonces derived from the index alone never repeat under one key.
const (
	streamVersion = 1
	headerLen     = 4 + 1 + 4 + saltLen
	saltLen       = 16
	chunkTagLen   = 16
	streamInfo    = "veil blob v1"

	// DefaultChunkSize is the plaintext bytes per chunk when none is given.
	DefaultChunkSize = 64 << 10
	// MinChunkSize and MaxChunkSize bound the chunk size a stream may declare; a reader checks
	// the header against them before allocating its buffer.
	MinChunkSize = 16
	MaxChunkSize = 8 << 20
	// KeySize is the size of a media DEK.
	KeySize = 32
	// maxChunks keeps the index far from wrapping; at the minimum chunk size it still allows 64 TiB.
	maxChunks = 1 << 42
)

var streamMagic = [4]byte{'v', 'b', 'l', 'b'}

// ErrCorrupt is returned by a decrypting reader when the stream does not authenticate: a bad or
// unknown header, a chunk altered, reordered, dropped or duplicated, a missing final chunk, data
// after the final chunk, or the wrong key or binding. No plaintext of the failing chunk is
// returned; earlier chunks may have been returned already (each authenticated on its own).
var ErrCorrupt = errors.New("blob: stream does not authenticate")

// Binding names the blob a stream belongs to; it is authenticated by every chunk, so a stream
// copied under another app or ref does not decrypt.
type Binding struct {
	App string
	Ref envelope.RefID
}

func (b Binding) append(dst []byte) []byte {
	dst = append(dst, byte(len(b.App)))
	dst = append(dst, b.App...)
	return append(dst, b.Ref[:]...)
}

func (b Binding) check() error {
	if len(b.App) == 0 || len(b.App) > envelope.MaxAppLen {
		return fmt.Errorf("%w: bad app length", ErrInvalidInput)
	}
	return nil
}

// ErrInvalidInput is returned for arguments no stream can be built from: a key that is not
// KeySize bytes, a chunk size out of range, an empty or overlong app id.
var ErrInvalidInput = errors.New("blob: invalid input")

// streamCipher holds the per-stream AEAD and a scratch buffer for the associated data.
type streamCipher struct {
	aead  cipher.AEAD
	aad   []byte // binding | index u64 | final u8
	nbind int
	nonce [12]byte
}

func newStreamCipher(key []byte, header []byte, b Binding) (*streamCipher, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: media key must be %d bytes", ErrInvalidInput, KeySize)
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	bind := b.append(nil)
	info := make([]byte, 0, len(streamInfo)+len(header)+len(bind))
	info = append(append(append(info, streamInfo...), header...), bind...)
	sk, err := hkdf.Key(sha256.New, key, header[headerLen-saltLen:headerLen], string(info), KeySize)
	if err != nil {
		return nil, fmt.Errorf("deriving stream key: %w", err)
	}
	aead, err := aesgcm.New(sk)
	clear(sk)
	if err != nil {
		return nil, fmt.Errorf("creating stream cipher: %w", err)
	}
	aad := make([]byte, len(bind), len(bind)+9)
	copy(aad, bind)
	return &streamCipher{aead: aead, aad: aad, nbind: len(bind)}, nil
}

func (c *streamCipher) set(i uint64, final bool) ([]byte, []byte) {
	binary.BigEndian.PutUint64(c.nonce[4:], i)
	c.aad = binary.BigEndian.AppendUint64(c.aad[:c.nbind], i)
	f := byte(0)
	if final {
		f = 1
	}
	c.aad = append(c.aad, f)
	return c.nonce[:], c.aad
}

// EncryptWriter encrypts what is written to it into a stream (see the layout above) on an
// underlying writer. It holds one chunk of plaintext and one of ciphertext at a time, whatever
// the length of the stream. Close writes the final chunk; a stream that was not closed lacks it
// and fails to decrypt.
type EncryptWriter struct {
	w      io.Writer
	c      *streamCipher
	chunk  int
	buf    []byte // plaintext of the pending chunk; grows up to chunk, so small media stay small
	out    []byte // ciphertext scratch; grows up to chunk + tag
	header []byte // written before the first chunk
	index  uint64
	err    error
	closed bool
}

// NewEncryptWriter returns a writer that encrypts under key (KeySize bytes, a fresh media DEK)
// in chunks of chunkSize plaintext bytes (0 means DefaultChunkSize), bound to b. The header is
// written with the first chunk.
func NewEncryptWriter(w io.Writer, key []byte, b Binding, chunkSize int) (*EncryptWriter, error) {
	return newEncryptWriter(w, key, b, chunkSize, rand.Reader)
}

func newEncryptWriter(w io.Writer, key []byte, b Binding, chunkSize int, rnd io.Reader) (*EncryptWriter, error) {
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize {
		return nil, fmt.Errorf("%w: chunk size out of range", ErrInvalidInput)
	}
	header := make([]byte, headerLen)
	copy(header, streamMagic[:])
	header[4] = streamVersion
	binary.BigEndian.PutUint32(header[5:9], uint32(chunkSize))
	if _, err := io.ReadFull(rnd, header[9:]); err != nil {
		return nil, fmt.Errorf("reading stream salt: %w", err)
	}
	c, err := newStreamCipher(key, header, b)
	if err != nil {
		return nil, err
	}
	return &EncryptWriter{
		w:      w,
		c:      c,
		chunk:  chunkSize,
		buf:    make([]byte, 0, min(chunkSize, 512)),
		header: header,
	}, nil
}

// Write encrypts p. A chunk is sealed only once the next byte arrives (or at Close), because
// only then is it known not to be the final one.
func (e *EncryptWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.closed {
		return 0, errors.New("blob: write after close")
	}
	n := 0
	for len(p) > 0 {
		if len(e.buf) == e.chunk {
			if err := e.flush(false); err != nil {
				return n, err
			}
		}
		k := min(len(p), e.chunk-len(e.buf))
		e.buf = append(e.buf, p[:k]...)
		p = p[k:]
		n += k
	}
	return n, nil
}

func (e *EncryptWriter) flush(final bool) error {
	if e.index >= maxChunks {
		e.err = fmt.Errorf("%w: stream too long", ErrInvalidInput)
		return e.err
	}
	if e.header != nil {
		if _, err := e.w.Write(e.header); err != nil {
			e.err = fmt.Errorf("writing stream header: %w", err)
			return e.err
		}
		e.header = nil
	}
	nonce, aad := e.c.set(e.index, final)
	e.out = e.c.aead.Seal(e.out[:0], nonce, e.buf, aad)
	clear(e.buf)
	e.buf = e.buf[:0]
	e.index++
	if _, err := e.w.Write(e.out); err != nil {
		e.err = fmt.Errorf("writing chunk: %w", err)
		return e.err
	}
	return nil
}

// Close seals and writes the final chunk. It does not close the underlying writer. Calling it
// again does nothing.
func (e *EncryptWriter) Close() error {
	if e.closed {
		return e.err
	}
	e.closed = true
	if e.err != nil {
		return e.err
	}
	return e.flush(true)
}

// DecryptReader reads the plaintext of a stream, returning each chunk only after it
// authenticated. It holds one chunk at a time.
type DecryptReader struct {
	r       io.Reader
	key     []byte
	bind    Binding
	c       *streamCipher
	ct      []byte // chunk + 1 lookahead byte
	carry   bool   // pending is the lookahead byte read after the previous chunk
	pending byte
	pt      []byte // unread plaintext of the current chunk (aliases ct)
	index   uint64
	done    bool
	err     error
}

// NewDecryptReader returns a reader of the plaintext of the stream on r, encrypted under key and
// bound to b. The header is read and checked on the first Read. Once Read returned an error, it
// returns the same error forever; errors of the stream itself wrap ErrCorrupt.
func NewDecryptReader(r io.Reader, key []byte, b Binding) (*DecryptReader, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: media key must be %d bytes", ErrInvalidInput, KeySize)
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	return &DecryptReader{r: r, key: append([]byte(nil), key...), bind: b}, nil
}

func (d *DecryptReader) Read(p []byte) (int, error) {
	for len(d.pt) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			d.err = io.EOF
			return 0, io.EOF
		}
		if err := d.next(); err != nil {
			d.pt = nil
			clear(d.ct[:cap(d.ct)])
			d.err = err
			return 0, err
		}
	}
	n := copy(p, d.pt)
	d.pt = d.pt[n:]
	return n, nil
}

func (d *DecryptReader) start() error {
	var h [headerLen]byte
	if _, err := io.ReadFull(d.r, h[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: truncated header", ErrCorrupt)
		}
		return fmt.Errorf("reading stream header: %w", err)
	}
	if [4]byte(h[:4]) != streamMagic || h[4] != streamVersion {
		return fmt.Errorf("%w: unknown header", ErrCorrupt)
	}
	cs := binary.BigEndian.Uint32(h[5:9])
	if cs < MinChunkSize || cs > MaxChunkSize {
		return fmt.Errorf("%w: chunk size out of range", ErrCorrupt)
	}
	c, err := newStreamCipher(d.key, h[:], d.bind)
	clear(d.key)
	if err != nil {
		return err
	}
	d.c = c
	d.ct = make([]byte, int(cs)+chunkTagLen+1)
	return nil
}

// next reads, authenticates and decrypts one chunk into d.pt. A chunk is final exactly when the
// stream ends right after it, which the one-byte lookahead tells.
func (d *DecryptReader) next() error {
	if d.c == nil {
		if err := d.start(); err != nil {
			return err
		}
	}
	full := len(d.ct) - 1
	have := 0
	if d.carry {
		d.ct[0] = d.pending
		have = 1
	}
	n, err := io.ReadFull(d.r, d.ct[have:])
	have += n
	final := false
	switch {
	case err == nil:
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		final = true
	default:
		return fmt.Errorf("reading chunk %d: %w", d.index, err)
	}
	if final && have < chunkTagLen {
		return fmt.Errorf("%w: chunk %d truncated or missing", ErrCorrupt, d.index)
	}
	clen := have
	if !final {
		clen = full
	}
	if d.index >= maxChunks {
		return fmt.Errorf("%w: stream too long", ErrCorrupt)
	}
	var look byte
	if !final {
		look = d.ct[full]
	}
	nonce, aad := d.c.set(d.index, final)
	pt, oerr := d.c.aead.Open(d.ct[:0], nonce, d.ct[:clen], aad)
	if oerr != nil {
		return fmt.Errorf("%w: chunk %d", ErrCorrupt, d.index)
	}
	d.pt = pt
	d.index++
	d.done = final
	if !final {
		// The lookahead byte starts the next chunk; pt aliases ct, so it moves to ct[0] only
		// once pt has been consumed.
		d.carry = true
		d.pending = look
	}
	return nil
}
