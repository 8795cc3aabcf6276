package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// The fast path handles the common entry without decoding data into maps: it decodes the entry's
// own fields, locates the sensitive values in data's JSON text, seals them as they are, and writes
// both views by copying data with each located value replaced (by its token or by ★★★★★). The
// outputs mean the same as the general path's (the same values sealed at the same paths, every
// other member unchanged); data keeps the producer's member order and spelling instead of being
// re-encoded.
//
// Anything unusual goes to the general path before anything is sealed: bad input (so the dead
// letter is built in one place), data that may hold a token (any "veil:" or any \u escape, which
// could spell one), the blob ledger (media are moved out by the general path), a whole-data
// decision, or overlapping paths.

var (
	tokenHint  = []byte(schemas.TokenPrefix)
	escapeHint = []byte(`\u`)
	redactedJS = []byte(`"` + envelope.Redacted + `"`)
	dataMember = []byte(`,"data":`)
)

// parsedPaths caches parsed sensitive paths; registry paths and the producers' few distinct
// sensitive_paths keep it small, and it is bounded anyway.
var parsedPaths sync.Map // string → schemas.Path

const maxCachedPaths = 4096

var cachedPaths atomic.Int64

func parsePath(s string) (schemas.Path, error) {
	if v, ok := parsedPaths.Load(s); ok {
		return v.(schemas.Path), nil
	}
	p, err := schemas.ParsePath(s)
	if err == nil && cachedPaths.Add(1) <= maxCachedPaths {
		parsedPaths.Store(s, p)
	}
	return p, err
}

// generalOnly turns the fast path off; tests compare the two paths with it.
var generalOnly atomic.Bool

type located struct {
	span schemas.Span
	tok  int // index into fields and tokens
}

// transformFast returns ok=false when the entry must take the general path; then it has sealed
// nothing and produced nothing.
func (t *Transformer) transformFast(ctx context.Context, src Source, key, value []byte) (Output, bool, error) {
	if generalOnly.Load() {
		return Output{}, false, nil
	}
	e, raw, err := schemas.DecodeRaw(value, t.Limits)
	if err != nil || bytes.Contains(raw, tokenHint) || bytes.Contains(raw, escapeHint) {
		return Output{}, false, nil
	}
	if _, found := schemas.TokenOutsideData(e); found || schemas.IsToken(string(key)) {
		return Output{}, false, nil
	}
	led, ok := t.Ledgers.Lookup(e.Ledger)
	if !ok || led.Name == "blob" {
		return Output{}, false, nil
	}
	if want := broker.RawTopic(led.Name); src.Topic != "" && src.Topic != want {
		return Output{}, false, nil
	}
	if info, known := t.Registry.Lookup(e.Type); known && !slices.Contains(info.Ledgers, led.Name) {
		return Output{}, false, nil
	}
	settings, ok := t.Apps(e.AppID)
	if !ok || e.AppID == DeadLetterApp {
		return Output{}, false, nil
	}
	now := t.now()
	if e.TS.After(now.Add(t.futureSkew())) || e.TS.Before(now.Add(-t.maxAge())) {
		return Output{}, false, nil
	}

	d := ledgers.Decide(e, settings, t.Registry)
	expiry := led.Expiry(e.TS)
	var pathBuf [8]schemas.Path
	paths := pathBuf[:0]
	for _, s := range d.Paths {
		if s == "data" {
			return Output{}, false, nil
		}
		p, err := parsePath(s)
		if err != nil {
			return Output{}, false, nil
		}
		paths = append(paths, p)
	}
	var spanBuf [8]schemas.Span
	spans, ok := schemas.Locate(raw, paths, spanBuf[:0])
	if !ok {
		return Output{}, false, nil
	}

	out := Output{Ledger: e.Ledger}
	var fieldBuf [8]envelope.Field
	var locBuf [8]located
	fields, locs := fieldBuf[:0], locBuf[:0]
	for i, sp := range spans {
		if sp.Start < 0 {
			continue
		}
		v := jsontext.Value(raw[sp.Start:sp.End])
		if k := v.Kind(); k == '{' || k == '[' {
			v = slices.Clone(v)
			if err := v.Compact(); err != nil {
				return Output{}, false, nil
			}
		}
		locs = append(locs, located{span: sp, tok: len(fields)})
		fields = append(fields, envelope.Field{Path: paths[i].String(), Value: v})
	}
	expired := !expiry.After(now)
	var tokens []envelope.Token
	if len(fields) > 0 && !expired {
		ref := refFor(ctx, e.AppID, e.ID, src)
		start := time.Now()
		rec, toks, err := t.Sealer.Seal(ctx, envelope.Header{App: e.AppID, Ledger: led.Name, Ref: ref, Expiry: expiry}, fields)
		if unsealable(err) {
			return Output{}, false, nil // the general path dead-letters it
		}
		if err != nil {
			return out, true, Transient(fmt.Errorf("sealing entry: %w", err))
		}
		b, err := rec.MarshalBinary()
		if err != nil {
			return out, true, fmt.Errorf("encoding sealed record: %w", err)
		}
		if !t.fits(b) {
			return Output{}, false, nil // the general path dead-letters it
		}
		out.Item = &store.Item{App: e.AppID, Ref: ref, Expiry: expiry, Value: b}
		out.SealTime = time.Since(start)
		tokens = toks
	}
	out.Sensitive = d.Sensitive || len(fields) > 0
	if out.Sensitive {
		yes := true
		e.Sensitive = &yes
	}
	env, err := e.Encode()
	if err != nil || len(env) < 2 || env[len(env)-1] != '}' {
		return Output{}, false, nil
	}
	hdrs := []kgo.RecordHeader{
		{Key: HeaderSource, Value: []byte(src.String())},
		{Key: HeaderSensitive, Value: []byte(fmt.Sprint(out.Sensitive))},
	}
	if out.Sensitive {
		hdrs = append(hdrs, kgo.RecordHeader{Key: HeaderExpiry, Value: []byte(expiry.UTC().Format(time.RFC3339))})
	}
	slices.SortFunc(locs, func(a, b located) int { return a.span.Start - b.span.Start })

	size := len(env) + len(dataMember) + len(raw) + len(locs)*len(redactedJS)
	encrypted := withData(make([]byte, 0, size+len(locs)*160), env, raw, locs, func(b []byte, l located) []byte {
		if expired {
			return append(b, redactedJS...)
		}
		b = append(b, '"')
		b = tokens[l.tok].AppendEncode(b)
		return append(b, '"')
	})
	redacted := withData(make([]byte, 0, size), env, raw, locs, func(b []byte, _ located) []byte {
		return append(b, redactedJS...)
	})
	out.Encrypted = &kgo.Record{Topic: broker.EncryptedTopic(led.Name), Key: key, Value: encrypted, Headers: hdrs}
	out.Redacted = &kgo.Record{Topic: broker.RedactedTopic(led.Name), Key: key, Value: redacted, Headers: slices.Clone(hdrs)}
	return out, true, nil
}

// withData appends env with data's text spliced in as its last member, each located value
// replaced by what repl appends. env is the entry encoded without data, so it ends with '}'.
func withData(b, env, raw []byte, locs []located, repl func([]byte, located) []byte) []byte {
	if raw == nil {
		return append(b, env...)
	}
	b = append(b, env[:len(env)-1]...)
	b = append(b, dataMember...)
	at := 0
	for _, l := range locs {
		b = append(b, raw[at:l.span.Start]...)
		b = repl(b, l)
		at = l.span.End
	}
	b = append(b, raw[at:]...)
	return append(b, '}')
}
