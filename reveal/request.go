package reveal

import (
	"bytes"
	"encoding/json"
)

// decodeRevealRequest reads a reveal request body: {"tokens": [...]} and nothing else (any
// other field is an error), as encoding/json's Decoder with DisallowUnknownFields reads it. ok is
// false when the body is not such a request. tokens is nil for a body whose tokens are null or
// absent, or that is null itself.
//
// A body in the shape clients send — {"tokens":[...]} with that exact key, tokens of plain
// printable ASCII (no escapes) and only JSON whitespace around — is read in one pass, and its
// tokens are substrings of one string copy of the body: one allocation for all of them. Any
// other body (escapes, other casing of the key, null, duplicate keys, trailing data...) goes to
// encoding/json, which defines what the API accepts; a test compares the two on every body the
// fast path takes.
func decodeRevealRequest(body []byte) (tokens []string, ok bool) {
	if toks, ok := decodeCanonicalRequest(body); ok {
		return toks, true
	}
	return decodeWithEncodingJSON(body)
}

// decodeWithEncodingJSON reads body with encoding/json's Decoder and DisallowUnknownFields: the
// definition of what the API accepts, and the reference the fast path is tested against.
func decodeWithEncodingJSON(body []byte) ([]string, bool) {
	var req revealRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return nil, false
	}
	return req.Tokens, true
}

// decodeCanonicalRequest is decodeRevealRequest's one-pass reading of the usual shape; false
// means "not that shape", not "invalid".
func decodeCanonicalRequest(body []byte) ([]string, bool) {
	i := skipSpace(body, 0)
	const head = `"tokens"`
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	if !bytes.HasPrefix(body[i:], []byte(head)) {
		return nil, false
	}
	i = skipSpace(body, i+len(head))
	if i >= len(body) || body[i] != ':' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	if i >= len(body) || body[i] != '[' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	// Spans of the tokens in body, then one string for all of them.
	var spans [][2]int
	if i < len(body) && body[i] == ']' {
		i++
	} else {
		for {
			if i >= len(body) || body[i] != '"' {
				return nil, false
			}
			start := i + 1
			j := start
			for j < len(body) && body[j] != '"' {
				if c := body[j]; c < 0x20 || c >= 0x7f || c == '\\' {
					return nil, false
				}
				j++
			}
			if j >= len(body) {
				return nil, false
			}
			spans = append(spans, [2]int{start, j})
			i = skipSpace(body, j+1)
			if i >= len(body) {
				return nil, false
			}
			if body[i] == ']' {
				i++
				break
			}
			if body[i] != ',' {
				return nil, false
			}
			i = skipSpace(body, i+1)
		}
	}
	i = skipSpace(body, i)
	if i >= len(body) || body[i] != '}' {
		return nil, false
	}
	if skipSpace(body, i+1) != len(body) {
		return nil, false
	}
	toks := make([]string, len(spans))
	if len(spans) > 0 {
		s := string(body[spans[0][0]:spans[len(spans)-1][1]])
		base := spans[0][0]
		for k, sp := range spans {
			toks[k] = s[sp[0]-base : sp[1]-base]
		}
	}
	return toks, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
