package schemas

import (
	"errors"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// encodeOptions sort map keys so that one entry always encodes to the same bytes: replays of an
// entry then produce identical encrypted and redacted records.
var encodeOptions = json.Deterministic(true)

// Encode returns the JSON form of e. Decode(Encode(e)) equals e for every entry Decode returns.
// It encodes into a pooled buffer and allocates only the exactly sized result.
func (e *Entry) Encode() ([]byte, error) {
	b, err := json.Marshal(e, encodeOptions)
	if err != nil {
		return nil, encodeErr(err)
	}
	return b, nil
}

// AppendEncode appends the JSON form of e to dst. Errors name the field only (for example a
// string that is not valid UTF-8 or a value of a type JSON cannot hold), never the value.
func (e *Entry) AppendEncode(dst []byte) ([]byte, error) {
	b, err := json.Marshal(e, encodeOptions)
	if err != nil {
		return dst, encodeErr(err)
	}
	return append(dst, b...), nil
}

func encodeErr(err error) error {
	var serr *json.SemanticError
	field := ""
	if errors.As(err, &serr) {
		field = fieldOf(serr.JSONPointer)
	}
	if field == "" {
		return errors.New("encoding entry: unencodable value")
	}
	return errors.New("encoding entry: unencodable value in " + field)
}

// AppendHead appends the JSON form of e as Encode writes it, without data and without the
// closing brace: Encode writes data last, so a transform that rewrites data's text writes the
// head, then `,"data":` and the text, then '}', and gets Encode's bytes for everything but data.
// It allocates nothing beyond growing dst. e must be an entry Decode (or Scanner.Scan) returned,
// so its strings are valid UTF-8 and its timestamp in RFC 3339's range.
func (e *Entry) AppendHead(dst []byte) []byte {
	b := append(dst, `{"id":`...)
	b = appendQuoted(b, e.ID)
	b = append(b, `,"app_id":`...)
	b = appendQuoted(b, e.AppID)
	b = append(b, `,"ledger":`...)
	b = appendQuoted(b, e.Ledger)
	b = append(b, `,"type":`...)
	b = appendQuoted(b, e.Type)
	b = append(b, `,"ts":"`...)
	b = e.TS.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.Thread != (Thread{}) {
		b = append(b, `,"thread":`...)
		b = appendPair(b, "id", e.Thread.ID, "mode", e.Thread.Mode)
	}
	if e.User != (User{}) {
		b = append(b, `,"user":`...)
		b = appendPair(b, "id", e.User.ID, "type", e.User.Type)
	}
	if e.Sensitive != nil {
		b = append(b, `,"sensitive":`...)
		b = strconv.AppendBool(b, *e.Sensitive)
	}
	if len(e.SensitivePaths) > 0 {
		b = append(b, `,"sensitive_paths":[`...)
		for i, p := range e.SensitivePaths {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendQuoted(b, p)
		}
		b = append(b, ']')
	}
	if c := e.Component; c != nil {
		b = append(b, `,"component":{`...)
		sep := false
		if c.ID != "" {
			b = append(b, `"id":`...)
			b = appendQuoted(b, c.ID)
			sep = true
		}
		if c.Sensitive != nil {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"sensitive":`...)
			b = strconv.AppendBool(b, *c.Sensitive)
		}
		b = append(b, '}')
	}
	if tr := e.Trigger; tr != nil {
		b = append(b, `,"trigger":{`...)
		if tr.EntryID != "" {
			b = append(b, `"entry_id":`...)
			b = appendQuoted(b, tr.EntryID)
			b = append(b, ',')
		}
		// omitempty omits empty JSON values ("", null, {}, []), and false is none of them.
		b = append(b, `"sensitive":`...)
		b = strconv.AppendBool(b, tr.Sensitive)
		b = append(b, '}')
	}
	return b
}

// appendPair appends an object of two string members, each omitted when empty.
func appendPair(b []byte, n1, v1, n2, v2 string) []byte {
	b = append(b, '{')
	if v1 != "" {
		b = append(b, '"')
		b = append(b, n1...)
		b = append(b, `":`...)
		b = appendQuoted(b, v1)
		if v2 != "" {
			b = append(b, ',')
		}
	}
	if v2 != "" {
		b = append(b, '"')
		b = append(b, n2...)
		b = append(b, `":`...)
		b = appendQuoted(b, v2)
	}
	return append(b, '}')
}

// appendQuoted appends s as a JSON string, escaped as Marshal escapes it. s is valid UTF-8 (it
// was decoded), so quoting cannot fail; if it did, the string would be written empty rather than
// as invalid JSON.
func appendQuoted(b []byte, s string) []byte {
	out, err := jsontext.AppendQuote(b, s)
	if err != nil {
		return append(b, `""`...)
	}
	return out
}
