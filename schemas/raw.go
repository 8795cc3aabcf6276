package schemas

import (
	"bytes"
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
// Decode's entry has Data nil. Use it with Locate and EncodeWithData to rewrite a few values of
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
	if err := json.Unmarshal(b, &r, decodeOptions); err != nil {
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
