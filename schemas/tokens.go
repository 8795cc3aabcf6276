package schemas

import (
	"slices"
	"strconv"
	"strings"
)

// TokenPrefix starts every veil token (the encrypted view of one field), of any version. A string
// under data that starts with it is either a genuine token, passed through untouched, or a
// forgery.
//
// The token format has one definition, crypto/envelope: envelope.TokenPrefix ("veil:v1:") is the
// version this build writes and parses, and starts with TokenPrefix (TestTokenPrefixes holds them
// together). The two IsToken checks differ on purpose:
//   - IsToken here is the fail-closed check on what comes in: any "veil:" string is a token or a
//     forgery, so an unknown version ("veil:v9:…") or a mangled prefix is dead-lettered as
//     ReasonForgedToken on input, refused by the analytics sink and redacted by egress, never
//     sealed as plaintext or passed on as if it were data;
//   - envelope.IsToken only recognises the version it can parse: it decides what is opened
//     (reveal, console) or passed through untouched as a token (pipeline, blobs).
const TokenPrefix = "veil:"

// IsToken reports whether s looks like a veil token of any version (has TokenPrefix). It does not
// check that the token parses; see TokenPrefix for why envelope.IsToken is narrower.
func IsToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// ScanTokens checks every string value under data that starts with TokenPrefix with valid (the
// pipeline passes a token parser). It returns ok=false when any check fails (ReasonForgedToken),
// with the field to report: the first of known (registry paths, such as "data.fields") that holds
// the failing value, or "data". It never reports a member name found inside data, which could be
// data itself (a form field named after its value); that is what known is for: names veil chose.
// A member name that starts with TokenPrefix fails too, whatever valid says: names are never
// sealed or redacted, so a token there would reach every view as it is.
func ScanTokens(e *Entry, valid func(string) bool, known ...string) (field string, ok bool) {
	if e.Data == nil {
		return "", true
	}
	s := tokenScan{valid: valid, known: known, stack: make([]string, 1, 8)}
	s.stack[0] = "data"
	s.walk(e.Data)
	return s.bad, !s.found
}

// TokenOutsideData returns the name of the first field outside data whose value starts with
// TokenPrefix: ids, modes, kinds and sensitive_paths are never sealed, so a token there would
// reach every view as it is (issue: a genuine token copied into user.id reached redacted.*).
func TokenOutsideData(e *Entry) (field string, found bool) {
	fields := []struct{ name, val string }{
		{"id", e.ID}, {"thread.id", e.Thread.ID}, {"thread.mode", e.Thread.Mode},
		{"user.id", e.User.ID}, {"user.type", e.User.Type},
	}
	if e.Component != nil {
		fields = append(fields, struct{ name, val string }{"component.id", e.Component.ID})
	}
	if e.Trigger != nil {
		fields = append(fields, struct{ name, val string }{"trigger.entry_id", e.Trigger.EntryID})
	}
	for _, f := range fields {
		if IsToken(f.val) {
			return f.name, true
		}
	}
	for _, p := range e.SensitivePaths {
		if IsToken(p) {
			return "sensitive_paths", true
		}
	}
	return "", false
}

type tokenScan struct {
	valid func(string) bool
	known []string
	stack []string
	found bool
	bad   string
}

func (s *tokenScan) walk(v any) {
	switch c := v.(type) {
	case string:
		if IsToken(c) && !s.valid(c) {
			s.fail()
		}
	case map[string]any:
		for k, x := range c {
			s.stack = append(s.stack, k)
			if IsToken(k) {
				s.fail()
			}
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

// fail records a failure at the current path.
func (s *tokenScan) fail() {
	p := s.report()
	if !s.found || p < s.bad {
		s.bad = p
	}
	s.found = true
}

// report is the field reported for a failing value at the current path: the known path that
// holds it, or "data".
func (s *tokenScan) report() string {
	for _, k := range s.known {
		segs := strings.Split(k, ".")
		if len(segs) <= len(s.stack) && slices.Equal(segs, s.stack[:len(segs)]) {
			return k
		}
	}
	return "data"
}
