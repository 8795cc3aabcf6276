package schemas

import (
	"errors"

	"github.com/go-json-experiment/json"
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
