package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
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

// rowState is what the store holds for one ref: whether its row exists, and its expiry.
type rowState struct {
	found   bool
	invalid bool
	expiry  time.Time
}

type rowKey struct {
	app string
	ref envelope.RefID
}

// probeConcurrency bounds the store reads of one page in flight (Redis and DynamoDB answer each in
// a round trip).
const probeConcurrency = 16

// probeRows reads, without decrypting, the store row of every distinct ref behind fields (one read
// per ref, whatever the number of its fields). Reading ciphertext is not a decrypt and is not
// audited.
func probeRows(ctx context.Context, st store.Store, keys []rowKey) (map[rowKey]rowState, error) {
	seen := make(map[rowKey]bool, len(keys))
	var uniq []rowKey
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	states := make([]rowState, len(uniq))
	errs := make([]error, len(uniq))
	var wg sync.WaitGroup
	sem := make(chan struct{}, probeConcurrency)
	for i, k := range uniq {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			item, err := st.Get(ctx, k.app, k.ref)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				errs[i] = err
			default:
				var rec envelope.Record
				if rec.UnmarshalBinary(item.Value) != nil {
					states[i].invalid = true
				} else {
					states[i].found, states[i].expiry = true, rec.Expiry
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make(map[rowKey]rowState, len(uniq))
	for i, k := range uniq {
		out[k] = states[i]
	}
	return out, nil
}

// judge sets f's state from its row: live (with the time left), expired (past its TTL), gone
// (erased) or invalid. expiry is the entry's (its veil-expiry header): a missing row before it
// was erased, after it expired.
func judge(f *Field, tokOK bool, rs rowState, now, expiry time.Time) {
	switch {
	case !tokOK:
		f.State, f.Why = "invalid", "not a valid token"
	case rs.invalid:
		f.State, f.Why = "invalid", "the sealed record does not decode"
	case !rs.found && !expiry.IsZero() && !now.Before(expiry):
		f.State, f.Why = "expired", "past its TTL since "+expiry.UTC().Format(time.RFC3339)
	case !rs.found:
		f.State, f.Why = "gone", "erased: the sealed record no longer exists"
	case !now.Before(rs.expiry):
		f.State, f.Why = "expired", "past its TTL since "+rs.expiry.UTC().Format(time.RFC3339)
	default:
		f.State, f.Left = "live", lifetime(rs.expiry.Sub(now))
	}
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
