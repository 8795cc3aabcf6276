package schemas

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/veil-project/veil/names"
)

// Bounds on the scalar fields of an entry. They keep identifiers usable as metric labels, topic
// names and store keys, and keep one entry from carrying a payload outside data.
const (
	MaxNameBytes      = names.MaxLen // id, app_id, ledger, type and the ids and kinds nested in them
	MaxSensitivePaths = 64
)

// The library's errors for text that is not valid UTF-8 are unexported; they are recognized by
// the start of their message, which is fixed text (input, if quoted, only follows it). Raw invalid
// bytes are caught before parsing, so in practice this is a lone surrogate escape ("\ud800").
var invalidUTF8Prefixes = []string{"invalid UTF-8", "invalid surrogate pair"}

// ErrInvalidEntry is returned (wrapped in a *DecodeError) when Decode rejects an entry.
// errors.Is(err, ErrInvalidEntry) holds for every *DecodeError.
var ErrInvalidEntry = errors.New("invalid entry")

// DecodeError is the error Decode returns. It names a reason and, where one applies, the field
// (a dotted name such as "thread.mode"; anything inside data is reported as "data"). It never
// holds input bytes or values, so it is safe to log and to put in a dead-letter record.
type DecodeError struct {
	Reason Reason
	Field  string // empty when the reason concerns the whole entry
	Offset int64  // byte offset at or after which the problem was found; -1 if unknown
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "decoding entry: " + string(e.Reason)
	}
	return "decoding entry: " + string(e.Reason) + ": " + e.Field
}

// Is reports whether target is ErrInvalidEntry.
func (e *DecodeError) Is(target error) bool { return target == ErrInvalidEntry }

func decodeErr(r Reason, field string, off int64) *DecodeError {
	return &DecodeError{Reason: r, Field: field, Offset: off}
}

// decodeOptions are the strict settings: duplicate names and invalid UTF-8 stay rejected (the
// library defaults) and members unknown to the Entry structs are rejected as well. Members inside
// data are free-form.
var decodeOptions = json.JoinOptions(
	json.RejectUnknownMembers(true),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// admit applies the defaults to lim's zero (or negative) limits, refuses an entry b larger than
// the byte limit, and returns the depth limit. Decode and Scanner.Scan both start here.
func (lim Limits) admit(b []byte) (maxDepth int, err error) {
	maxBytes, maxDepth := lim.MaxBytes, lim.MaxDepth
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if len(b) > maxBytes {
		return 0, decodeErr(ReasonTooLarge, "", int64(maxBytes))
	}
	return maxDepth, nil
}

// Decode parses one entry strictly. The checks run cheapest first: size, UTF-8, nesting depth
// (a bounded scan that never recurses), then a single parse into Entry, then the field rules.
// Every failure is a *DecodeError.
func Decode(b []byte, lim Limits) (*Entry, error) {
	maxDepth, err := lim.admit(b)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, decodeErr(ReasonInvalidUTF8, "", invalidUTF8Offset(b))
	}
	if off := depthExceeded(b, maxDepth); off >= 0 {
		return nil, decodeErr(ReasonTooDeep, "", off)
	}
	e := new(Entry)
	if err := json.Unmarshal(b, e, decodeOptions); err != nil {
		return nil, mapJSONError(err)
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	e.normalize()
	return e, nil
}

func invalidUTF8Offset(b []byte) int64 {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return int64(i)
		}
		i += n
	}
	return -1
}

// depthExceeded returns the offset of the first bracket that opens nesting level maxDepth+1, or
// -1. It only tracks strings and brackets; the parser that follows checks the grammar. It is one
// pass over b with no recursion, so a hostile "[[[[…" costs O(len(b)).
func depthExceeded(b []byte, maxDepth int) int64 {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Skip the string body. A backslash always escapes exactly the next byte, so a quote
			// ends the string when an even number of backslashes precedes it.
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return -1 // unterminated string: the parser reports it
				}
				start := i
				i += 1 + j
				k := i - 1
				for k > start && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{', '[':
			depth++
			if depth > maxDepth {
				return int64(i)
			}
		case '}', ']':
			depth--
		}
	}
	return -1
}

// mapJSONError turns a library error into a DecodeError without carrying over any of its text,
// which may quote input.
func mapJSONError(err error) *DecodeError {
	var serr *jsontext.SyntacticError
	if errors.As(err, &serr) {
		field := fieldOf(serr.JSONPointer)
		switch {
		case serr.Err == jsontext.ErrDuplicateName:
			return decodeErr(ReasonDuplicateKey, field, serr.ByteOffset)
		case serr.Err != nil && hasAnyPrefix(serr.Err.Error(), invalidUTF8Prefixes):
			return decodeErr(ReasonInvalidUTF8, field, serr.ByteOffset)
		}
		return decodeErr(ReasonMalformedJSON, "", serr.ByteOffset)
	}
	var merr *json.SemanticError
	if errors.As(err, &merr) {
		if merr.Err == json.ErrUnknownName {
			// The unknown name itself is input; report only the object that holds it.
			return decodeErr(ReasonUnknownField, fieldOf(merr.JSONPointer.Parent()), merr.ByteOffset)
		}
		// A syntax problem found while unmarshaling into a typed field still surfaces as
		// a SyntacticError inside Err.
		if errors.As(merr.Err, &serr) {
			return mapJSONError(serr)
		}
		return decodeErr(ReasonInvalidField, fieldOf(merr.JSONPointer), merr.ByteOffset)
	}
	return decodeErr(ReasonMalformedJSON, "", -1)
}

// knownFields maps each object of the entry structure to the member names it declares. Only these
// names ever appear in a DecodeError field.
var knownFields = map[string]map[string]bool{
	"": {
		"id": true, "app_id": true, "ledger": true, "type": true, "ts": true, "thread": true,
		"user": true, "sensitive": true, "sensitive_paths": true, "component": true,
		"trigger": true, "data": true,
	},
	"thread":    {"id": true, "mode": true},
	"user":      {"id": true, "type": true},
	"component": {"id": true, "sensitive": true},
	"trigger":   {"entry_id": true, "sensitive": true},
}

// fieldOf names the deepest declared field on a JSON pointer. Names inside data and array indexes
// are dropped, so the result is always one of a fixed set of names.
func fieldOf(p jsontext.Pointer) string {
	field := ""
	for tok := range p.Tokens() {
		names, ok := knownFields[field]
		if !ok || !names[tok] {
			break
		}
		if field == "" {
			field = tok
		} else {
			field += "." + tok
		}
		if tok == "data" || tok == "sensitive_paths" {
			break
		}
	}
	return field
}

func (e *Entry) validate() *DecodeError {
	required := []struct {
		name string
		val  string
		rule func(string) bool
	}{
		{"id", e.ID, printable},
		{"app_id", e.AppID, names.Valid},
		{"ledger", e.Ledger, names.Valid},
		{"type", e.Type, names.Valid},
	}
	for _, f := range required {
		if f.val == "" {
			return decodeErr(ReasonMissingField, f.name, -1)
		}
		if len(f.val) > MaxNameBytes || !f.rule(f.val) {
			return decodeErr(ReasonInvalidField, f.name, -1)
		}
	}
	if e.TS.IsZero() {
		return decodeErr(ReasonMissingField, "ts", -1)
	}
	if y := e.TS.UTC().Year(); y < 1 || y > 9999 {
		// RFC 3339 has four-digit years: an offset can push year 0000 or 9999 out of range in UTC,
		// and such a time could not be written back into the entry's views.
		return decodeErr(ReasonInvalidField, "ts", -1)
	}
	optional := []struct {
		name string
		val  string
	}{
		{"thread.id", e.Thread.ID},
		{"thread.mode", e.Thread.Mode},
		{"user.id", e.User.ID},
		{"user.type", e.User.Type},
	}
	if e.Component != nil {
		optional = append(optional, struct{ name, val string }{"component.id", e.Component.ID})
	}
	if e.Trigger != nil {
		optional = append(optional, struct{ name, val string }{"trigger.entry_id", e.Trigger.EntryID})
	}
	for _, f := range optional {
		if len(f.val) > MaxNameBytes || !printable(f.val) {
			return decodeErr(ReasonInvalidField, f.name, -1)
		}
	}
	if len(e.SensitivePaths) > MaxSensitivePaths {
		return decodeErr(ReasonInvalidField, "sensitive_paths", -1)
	}
	for _, s := range e.SensitivePaths {
		if _, err := ParsePath(s); err != nil {
			return decodeErr(ReasonInvalidField, "sensitive_paths", -1)
		}
	}
	return nil
}

// normalize gives every decoded entry one canonical in-memory form, so that
// Decode(Encode(e)) is equal to e: time in UTC, and empty optional parts absent.
func (e *Entry) normalize() {
	e.TS = e.TS.UTC()
	if len(e.SensitivePaths) == 0 {
		e.SensitivePaths = nil
	}
	if e.Component != nil && *e.Component == (Component{}) {
		e.Component = nil
	}
	if e.Trigger != nil && *e.Trigger == (Trigger{}) {
		e.Trigger = nil
	}
	if len(e.Data) == 0 {
		e.Data = nil
	}
}

// printable reports whether s has no control characters (s is already valid UTF-8).
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
