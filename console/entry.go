package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/sinks/store"
)

// Field is one leaf of an entry's data, as the page shows it.
type Field struct {
	Path  string
	Value string // the JSON value (strings unquoted); empty for a sealed value
	// Sealed fields only:
	Sealed   bool
	Index    int    // position among the entry's sealed fields (the Reveal form names it)
	token    string // never rendered: a token opens its value
	State    string // "live", "expired", "gone", "invalid"
	Why      string // why the value cannot be revealed
	Left     string // remaining lifetime while live
	Revealed bool
	Status   string // reveal outcome when it was asked for
}

// Redacted is what a sealed value shows until it is revealed.
const Redacted = envelope.Redacted

// fields flattens data (a JSON object) into its leaves in key order; tokens become sealed fields
// numbered in that order. Leaves deeper than maxDepth are shown as their JSON text.
func fields(data json.RawMessage) []Field {
	if len(data) == 0 {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return []Field{{Path: "data", Value: "(undecodable)"}}
	}
	var out []Field
	n := 0
	var walk func(path string, v any, depth int)
	walk = func(path string, v any, depth int) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) > 0 && depth < maxDepth {
				keys := make([]string, 0, len(x))
				for k := range x {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for _, k := range keys {
					walk(path+"."+k, x[k], depth+1)
				}
				return
			}
		case []any:
			if len(x) > 0 && depth < maxDepth {
				for i, e := range x {
					walk(path+"["+strconv.Itoa(i)+"]", e, depth+1)
				}
				return
			}
		case string:
			if envelope.IsToken(x) {
				out = append(out, Field{Path: path, Sealed: true, Index: n, token: x})
				n++
				return
			}
			out = append(out, Field{Path: path, Value: x})
			return
		}
		b, _ := json.Marshal(v)
		out = append(out, Field{Path: path, Value: string(b)})
	}
	walk("data", v, 0)
	return out
}

const maxDepth = 32

// probe says, without decrypting, whether a sealed field can still be revealed: its token must
// parse and its record must still be in the store and before its expiry. Reading the store row
// reads ciphertext only, so it is not a decrypt and is not audited. expiry is the entry's (its
// veil-expiry header): a missing record before it was erased, after it expired.
func probe(ctx context.Context, st store.Store, now, expiry time.Time, f *Field) error {
	tok, err := envelope.ParseToken(f.token)
	if err != nil {
		f.State, f.Why = "invalid", "not a valid token"
		return nil
	}
	item, err := st.Get(ctx, tok.App, tok.Ref)
	if errors.Is(err, store.ErrNotFound) {
		if !expiry.IsZero() && !now.Before(expiry) {
			f.State, f.Why = "expired", "past its TTL since "+expiry.UTC().Format(time.RFC3339)
		} else {
			f.State, f.Why = "gone", "erased: the sealed record no longer exists"
		}
		return nil
	}
	if err != nil {
		return err
	}
	var rec envelope.Record
	if err := rec.UnmarshalBinary(item.Value); err != nil {
		f.State, f.Why = "invalid", "the sealed record does not decode"
		return nil
	}
	if !now.Before(rec.Expiry) {
		f.State, f.Why = "expired", "past its TTL since "+rec.Expiry.UTC().Format(time.RFC3339)
		return nil
	}
	f.State, f.Left = "live", lifetime(rec.Expiry.Sub(now))
	return nil
}

// lifetime formats a remaining duration coarsely ("23h 59m", "4m 10s").
func lifetime(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return strconv.Itoa(h) + "h " + strconv.Itoa(m) + "m"
	case m > 0:
		return strconv.Itoa(m) + "m " + strconv.Itoa(s) + "s"
	}
	return strconv.Itoa(s) + "s"
}

// shown is the text of a revealed JSON value: strings unquoted, anything else as JSON.
func shown(v []byte) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}
