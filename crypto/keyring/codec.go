package keyring

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MaxEncodedKeySize bounds an encoded WrappedKey; DecodeKey refuses anything larger.
const MaxEncodedKeySize = maxKeyFileSize

// EncodeKey returns the stored form of k shared by every KeyStore: the JSON of a key file.
func EncodeKey(k WrappedKey) ([]byte, error) {
	if err := ValidateApp(k.App); err != nil {
		return nil, err
	}
	b, err := json.Marshal(keyFile{
		Version: keyFileVersion, App: k.App, Period: k.Period, KeyID: k.KeyID,
		Ciphertext: k.Ciphertext, DestroyAt: k.DestroyAt.UTC(), Erased: k.Erased,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return b, nil
}

// DecodeKey parses what EncodeKey returned for the key of (app, period), refusing a value that is
// too large, of another version, names another key, or is neither a key nor a tombstone.
func DecodeKey(b []byte, app string, period int64) (WrappedKey, error) {
	if len(b) > maxKeyFileSize {
		return WrappedKey{}, fmt.Errorf("decoding key: larger than %d bytes", maxKeyFileSize)
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return WrappedKey{}, fmt.Errorf("decoding key: %w", err)
	}
	switch {
	case kf.Version != keyFileVersion:
		return WrappedKey{}, fmt.Errorf("decoding key: unsupported version %d", kf.Version)
	case kf.App != app || kf.Period != period:
		return WrappedKey{}, errors.New("decoding key: app or period does not match its name")
	case kf.Erased && len(kf.Ciphertext) != 0:
		return WrappedKey{}, errors.New("decoding key: tombstone with ciphertext")
	case !kf.Erased && len(kf.Ciphertext) == 0:
		return WrappedKey{}, errors.New("decoding key: empty ciphertext")
	}
	return WrappedKey{App: kf.App, Period: kf.Period, KeyID: kf.KeyID, Ciphertext: kf.Ciphertext, DestroyAt: kf.DestroyAt, Erased: kf.Erased}, nil
}
