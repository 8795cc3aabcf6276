package schemas

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// rawEntry is Entry with data left as JSON text. Its members and their order match Entry, so
// both decode the same inputs under the same rules.
type rawEntry struct {
	ID             string         `json:"id"`
	AppID          string         `json:"app_id"`
	Ledger         string         `json:"ledger"`
	Type           string         `json:"type"`
	TS             time.Time      `json:"ts"`
	Thread         Thread         `json:"thread,omitzero"`
	User           User           `json:"user,omitzero"`
	Sensitive      *bool          `json:"sensitive,omitempty"`
	SensitivePaths []string       `json:"sensitive_paths,omitempty"`
	Component      *Component     `json:"component,omitempty"`
	Trigger        *Trigger       `json:"trigger,omitempty"`
	Data           jsontext.Value `json:"data,omitempty"`
}

// DecodeRaw is Decode without decoding data: it applies the same limits and rules to the same
// input (data is checked for syntax, UTF-8, duplicate names and depth) and returns the entry with
// Data nil, plus data's JSON text. raw is nil when data is absent, null or empty, exactly when
// Decode's entry has Data nil; it aliases b. Use it with Locate and EncodeWithData to rewrite a few values of
// data without decoding the rest of it.
func DecodeRaw(b []byte, lim Limits) (e *Entry, raw []byte, err error) {
	maxBytes, maxDepth := lim.MaxBytes, lim.MaxDepth
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if len(b) > maxBytes {
		return nil, nil, decodeErr(ReasonTooLarge, "", int64(maxBytes))
	}
	if !utf8.Valid(b) {
		return nil, nil, decodeErr(ReasonInvalidUTF8, "", invalidUTF8Offset(b))
	}
	if off := depthExceeded(b, maxDepth); off >= 0 {
		return nil, nil, decodeErr(ReasonTooDeep, "", off)
	}
	var r rawEntry
	if err := decodeRawEntry(b, &r); err != nil {
		return nil, nil, mapJSONError(err)
	}
	switch r.Data.Kind() {
	case '{':
		if isEmptyObject(r.Data) {
			r.Data = nil
		}
	case 'n', 0:
		r.Data = nil
	default:
		// Decode fails to unmarshal a non-object into map[string]any.
		return nil, nil, decodeErr(ReasonInvalidField, "data", -1)
	}
	e = &Entry{
		ID: r.ID, AppID: r.AppID, Ledger: r.Ledger, Type: r.Type, TS: r.TS,
		Thread: r.Thread, User: r.User, Sensitive: r.Sensitive, SensitivePaths: r.SensitivePaths,
		Component: r.Component, Trigger: r.Trigger,
	}
	if err := e.validate(); err != nil {
		return nil, nil, err
	}
	e.normalize()
	return e, r.Data, nil
}

type rawDecoder struct {
	in  bytes.Buffer
	dec jsontext.Decoder
}

var rawDecoderPool = sync.Pool{New: func() any { return new(rawDecoder) }}

// decodeRawEntry is json.Unmarshal(b, r, decodeOptions) by hand: one token loop over the entry's
// members, which are few, known and mostly strings, instead of the library's reflection over the
// struct. The decoder checks the grammar, UTF-8 and duplicate names at every level as Unmarshal's
// does; the small nested objects, ts and the optional members are unmarshaled by the library on
// the same decoder, so they follow exactly its rules. r.Data aliases b.
func decodeRawEntry(b []byte, r *rawEntry) error {
	rd := rawDecoderPool.Get().(*rawDecoder)
	defer func() {
		rd.in = bytes.Buffer{}
		rd.dec.Reset(&rd.in) // drop the reference to b
		rawDecoderPool.Put(rd)
	}()
	rd.in = *bytes.NewBuffer(b)
	dec := &rd.dec
	dec.Reset(&rd.in, decodeOptions)
	if dec.PeekKind() != '{' {
		// Not an object (or not JSON): the library reports it as Unmarshal would, and null, which
		// leaves the entry empty, fails validation.
		return json.UnmarshalDecode(dec, r)
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		switch name.String() {
		case "id":
			err = readString(dec, &r.ID)
		case "app_id":
			err = readString(dec, &r.AppID)
		case "ledger":
			err = readString(dec, &r.Ledger)
		case "type":
			err = readString(dec, &r.Type)
		case "data":
			var v jsontext.Value
			if v, err = dec.ReadValue(); err == nil {
				end := int(dec.InputOffset())
				r.Data = jsontext.Value(b[end-len(v) : end : end])
			}
		case "ts":
			err = json.UnmarshalDecode(dec, &r.TS)
		case "thread":
			err = readStrings(dec, "id", &r.Thread.ID, "mode", &r.Thread.Mode)
		case "user":
			err = readStrings(dec, "id", &r.User.ID, "type", &r.User.Type)
		case "sensitive_paths":
			err = readStringArray(dec, &r.SensitivePaths)
		case "sensitive":
			err = json.UnmarshalDecode(dec, &r.Sensitive)
		case "component":
			err = json.UnmarshalDecode(dec, &r.Component)
		case "trigger":
			err = json.UnmarshalDecode(dec, &r.Trigger)
		default:
			return &json.SemanticError{Err: json.ErrUnknownName}
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	return atEOF(dec)
}

var errTrailing = &jsontext.SyntacticError{ByteOffset: -1, Err: errors.New("invalid data after top-level value")}

// atEOF checks that only whitespace follows the entry.
func atEOF(dec *jsontext.Decoder) error {
	switch _, err := dec.ReadToken(); err {
	case io.EOF:
		return nil
	case nil:
		return errTrailing
	default:
		return err
	}
}

// readString reads a JSON string (or null, which leaves "") into s, as Unmarshal does for a string
// field; any other value is a semantic error.
func readString(dec *jsontext.Decoder, s *string) error {
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*s = tok.String()
		return nil
	case 'n':
		_, err := dec.ReadToken()
		*s = ""
		return err
	}
	return notA(dec, "a string")
}

// readStrings reads an object of at most two string members, named n1 and n2, into s1 and s2, as
// Unmarshal does for Thread and User: null leaves both empty, other names are unknown members.
func readStrings(dec *jsontext.Decoder, n1 string, s1 *string, n2 string, s2 *string) error {
	switch dec.PeekKind() {
	case '{':
	case 'n':
		_, err := dec.ReadToken()
		*s1, *s2 = "", ""
		return err
	default:
		return notA(dec, "an object")
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		switch name.String() {
		case n1:
			err = readString(dec, s1)
		case n2:
			err = readString(dec, s2)
		default:
			return &json.SemanticError{Err: json.ErrUnknownName}
		}
		if err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// readStringArray reads an array of strings (null elements are ""), or null, into *ss.
func readStringArray(dec *jsontext.Decoder, ss *[]string) error {
	switch dec.PeekKind() {
	case '[':
	case 'n':
		_, err := dec.ReadToken()
		*ss = nil
		return err
	default:
		return notA(dec, "an array")
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	out := []string{}
	for dec.PeekKind() != ']' {
		var s string
		if err := readString(dec, &s); err != nil {
			return err
		}
		out = append(out, s)
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*ss = out
	return nil
}

// notA skips the value in the way (reporting a syntax error in it first) and returns the semantic
// error for a value of the wrong kind.
func notA(dec *jsontext.Decoder, kind string) error {
	if err := dec.SkipValue(); err != nil {
		return err
	}
	return &json.SemanticError{Err: errors.New("not " + kind)}
}

func isEmptyObject(v []byte) bool {
	v = bytes.TrimSpace(v)
	if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
		return false
	}
	return len(bytes.TrimSpace(v[1:len(v)-1])) == 0
}

// Span is the byte range [Start, End) of one value inside data's JSON text; Start is -1 when the
// path is absent.
type Span struct{ Start, End int }

var decoderPool = sync.Pool{New: func() any { return new(pooledDecoder) }}

type pooledDecoder struct {
	r   bytes.Reader
	dec jsontext.Decoder
}

// Locate finds the values at paths inside data's JSON text, one Span per path. ok is false when
// the text cannot be located in (it does not parse) or when the paths overlap (one is the other,
// or lies under it, or a path is data itself): then the caller must use the decoded entry.
func Locate(data []byte, paths []Path, spans []Span) (_ []Span, ok bool) {
	spans = spans[:0]
	for i, p := range paths {
		if len(p.segs) < 2 {
			return spans, false
		}
		for _, q := range paths[:i] {
			if p.Covers(q) || q.Covers(p) {
				return spans, false
			}
		}
		spans = append(spans, Span{-1, -1})
	}
	if len(data) == 0 || len(paths) == 0 {
		return spans, true
	}
	pd := decoderPool.Get().(*pooledDecoder)
	defer decoderPool.Put(pd)
	pd.r.Reset(data)
	pd.dec.Reset(&pd.r, jsontext.AllowDuplicateNames(true))
	var all [16]int
	cands := all[:0]
	for i := range paths {
		cands = append(cands, i)
	}
	w := locator{dec: &pd.dec, paths: paths, spans: spans}
	if err := w.walk(cands, 1); err != nil {
		return spans, false
	}
	pd.r.Reset(nil)
	return spans, true
}

type locator struct {
	dec   *jsontext.Decoder
	paths []Path
	spans []Span
}

// walk reads one value at depth (the number of path segments that lead to it, "data" being 1);
// cands are the paths whose first depth segments lead here.
func (w *locator) walk(cands []int, depth int) error {
	if len(cands) == 0 {
		return w.dec.SkipValue()
	}
	for _, i := range cands {
		if len(w.paths[i].segs) == depth {
			// Paths do not overlap, so this is the only candidate.
			v, err := w.dec.ReadValue()
			if err != nil {
				return err
			}
			end := int(w.dec.InputOffset())
			w.spans[i] = Span{end - len(v), end}
			return nil
		}
	}
	var buf [8]int
	switch w.dec.PeekKind() {
	case '{':
		if _, err := w.dec.ReadToken(); err != nil {
			return err
		}
		for w.dec.PeekKind() != '}' {
			name, err := w.dec.ReadToken()
			if err != nil {
				return err
			}
			n := name.String()
			sub := buf[:0]
			for _, i := range cands {
				if w.paths[i].segs[depth] == n {
					sub = append(sub, i)
				}
			}
			if err := w.walk(sub, depth+1); err != nil {
				return err
			}
		}
		_, err := w.dec.ReadToken()
		return err
	case '[':
		if _, err := w.dec.ReadToken(); err != nil {
			return err
		}
		for k := 0; w.dec.PeekKind() != ']'; k++ {
			sub := buf[:0]
			for _, i := range cands {
				if j, ok := index(w.paths[i].segs[depth]); ok && j == k {
					sub = append(sub, i)
				}
			}
			if err := w.walk(sub, depth+1); err != nil {
				return err
			}
		}
		_, err := w.dec.ReadToken()
		return err
	}
	return w.dec.SkipValue()
}
