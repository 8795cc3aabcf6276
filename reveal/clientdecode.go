package reveal

import (
	"bytes"
	"encoding/json"

	"github.com/go-json-experiment/json/jsontext"
)

// appendRevealRequest appends json.Marshal(revealRequest{Tokens: tokens}), byte for byte (a
// test compares them), without reflection.
func appendRevealRequest(dst []byte, tokens []string) []byte {
	if tokens == nil {
		return append(dst, `{"tokens":null}`...)
	}
	dst = append(dst, `{"tokens":[`...)
	for i, t := range tokens {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendSafeString(dst, t)
	}
	return append(dst, "]}"...)
}

// decodeRevealResponse reads a reveal answer as json.Unmarshal into revealResponse does. The
// shape the API writes — {"results":[{"status":"ok","value":…},…]}, compact, in that order —
// is read in one pass, its values copied into one buffer; any other input goes to
// encoding/json, which defines what the client accepts (a test compares the two on every answer
// the fast path takes).
func decodeRevealResponse(b []byte) ([]Result, error) {
	if rs, ok := decodeCanonicalResponse(b); ok {
		return rs, nil
	}
	var out revealResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// knownStatuses are the statuses the API answers, kept as constants so decoding them does not
// allocate.
var knownStatuses = []Status{StatusOK, StatusExpired, StatusDenied, StatusInvalid}

// decodeCanonicalResponse is decodeRevealResponse's one-pass reading; false means "not that
// shape", not "invalid".
func decodeCanonicalResponse(b []byte) ([]Result, bool) {
	const head, status, value = `{"results":[`, `{"status":"`, `,"value":`
	if !bytes.HasPrefix(b, []byte(head)) {
		return nil, false
	}
	i := len(head)
	type item struct {
		status     Status
		start, end int // the value's bytes in b; start == end: no value
	}
	var items []item
	size := 0
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			if !bytes.HasPrefix(b[i:], []byte(status)) {
				return nil, false
			}
			i += len(status)
			j := i
			for j < len(b) && 'a' <= b[j] && b[j] <= 'z' {
				j++
			}
			if j >= len(b) || b[j] != '"' {
				return nil, false
			}
			it := item{status: statusOf(b[i:j])}
			i = j + 1
			if bytes.HasPrefix(b[i:], []byte(value)) {
				i += len(value)
				end, ok := valueEnd(b, i)
				if !ok {
					return nil, false
				}
				it.start, it.end = i, end
				size += end - i
				i = end
			}
			if i >= len(b) || b[i] != '}' {
				return nil, false
			}
			items = append(items, it)
			i++
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			if i >= len(b) || b[i] != ',' {
				return nil, false
			}
			i++
		}
	}
	if i >= len(b) || b[i] != '}' || skipSpace(b, i+1) != len(b) {
		return nil, false
	}
	rs := make([]Result, len(items))
	vals := make([]byte, 0, size)
	for k, it := range items {
		rs[k].Status = it.status
		if it.end > it.start {
			n := len(vals)
			vals = append(vals, b[it.start:it.end]...)
			rs[k].Value = vals[n:len(vals):len(vals)]
		}
	}
	return rs, true
}

func statusOf(b []byte) Status {
	for _, s := range knownStatuses {
		if string(s) == string(b) {
			return s
		}
	}
	return Status(b)
}

// valueEnd returns where the JSON value starting at b[i] ends, when it is one the fast path
// takes: a string verbatimString is sure of, or any other value jsontext finds valid (as
// encoding/json reads it: invalid UTF-8 and duplicate names allowed) with no whitespace outside
// its strings.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	if b[i] == '"' {
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if b[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(b) {
			return 0, false
		}
		if ok, sure := verbatimString(b[i : j+1]); !ok || !sure {
			return 0, false
		}
		return j + 1, true
	}
	depth, inString, escaped := 0, false, false
	j := i
scan:
	for ; j < len(b); j++ {
		c := b[j]
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{', c == '[':
			depth++
		case c == '}', c == ']':
			if depth == 0 {
				break scan
			}
			depth--
			if depth == 0 {
				j++
				break scan
			}
		case c == ',' && depth == 0:
			break scan
		case c == ' ', c == '\t', c == '\n', c == '\r':
			return 0, false
		}
	}
	if j == i || !jsontext.Value(b[i:j]).IsValid(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)) {
		return 0, false
	}
	return j, true
}
