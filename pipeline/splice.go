package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// How an entry becomes its two views, in one path for every entry: one pass over the entry's
// bytes (schemas.Scanner) validates it, reads its own fields (the rule inputs of ledgers.Decide)
// and indexes data's values; the values at the sensitive paths are sealed as the producer wrote
// them; then each view is written as the entry's own fields (encoded as Entry.Encode writes them)
// followed by data's text copied verbatim, except the byte ranges replaced in place: a sealed
// value by its token (encrypted view) or ★★★★★ (redacted view), and any token-shaped string by
// ★★★★★ (redacted view). Scratch space lives in a per-worker pool; the outputs of one entry take
// two allocations (one for the records, headers and store item, one for their bytes).
//
// The views mean what the decoding transform's views meant (pipeline/internal/reference, which
// the differential fuzz test compares against): the same members and values. Data keeps the
// producer's member order, spacing and spelling of strings and numbers instead of being
// re-encoded; the entry's own fields are byte for byte as before.

// work is one worker's reusable scratch space.
type work struct {
	scan    schemas.Scanner
	targets []target
	fields  []envelope.Field
	repl    []replacement
	media   []mediaToken
	vals    []byte // compacted objects and arrays to seal
	views   []byte // the sealed record, both views, header values
	head    []byte // the entry's own fields, as both views start
	yes     bool
}

var workPool = sync.Pool{New: func() any { return new(work) }}

func (w *work) release() {
	w.scan.Forget()
	clear(w.fields) // no references to the input or to plaintext
	clear(w.vals)
	w.media = w.media[:0]
	workPool.Put(w)
}

// target is a value to seal: the data node and the path it is sealed under.
type target struct {
	node int
	path string
}

// replacement is a byte range of data rewritten in a view.
type replacement struct {
	start, end int
	tok        int  // index into tokens; -1 for ★★★★★ in both views
	media      int  // index into work.media; -1 if none
	keep       bool // the encrypted view keeps the text (a token-shaped string outside the sealed values)
}

// mediaToken is a blob entry's media value, moved to the blob store and replaced by its token.
type mediaToken struct {
	node int
	tok  string
}

var (
	redactedJS     = []byte(`"` + envelope.Redacted + `"`)
	dataMember     = []byte(`,"data":`)
	tokenBytes     = []byte(schemas.TokenPrefix)
	envelopePrefix = []byte(envelope.TokenPrefix)
	trueBytes      = []byte("true")
	falseBytes     = []byte("false")
)

// outputs holds what one entry returns, allocated at once.
type outputs struct {
	encrypted, redacted kgo.Record
	headers             [6]kgo.RecordHeader
	item                store.Item
}

func (t *Transformer) transform(ctx context.Context, src Source, key, value []byte) (Output, error) {
	w := workPool.Get().(*work)
	defer w.release()
	sc := &w.scan
	if err := sc.Scan(value, t.Limits); err != nil {
		var de *schemas.DecodeError
		if errors.As(err, &de) {
			return Output{}, &permanentError{reason: de.Reason, field: de.Field}
		}
		return Output{}, &permanentError{reason: schemas.ReasonMalformedJSON}
	}
	e := &sc.Entry
	var out Output
	led, ok := t.Ledgers.Lookup(e.Ledger)
	if !ok {
		return out, &permanentError{reason: schemas.ReasonUnknownLedger, field: "ledger"}
	}
	out.Ledger = led.Name
	topics := topicsOf(led.Name)
	if src.Topic != "" && src.Topic != topics.raw {
		return out, &permanentError{reason: schemas.ReasonInvalidField, field: "ledger"}
	}
	info, known := t.Registry.Lookup(e.Type)
	if known && !slices.Contains(info.Ledgers, led.Name) {
		return out, &permanentError{reason: schemas.ReasonTypeLedger, field: "type"}
	}
	if e.AppID == DeadLetterApp {
		// Reserved: entries sealed under it would sit among the dead letters (and their readers).
		return out, &permanentError{reason: schemas.ReasonInvalidField, field: "app_id"}
	}
	settings, ok := t.Apps(e.AppID)
	if !ok {
		return out, &permanentError{reason: schemas.ReasonUnknownApp, field: "app_id"}
	}
	now := t.now()
	if e.TS.After(now.Add(t.futureSkew())) || e.TS.Before(now.Add(-t.maxAge())) {
		return out, &permanentError{reason: schemas.ReasonTimestamp, field: "ts"}
	}
	if bytes.HasPrefix(key, tokenBytes) {
		// The record key (the thread id) is copied to both views as it is.
		return out, &permanentError{reason: schemas.ReasonInvalidField, field: "key"}
	}
	if field, found := schemas.TokenOutsideData(e); found {
		// Only data is sealed and redacted: a token in an id would reach redacted.* as it is.
		return out, &permanentError{reason: schemas.ReasonInvalidField, field: field}
	}
	if !t.tokensValid(sc, value) {
		return out, &permanentError{reason: schemas.ReasonForgedToken, field: forgedField(value, t.Limits, info.Fields)}
	}

	d := ledgers.Decide(e, settings, t.Registry)
	expiry := led.Expiry(e.TS)
	if t.Blobs != nil && d.Sensitive && e.Type == blobType && expiry.After(now) {
		if err := t.sealMedia(ctx, w, value, led.Name, src, expiry, &out); err != nil {
			return out, err
		}
	}
	if err := t.collect(ctx, w, value, d.Paths, out.Media); err != nil {
		return out, err
	}
	fields := w.fields
	expired := !expiry.After(now)
	var tokens []envelope.Token
	block := new(outputs)
	recEnd := 0 // the sealed record's bytes are w.views[:recEnd]
	if len(fields) > 0 && !expired {
		ref := refFor(ctx, e.AppID, e.ID, src)
		start := time.Now()
		rec, toks, err := t.Sealer.Seal(ctx, envelope.Header{App: e.AppID, Ledger: led.Name, Ref: ref, Expiry: expiry}, fields)
		if unsealable(err) {
			// The entry itself cannot be sealed (e.g. an app id beyond the token's limits):
			// retrying would stall the partition, so it is bad input.
			return out, &permanentError{reason: schemas.ReasonInvalidField, field: "app_id"}
		}
		if err != nil {
			return out, Transient(fmt.Errorf("sealing entry: %w", err))
		}
		// The record's bytes go first in the buffer the views follow (one allocation for all).
		b, err := rec.AppendBinary(w.views[:0])
		if err != nil {
			return out, fmt.Errorf("encoding sealed record: %w", err)
		}
		w.views = b
		if !t.fits(b) {
			// The store would refuse it on every retry (a DynamoDB item is at most 400 KB).
			return out, &permanentError{reason: schemas.ReasonTooLarge, field: "data"}
		}
		recEnd = len(b)
		block.item = store.Item{App: e.AppID, Ref: ref, Expiry: expiry}
		out.Item = &block.item
		out.SealTime = time.Since(start)
		tokens = toks
	}
	out.Sensitive = d.Sensitive || len(fields) > 0
	if out.Sensitive {
		w.yes = true
		e.Sensitive = &w.yes
	}

	// The sealed record, both views and the header values, in one buffer: record, encrypted,
	// redacted, source, expiry.
	w.planReplacements()
	w.head = e.AppendHead(w.head[:0])
	v := w.views[:recEnd]
	v = w.appendView(v, value, tokens, expired, true)
	encEnd := len(v)
	v = w.appendView(v, value, tokens, expired, false)
	redEnd := len(v)
	v = appendSource(v, src)
	srcEnd := len(v)
	if out.Sensitive {
		v = expiry.UTC().AppendFormat(v, time.RFC3339)
	}
	w.views = v
	all := bytes.Clone(v)
	if out.Item != nil {
		block.item.Value = all[:recEnd:recEnd]
	}
	sensitive := falseBytes
	if out.Sensitive {
		sensitive = trueBytes
	}
	h := &block.headers
	h[0] = kgo.RecordHeader{Key: HeaderSource, Value: all[redEnd:srcEnd:srcEnd]}
	h[1] = kgo.RecordHeader{Key: HeaderSensitive, Value: sensitive}
	n := 2
	if out.Sensitive {
		h[2] = kgo.RecordHeader{Key: HeaderExpiry, Value: all[srcEnd:len(all):len(all)]}
		n = 3
	}
	copy(h[3:], h[:3])
	block.encrypted = kgo.Record{Topic: topics.encrypted, Key: key, Value: all[recEnd:encEnd:encEnd], Headers: h[0:n:n]}
	block.redacted = kgo.Record{Topic: topics.redacted, Key: key, Value: all[encEnd:redEnd:redEnd], Headers: h[3 : 3+n : 3+n]}
	out.Encrypted, out.Redacted = &block.encrypted, &block.redacted
	return out, nil
}

// tokensValid reports whether data is free of forged tokens: every token-shaped string parses
// as a token, and no member name is token-shaped (names are never sealed or redacted).
func (t *Transformer) tokensValid(sc *schemas.Scanner, value []byte) bool {
	if sc.TokenName() {
		return false
	}
	for _, sp := range sc.Tokens() {
		s, ok := stringAt(value, sp)
		if !ok || !validToken(s) {
			return false
		}
	}
	return true
}

// forgedField names the field a forged-token dead letter reports, as schemas.ScanTokens does:
// rare (an attack or a bug upstream), so it decodes the entry to walk it.
func forgedField(value []byte, lim schemas.Limits, known []string) string {
	e, err := schemas.Decode(value, lim)
	if err != nil {
		return "data"
	}
	field, _ := schemas.ScanTokens(e, validToken, known...)
	return field
}

// stringAt returns the text of the JSON string at sp of value.
func stringAt(value []byte, sp schemas.Span) (string, bool) {
	raw := value[sp.Start:sp.End]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	b, err := jsontext.AppendUnquote(nil, raw)
	return string(b), err == nil
}

// collect finds the values at paths (skipping absent ones and genuine tokens) and puts in
// w.fields each as its JSON text, in w.targets where it is. "data" alone means every top-level
// member of data. media are the items of the tokens sealMedia just put in the entry.
func (t *Transformer) collect(ctx context.Context, w *work, value []byte, paths []string, media []store.Item) error {
	sc := &w.scan
	w.targets, w.fields, w.vals = w.targets[:0], w.fields[:0], w.vals[:0]
	for _, p := range paths {
		// Paths are valid: the registry's are checked when it is built, sensitive_paths by Scan.
		if p != "data" {
			if i, ok := sc.Find(p); ok {
				w.targets = append(w.targets, target{node: i, path: p})
			}
			continue
		}
		first := len(w.targets)
		ok := true
		sc.Members(func(i int, name []byte) bool {
			path, valid := memberPath(name)
			if !valid {
				ok = false
				return false
			}
			w.targets = append(w.targets, target{node: i, path: path})
			return true
		})
		if !ok {
			return &permanentError{reason: schemas.ReasonInvalidField, field: "data"}
		}
		slices.SortFunc(w.targets[first:], func(a, b target) int { return cmp.Compare(a.path, b.path) })
	}
	sealed := w.targets[:0]
	lookups := 0
	for _, tg := range w.targets {
		n := sc.Node(tg.node)
		if n.Kind == '"' {
			str, isMedia := w.mediaAt(tg.node)
			if !isMedia && (n.Escaped || bytes.HasPrefix(value[n.Start+1:n.End], envelopePrefix)) {
				str, _ = stringAt(value, schemas.Span{Start: n.Start, End: n.End})
			}
			if envelope.IsToken(str) && lookups < maxTokenLookups {
				lookups++
				ok, err := t.genuine(ctx, sc.Entry.AppID, str, media)
				if err != nil {
					return err
				}
				if ok {
					continue // already sealed elsewhere: never decrypt and re-encrypt
				}
				// Token-shaped, but no record of this app matches it: producer text (up to a
				// token's worth of chosen bytes), sealed like any other value.
			}
		}
		v := value[n.Start:n.End]
		if (n.Kind == '{' || n.Kind == '[') && bytes.ContainsAny(v, " \t\r\n") {
			// Sealed without the producer's spacing (a value with none needs no copy).
			at := len(w.vals)
			w.vals = append(w.vals, v...)
			c := jsontext.Value(w.vals[at:])
			if err := c.Compact(); err != nil {
				return &permanentError{reason: schemas.ReasonInvalidField, field: "data"}
			}
			w.vals = w.vals[:at+len(c)]
			v = w.vals[at:len(w.vals):len(w.vals)]
		}
		w.fields = append(w.fields, envelope.Field{Path: tg.path, Value: v})
		sealed = append(sealed, tg)
	}
	w.targets = sealed
	if len(w.fields) > envelope.MaxFields {
		// A whole data object with more members than one record holds: bad input, named as such
		// (Seal would refuse it as invalid input, which reads as a bad app id).
		return &permanentError{reason: schemas.ReasonInvalidField, field: "data"}
	}
	return nil
}

// memberPath is the path of data's member name, and whether the name can form one (not empty,
// no dot, no control character, not too long): Entry.DataPaths' rule.
func memberPath(name []byte) (string, bool) {
	p, err := schemas.ParsePath("data." + string(name))
	if err != nil || len(p.Segments()) != 2 {
		return "", false
	}
	return p.String(), true
}

// mediaAt returns the media token sealMedia put at node, if any.
func (w *work) mediaAt(node int) (string, bool) {
	for _, m := range w.media {
		if m.node == node {
			return m.tok, true
		}
	}
	return "", false
}

// planReplacements lists the byte ranges each view rewrites, in order: the sealed values (their
// token, or ★★★★★), the media moved out (their token, or ★★★★★), and the token-shaped strings
// elsewhere in data (kept, or ★★★★★). A token-shaped string inside a sealed value goes with it.
func (w *work) planReplacements() {
	sc := &w.scan
	w.repl = w.repl[:0]
	for i, tg := range w.targets {
		n := sc.Node(tg.node)
		w.repl = append(w.repl, replacement{start: n.Start, end: n.End, tok: i, media: -1})
	}
	for i, m := range w.media {
		n := sc.Node(m.node)
		w.repl = append(w.repl, replacement{start: n.Start, end: n.End, tok: -1, media: i})
	}
	slices.SortFunc(w.repl, func(a, b replacement) int { return cmp.Compare(a.start, b.start) })
	// Merge in the token-shaped strings, both lists being in document order.
	sealed := len(w.repl)
	end, j := 0, 0
	for _, sp := range sc.Tokens() {
		for j < sealed && w.repl[j].start <= sp.Start {
			end = max(end, w.repl[j].end)
			j++
		}
		if sp.Start < end {
			continue // inside (or equal to) a sealed value
		}
		if j < sealed && w.repl[j].start < sp.End {
			continue // cannot happen: values are nested or disjoint
		}
		w.repl = append(w.repl, replacement{start: sp.Start, end: sp.End, tok: -1, media: -1, keep: true})
	}
	if len(w.repl) > sealed {
		slices.SortFunc(w.repl, func(a, b replacement) int { return cmp.Compare(a.start, b.start) })
	}
}

// appendView appends one view: the entry's own fields (w.head), then data's text with the
// replacements.
func (w *work) appendView(b []byte, value []byte, tokens []envelope.Token, expired, encrypted bool) []byte {
	sc := &w.scan
	b = append(b, w.head...)
	ds := sc.DataSpan()
	if ds.Start < 0 {
		return append(b, '}')
	}
	b = append(b, dataMember...)
	at := ds.Start
	for _, r := range w.repl {
		b = append(b, value[at:r.start]...)
		switch {
		case !encrypted:
			b = append(b, redactedJS...)
		case r.keep:
			b = append(b, value[r.start:r.end]...)
		case r.media >= 0:
			b = append(b, '"')
			b = append(b, w.media[r.media].tok...)
			b = append(b, '"')
		case expired || tokens == nil:
			b = append(b, redactedJS...)
		default:
			b = append(b, '"')
			b = tokens[r.tok].AppendEncode(b)
			b = append(b, '"')
		}
		at = r.end
	}
	b = append(b, value[at:ds.End]...)
	return append(b, '}')
}

// appendSource appends src as Source.String writes it.
func appendSource(b []byte, src Source) []byte {
	b = append(b, src.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(src.Partition), 10)
	b = append(b, '/')
	return strconv.AppendInt(b, src.Offset, 10)
}

// ledgerTopics are the topic names of one ledger, built once per ledger instead of per entry.
type ledgerTopics struct{ raw, encrypted, redacted string }

// topicNames caches ledgerTopics by ledger name; names come from the ledgers table (a few), never
// from a record.
var topicNames sync.Map

func topicsOf(ledger string) *ledgerTopics {
	if v, ok := topicNames.Load(ledger); ok {
		return v.(*ledgerTopics)
	}
	v, _ := topicNames.LoadOrStore(ledger, &ledgerTopics{
		raw: broker.RawTopic(ledger), encrypted: broker.EncryptedTopic(ledger), redacted: broker.RedactedTopic(ledger),
	})
	return v.(*ledgerTopics)
}
