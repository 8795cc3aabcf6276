package reveal

import (
	"encoding/json"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// appendRevealResponse appends the JSON of revealResponse{Results: results} to dst, byte for byte
// what json.Marshal writes (a test compares them on hostile values), without its two scans of
// every value (checkValid, then appendCompact) and without reflection: a value that is valid,
// compact JSON holding nothing encoding/json escapes for HTML is copied as it is, after one
// validating pass; any other value goes through json.Marshal, which compacts and escapes it. An
// invalid value is an error, as it is for json.Marshal.
func appendRevealResponse(dst []byte, results []Result) ([]byte, error) {
	if results == nil {
		return append(dst, `{"results":null}`...), nil
	}
	dst = append(dst, `{"results":[`...)
	for i, r := range results {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"status":`...)
		dst = appendSafeString(dst, string(r.Status))
		if len(r.Value) > 0 {
			dst = append(dst, `,"value":`...)
			if verbatimJSON(r.Value) {
				dst = append(dst, r.Value...)
			} else {
				b, err := json.Marshal(r.Value)
				if err != nil {
					return dst, err
				}
				dst = append(dst, b...)
				clear(b)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...), nil
}

// appendSafeString appends s quoted as encoding/json does. The statuses are plain ASCII words;
// anything else is quoted by json.Marshal.
func appendSafeString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// verbatimJSON reports whether encoding/json would marshal v, a json.RawMessage, unchanged: v is
// valid JSON (as encoding/json reads it: invalid UTF-8 and duplicate names allowed), has no
// whitespace outside strings, and has none of the characters it escapes for HTML (<, >, &,
// U+2028, U+2029).
func verbatimJSON(v []byte) bool {
	if len(v) >= 2 && v[0] == '"' {
		// Most values are strings: check them without a JSON decoder.
		if ok, sure := verbatimString(v); sure {
			return ok
		}
	}
	inString, escaped := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inString:
			escaped = true
		case c == '"':
			inString = !inString
		case c == '<', c == '>', c == '&':
			return false
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8:
			return false
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return jsontext.Value(v).IsValid(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
}

// bodyBufs holds request and response body buffers between requests. A buffer is cleared before
// it is put back (putBody): it held tokens or plaintext values.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBody bounds the buffers kept: a rare huge body is left to the GC.
const maxPooledBody = 64 << 10

// putBody clears b, the buffer last taken from *bp (perhaps grown), and pools it.
func putBody(bp *[]byte, b []byte) {
	clear(b[:cap(b)])
	if cap(b) <= maxPooledBody {
		*bp = b[:0]
		bodyBufs.Put(bp)
	}
}

// readBody reads r to its end into b[:0], growing it as io.ReadAll does; size is the declared
// length (-1 when unknown), which sizes the buffer once when it is at most 1 MiB (a larger
// declared length is not trusted with an allocation before the bytes arrive).
func readBody(r io.Reader, b []byte, size int64) ([]byte, error) {
	b = b[:0]
	if size >= 0 && size <= 1<<20 && int64(cap(b)) <= size {
		b = make([]byte, 0, size+1) // +1: reading the end must not grow it
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// Header values the reveal answer shares between requests: net/http copies a handler's header
// before writing it and never changes the slices, and nothing appends to them in place (their
// capacity is their length).
var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
)

// verbatimString answers verbatimJSON for v, which starts with a quote, when it is sure: a single
// JSON string (valid escapes, no control character; encoding/json does not check UTF-8) that
// holds nothing escaped for HTML is verbatim; one with a control character or a bad escape is not
// valid. Anything else (a quote before the end, <, >, &, U+2028, U+2029) is left to the general
// check.
func verbatimString(v []byte) (ok, sure bool) {
	end := len(v) - 1
	if v[end] != '"' {
		return false, false
	}
	for i := 1; i < end; i++ {
		switch c := v[i]; {
		case c < 0x20:
			return false, true
		case c == '"', c == '<', c == '>', c == '&':
			return false, false
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8: // U+2028, U+2029
			return false, false
		case c == '\\':
			if i+1 >= end {
				return false, false
			}
			i++
			switch v[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= end || !isHex(v[i+1]) || !isHex(v[i+2]) || !isHex(v[i+3]) || !isHex(v[i+4]) {
					return false, false
				}
				i += 4
			default:
				return false, true
			}
		}
	}
	return true, true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
