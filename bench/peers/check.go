package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
)

type checked struct{ sensitive, fields int }

// check runs every entry through veil and the Benthos mappings and fails unless, entry by entry,
// both mark the entry sensitive alike, seal exactly the same data keys in the encrypted view,
// redact exactly the same keys in the redacted view, and every Benthos ciphertext opens (with its
// nonce and the key) to the JSON of the value it replaced.
func check(ctx context.Context, tr *pipeline.Transformer, encExec, redExec *bloblang.Executor, key []byte,
	entries []sample.Entry, src func(int) pipeline.Source) (checked, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return checked{}, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return checked{}, err
	}
	var st checked
	for i, e := range entries {
		out, err := tr.Transform(ctx, src(i), e.Key, e.Value)
		if err != nil {
			return st, fmt.Errorf("entry %d: veil: %w", i, err)
		}
		if out.DeadLetter != nil {
			return st, fmt.Errorf("entry %d: veil dead-lettered it (%s)", i, out.Reason)
		}
		eb, rb, err := benthosViews(encExec, redExec, e.Value)
		if err != nil {
			return st, fmt.Errorf("entry %d: benthos: %w", i, err)
		}
		var orig, vEnc, vRed, bEnc, bRed map[string]any
		for _, d := range []struct {
			b []byte
			v *map[string]any
		}{{e.Value, &orig}, {out.Encrypted.Value, &vEnc}, {out.Redacted.Value, &vRed}, {eb, &bEnc}, {rb, &bRed}} {
			if err := json.Unmarshal(d.b, d.v); err != nil {
				return st, fmt.Errorf("entry %d: decoding a view: %w", i, err)
			}
		}
		vSealed := keysWhere(vEnc, func(v any) bool { s, ok := v.(string); return ok && strings.HasPrefix(s, "veil:v1:") })
		bSealed := keysWhere(bEnc, func(v any) bool { s, ok := v.(string); return ok && strings.HasPrefix(s, sealedPrefix) })
		vRedacted := keysWhere(vRed, func(v any) bool { return v == Redacted })
		bRedacted := keysWhere(bRed, func(v any) bool { return v == Redacted })
		vSens, bSens := vEnc["sensitive"] == true, bEnc["sensitive"] == true
		typ := orig["type"]
		switch {
		case vSens != bSens || vSens != out.Sensitive || bRed["sensitive"] != bEnc["sensitive"]:
			return st, fmt.Errorf("entry %d (%v): sensitive: veil %v, benthos %v", i, typ, vSens, bSens)
		case !slices.Equal(vSealed, bSealed):
			return st, fmt.Errorf("entry %d (%v): sealed keys: veil %v, benthos %v", i, typ, vSealed, bSealed)
		case !slices.Equal(vRedacted, bRedacted) || !slices.Equal(vRedacted, vSealed):
			return st, fmt.Errorf("entry %d (%v): redacted keys: veil %v, benthos %v (sealed %v)", i, typ, vRedacted, bRedacted, vSealed)
		}
		data, _ := orig["data"].(map[string]any)
		encData, _ := bEnc["data"].(map[string]any)
		for _, k := range bSealed {
			rest := strings.TrimPrefix(encData[k].(string), sealedPrefix)
			nonce, b64, ok := strings.Cut(rest, ":")
			ct, err := base64.StdEncoding.DecodeString(b64)
			if !ok || err != nil || len(nonce) != gcm.NonceSize() {
				return st, fmt.Errorf("entry %d: data.%s: not nonce:base64", i, k)
			}
			pt, err := gcm.Open(nil, []byte(nonce), ct, nil)
			if err != nil {
				return st, fmt.Errorf("entry %d: data.%s does not open: %w", i, k, err)
			}
			var v any
			if err := json.Unmarshal(pt, &v); err != nil || !reflect.DeepEqual(v, data[k]) {
				return st, fmt.Errorf("entry %d: data.%s opens to something else than its value", i, k)
			}
		}
		if vSens {
			st.sensitive++
		}
		st.fields += len(vSealed)
	}
	if st.fields == 0 {
		return st, fmt.Errorf("no entry had a field sealed: the check proves nothing")
	}
	return st, nil
}

// keysWhere returns the sorted keys of entry.data whose value satisfies f.
func keysWhere(entry map[string]any, f func(any) bool) []string {
	data, _ := entry["data"].(map[string]any)
	var ks []string
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if f(data[k]) {
			ks = append(ks, k)
		}
	}
	return ks
}
