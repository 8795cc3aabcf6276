package schemas

import (
	"strconv"
	"strings"
)

// TokenPrefix starts every veil token (the encrypted view of one field). A string under data that
// starts with it is either a genuine token, passed through untouched, or a forgery.
const TokenPrefix = "veil:"

// IsToken reports whether s looks like a veil token (has TokenPrefix). It does not check that
// the token parses.
func IsToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// ScanTokens checks every string value under data that starts with TokenPrefix with valid (the
// pipeline passes a token parser). It returns ok=false and the dotted path of the failing value
// that sorts first when any check fails (ReasonForgedToken). Map keys are not values and are not
// checked. The path holds member names from the input, never a value.
func ScanTokens(e *Entry, valid func(string) bool) (field string, ok bool) {
	if e.Data == nil {
		return "", true
	}
	s := tokenScan{valid: valid, stack: make([]string, 1, 8)}
	s.stack[0] = "data"
	s.walk(e.Data)
	return s.bad, !s.found
}

type tokenScan struct {
	valid func(string) bool
	stack []string
	found bool
	bad   string
}

func (s *tokenScan) walk(v any) {
	switch c := v.(type) {
	case string:
		if IsToken(c) && !s.valid(c) {
			p := strings.Join(s.stack, ".")
			if !s.found || p < s.bad {
				s.bad = p
			}
			s.found = true
		}
	case map[string]any:
		for k, x := range c {
			s.stack = append(s.stack, k)
			s.walk(x)
			s.stack = s.stack[:len(s.stack)-1]
		}
	case []any:
		for i, x := range c {
			s.stack = append(s.stack, strconv.Itoa(i))
			s.walk(x)
			s.stack = s.stack[:len(s.stack)-1]
		}
	}
}
