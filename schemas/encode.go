package schemas

import (
	"bytes"
	"errors"

	"github.com/go-json-experiment/json"
)

// encodeOptions sort map keys so that one entry always encodes to the same bytes: replays of an
// entry then produce identical encrypted and redacted records.
var encodeOptions = json.Deterministic(true)

// Encode returns the JSON form of e. Decode(Encode(e)) equals e for every entry Decode returns.
func (e *Entry) Encode() ([]byte, error) {
	return e.AppendEncode(nil)
}

// AppendEncode appends the JSON form of e to dst. Errors name the field only (for example a
// string that is not valid UTF-8 or a value of a type JSON cannot hold), never the value.
func (e *Entry) AppendEncode(dst []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := json.MarshalWrite(buf, e, encodeOptions); err != nil {
		var serr *json.SemanticError
		field := ""
		if errors.As(err, &serr) {
			field = fieldOf(serr.JSONPointer)
		}
		if field == "" {
			return dst, errors.New("encoding entry: unencodable value")
		}
		return dst, errors.New("encoding entry: unencodable value in " + field)
	}
	return buf.Bytes(), nil
}
