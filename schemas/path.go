package schemas

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Bounds on a field path.
const (
	MaxPathBytes    = 256
	MaxPathSegments = 16
)

// ErrInvalidPath is returned (wrapped) by ParsePath. The message names the rule broken, never the
// path text, since producers supply paths.
var ErrInvalidPath = errors.New("invalid path")

// Path is a parsed dotted field path such as "data.items.0.text". It always starts at data. A
// numeric segment indexes an array; on an object it is an ordinary member name. The zero Path is
// not valid.
type Path struct {
	s    string
	segs []string // segs[0] == "data"
}

// ParsePath parses a dotted path. It must start with "data", have at most MaxPathSegments
// non-empty segments, be at most MaxPathBytes long and be valid UTF-8.
func ParsePath(s string) (Path, error) {
	if len(s) > MaxPathBytes {
		return Path{}, fmt.Errorf("parsing path: longer than %d bytes: %w", MaxPathBytes, ErrInvalidPath)
	}
	if !utf8.ValidString(s) {
		return Path{}, fmt.Errorf("parsing path: invalid UTF-8: %w", ErrInvalidPath)
	}
	if n := strings.Count(s, ".") + 1; n > MaxPathSegments {
		return Path{}, fmt.Errorf("parsing path: more than %d segments: %w", MaxPathSegments, ErrInvalidPath)
	}
	segs := strings.Split(s, ".")
	if segs[0] != "data" {
		return Path{}, fmt.Errorf("parsing path: does not start with data: %w", ErrInvalidPath)
	}
	for _, seg := range segs {
		if seg == "" {
			return Path{}, fmt.Errorf("parsing path: empty segment: %w", ErrInvalidPath)
		}
		if !printable(seg) {
			return Path{}, fmt.Errorf("parsing path: control character: %w", ErrInvalidPath)
		}
	}
	return Path{s: s, segs: segs}, nil
}

// MustParsePath is ParsePath for paths known at compile time; it panics on error.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the dotted form.
func (p Path) String() string { return p.s }

// IsZero reports whether p is the zero Path.
func (p Path) IsZero() bool { return len(p.segs) == 0 }

// Segments returns a copy of the segments, starting with "data".
func (p Path) Segments() []string { return slices.Clone(p.segs) }

// Covers reports whether q is p or lies under p.
func (p Path) Covers(q Path) bool {
	return len(p.segs) > 0 && len(q.segs) >= len(p.segs) && slices.Equal(p.segs, q.segs[:len(p.segs)])
}

// CoversString is Covers on dotted strings, without parsing.
func CoversString(p, q string) bool {
	return p == q || (len(q) > len(p) && strings.HasPrefix(q, p) && q[len(p)] == '.')
}

// index parses an array index segment: decimal digits without a leading zero, at most 9 digits.
func index(seg string) (int, bool) {
	if len(seg) == 0 || len(seg) > 9 || (len(seg) > 1 && seg[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// child steps from v into seg.
func child(v any, seg string) (any, bool) {
	switch c := v.(type) {
	case map[string]any:
		x, ok := c[seg]
		return x, ok
	case []any:
		i, ok := index(seg)
		if !ok || i >= len(c) {
			return nil, false
		}
		return c[i], true
	}
	return nil, false
}

// Get returns the value at p and whether it is present. For the path "data" it returns the data
// object itself.
func (e *Entry) Get(p Path) (any, bool) {
	if e.Data == nil || len(p.segs) == 0 {
		return nil, false
	}
	var cur any = e.Data
	for _, seg := range p.segs[1:] {
		var ok bool
		if cur, ok = child(cur, seg); !ok {
			return nil, false
		}
	}
	return cur, true
}

// Set replaces the value at p and reports whether it did. It never creates a value: an absent
// path is left absent and Set returns false. For the path "data" v must be a map[string]any.
func (e *Entry) Set(p Path, v any) bool {
	if e.Data == nil || len(p.segs) == 0 {
		return false
	}
	if len(p.segs) == 1 {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		e.Data = m
		return true
	}
	var cur any = e.Data
	for _, seg := range p.segs[1 : len(p.segs)-1] {
		var ok bool
		if cur, ok = child(cur, seg); !ok {
			return false
		}
	}
	last := p.segs[len(p.segs)-1]
	switch c := cur.(type) {
	case map[string]any:
		if _, ok := c[last]; !ok {
			return false
		}
		c[last] = v
		return true
	case []any:
		i, ok := index(last)
		if !ok || i >= len(c) {
			return false
		}
		c[i] = v
		return true
	}
	return false
}

// DataPaths returns one path per top-level member of data, in name order. When a whole data
// object must be sealed (an unknown type fails closed), sealing each of these paths replaces every
// value while keeping data an object. Members whose names cannot form a path ("", names with
// dots or control characters, overlong names) are returned as ok=false so callers fail closed.
func (e *Entry) DataPaths() (paths []Path, ok bool) {
	ok = true
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p, err := ParsePath("data." + k)
		if err != nil || len(p.segs) != 2 {
			ok = false
			continue
		}
		paths = append(paths, p)
	}
	return paths, ok
}
