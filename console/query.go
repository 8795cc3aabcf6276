package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
)

// Filter selects entries. Empty fields match everything; Visible is always applied.
type Filter struct {
	Visible func(app string) bool // the apps the principal may see; required

	App, Ledger, Type, Thread, User string
	From, To                        time.Time // entry time (ts) in [From, To); zero: open
}

// Cursor is the position of the last entry of a page: the next page starts strictly after it in
// the listing order (record timestamp, ledger, partition, offset; all descending).
type Cursor struct {
	TS        int64 // record timestamp, unix ms
	Ledger    string
	Partition int32
	Offset    int64
}

// String encodes c for a URL; ParseCursor decodes it.
func (c Cursor) String() string {
	return fmt.Sprintf("%d.%s.%d.%d", c.TS, c.Ledger, c.Partition, c.Offset)
}

// ParseCursor decodes Cursor.String. The ledger must be one of the ledgers table's: a cursor is
// only ever made from a listed record, and the table is the one place ledger names are defined.
func ParseCursor(s string) (Cursor, bool) {
	p := strings.Split(s, ".")
	if len(p) != 4 || !knownLedger(p[1]) {
		return Cursor{}, false
	}
	ts, e1 := strconv.ParseInt(p[0], 10, 64)
	pa, e2 := strconv.ParseInt(p[2], 10, 32)
	off, e3 := strconv.ParseInt(p[3], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || ts < 0 || pa < 0 || off < 0 {
		return Cursor{}, false
	}
	return Cursor{TS: ts, Ledger: p[1], Partition: int32(pa), Offset: off}, true
}

// compare orders cursors as the listing does: newest first.
func (c Cursor) compare(d Cursor) int {
	return -cmp.Or(cmp.Compare(c.TS, d.TS), cmp.Compare(c.Ledger, d.Ledger),
		cmp.Compare(c.Partition, d.Partition), cmp.Compare(c.Offset, d.Offset))
}

// meta is the part of an entry the filters read; data is decoded only for entries shown.
type meta struct {
	ID     string    `json:"id"`
	AppID  string    `json:"app_id"`
	Ledger string    `json:"ledger"`
	Type   string    `json:"type"`
	TS     time.Time `json:"ts"`
	Thread struct {
		ID   string `json:"id"`
		Mode string `json:"mode"`
	} `json:"thread"`
	User struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"user"`
	Data json.RawMessage `json:"data"`
}

// Item is one entry found.
type Item struct {
	Cursor
	Time      time.Time // record timestamp: when veil wrote it
	Expiry    time.Time // when its sealed values expire (zero: nothing sealed)
	Sensitive bool
	Entry     meta
}

// Page is the answer to a query.
type Page struct {
	Items   []Item
	Next    *Cursor // nil on the last page
	Scanned int64   // records read to answer
	Partial bool    // the scan budget ran out before the page was full
}

// Query is one search.
type Query struct {
	Filter
	Ledgers []string // ledgers to search (Filter.Ledger narrows it to one)
	After   *Cursor  // continue after this entry
	Limit   int      // entries per page
	// Slack is how long after its entry's ts a record may have been written (the pipeline's
	// lag, a backlog, a replay) and still be found by a search with an upper time bound.
	Slack time.Duration
	// Skew is how far before its entry's ts a record may have been written: the pipeline
	// dead-letters entries more than FutureSkew (default 5m) in the future.
	Skew time.Duration
	// Budget bounds the records read for one page.
	Budget int64
}

// firstChunk is how many offsets of one partition are read first, walking back from the end;
// each further read doubles it up to maxChunk, so a selective filter needs few round trips.
const (
	firstChunk = 256
	maxChunk   = 16384
)

// Search answers q from the encrypted topics: per partition it lists the offsets whose record
// time can hold a match and walks back from the newest in chunks until the partition gave Limit
// matches, so the cost follows the page and the selectivity of the filter, not the topic size.
//
// It returns when ctx ends even if the broker has not answered (a hung broker): the reads still in
// flight end on the client's own timeouts.
func (l *Log) Search(ctx context.Context, q Query) (Page, error) {
	return await(ctx, func() (Page, error) { return l.search(ctx, q) })
}

func (l *Log) search(ctx context.Context, q Query) (Page, error) {
	ledgers := q.Ledgers
	if q.Ledger != "" {
		ledgers = []string{q.Ledger}
	}
	var topics []string
	for _, name := range ledgers {
		topics = append(topics, broker.EncryptedTopic(name))
	}
	fromMs, toMs := int64(-1), int64(-1)
	if !q.From.IsZero() {
		fromMs = max(0, q.From.Add(-q.Skew).UnixMilli())
	}
	if !q.To.IsZero() {
		toMs = q.To.Add(q.Slack).UnixMilli()
	}
	if q.After != nil && (toMs < 0 || q.After.TS+1 < toMs) {
		toMs = q.After.TS + 1
	}
	spans, err := l.spans(ctx, topics, fromMs, toMs)
	if err != nil {
		return Page{}, err
	}
	found, scanned, partial, err := walkSpans(ctx, l, spans, q.Limit+1, q.Budget, func(s span) func(*kgo.Record) (Item, bool) {
		ledger, _ := broker.LedgerOf(s.topic)
		return func(r *kgo.Record) (Item, bool) { return match(&q, ledger, r) }
	})
	if err != nil {
		return Page{}, err
	}
	slices.SortFunc(found, func(a, b Item) int { return a.Cursor.compare(b.Cursor) })
	page := Page{Scanned: scanned, Partial: partial}
	if len(found) > q.Limit {
		found = found[:q.Limit]
		c := found[len(found)-1].Cursor
		page.Next = &c
	}
	page.Items = found
	return page, nil
}

// walkSpans walks every span back at once (walkBack: up to limit kept per span, budget records
// read in all) and returns what keep(span) kept, in no order, how many records were read, and
// whether the budget ran out. A span that fails fails the walk.
func walkSpans[T any](ctx context.Context, l *Log, spans []span, limit int, budget int64, keep func(span) func(*kgo.Record) (T, bool)) ([]T, int64, bool, error) {
	var (
		mu      sync.Mutex
		out     []T
		scanned atomic.Int64
		partial atomic.Bool
		wg      sync.WaitGroup
		errs    = make([]error, len(spans))
	)
	for i, s := range spans {
		wg.Go(func() {
			vs, err := walkBack(ctx, l, s, limit, budget, &scanned, &partial, keep(s))
			errs[i] = err
			mu.Lock()
			out = append(out, vs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, false, err
	}
	return out, scanned.Load(), partial.Load(), nil
}

// walkBack reads one partition from its end towards its start in chunks and keeps what keep
// accepts, newest first, until it has limit or the shared budget of records read is spent.
func walkBack[T any](ctx context.Context, l *Log, s span, limit int, budget int64, scanned *atomic.Int64, partial *atomic.Bool, keep func(*kgo.Record) (T, bool)) ([]T, error) {
	var out []T
	hi := s.hi
	chunk := int64(firstChunk)
	for hi > s.lo && len(out) < limit {
		if scanned.Load() >= budget {
			partial.Store(true)
			break
		}
		lo := max(s.lo, hi-chunk)
		recs, err := l.read(ctx, s, lo, hi, s.lo)
		if err != nil {
			return nil, err
		}
		scanned.Add(int64(len(recs)))
		for i := len(recs) - 1; i >= 0 && len(out) < limit; i-- {
			if v, ok := keep(recs[i]); ok {
				out = append(out, v)
			}
		}
		if len(recs) > 0 && recs[0].Offset < lo {
			lo = recs[0].Offset // the rest of lo's batch was read too
		}
		hi = lo
		chunk = min(2*chunk, maxChunk)
	}
	return out, nil
}

// Tail returns up to limit records of topic that keep accepts, newest first (by record time),
// reading at most budget records; partial reports that the budget ran out.
func (l *Log) Tail(ctx context.Context, topic string, limit int, budget int64, keep func(*kgo.Record) bool) ([]*kgo.Record, bool, error) {
	type tail struct {
		recs    []*kgo.Record
		partial bool
	}
	t, err := await(ctx, func() (tail, error) {
		recs, partial, err := l.tail(ctx, topic, limit, budget, keep)
		return tail{recs, partial}, err
	})
	return t.recs, t.partial, err
}

func (l *Log) tail(ctx context.Context, topic string, limit int, budget int64, keep func(*kgo.Record) bool) ([]*kgo.Record, bool, error) {
	spans, err := l.spans(ctx, []string{topic}, -1, -1)
	if err != nil {
		return nil, false, err
	}
	out, _, partial, err := walkSpans(ctx, l, spans, limit, budget, func(span) func(*kgo.Record) (*kgo.Record, bool) {
		return func(r *kgo.Record) (*kgo.Record, bool) { return r, keep(r) }
	})
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(out, func(a, b *kgo.Record) int {
		return -cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, partial, nil
}

// match decodes r and reports whether it passes q. Cheap tests on the key and the raw bytes come
// first, so most records that fail the filter are never decoded.
func match(q *Query, ledger string, r *kgo.Record) (Item, bool) {
	c := Cursor{TS: r.Timestamp.UnixMilli(), Ledger: ledger, Partition: r.Partition, Offset: r.Offset}
	if q.After != nil && c.compare(*q.After) <= 0 {
		return Item{}, false
	}
	if q.Thread != "" && string(r.Key) != q.Thread {
		return Item{}, false
	}
	for _, s := range []string{q.App, q.Type, q.User} {
		// App ids, types and user ids appear verbatim in the JSON unless they need escaping;
		// only such plain values are used to skip records.
		if s != "" && plainJSON(s) && !bytes.Contains(r.Value, []byte(s)) {
			return Item{}, false
		}
	}
	var m meta
	if err := json.Unmarshal(r.Value, &m); err != nil {
		return Item{}, false
	}
	switch {
	case q.Visible == nil || !q.Visible(m.AppID),
		q.App != "" && m.AppID != q.App,
		q.Type != "" && m.Type != q.Type,
		q.User != "" && m.User.ID != q.User,
		q.Thread != "" && m.Thread.ID != q.Thread,
		!q.From.IsZero() && m.TS.Before(q.From),
		!q.To.IsZero() && !m.TS.Before(q.To):
		return Item{}, false
	}
	it := Item{Cursor: c, Time: r.Timestamp, Entry: m}
	for _, h := range r.Headers {
		switch h.Key {
		case pipeline.HeaderExpiry:
			it.Expiry, _ = time.Parse(time.RFC3339, string(h.Value))
		case pipeline.HeaderSensitive:
			it.Sensitive = string(h.Value) == "true"
		}
	}
	return it, true
}

func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// Get returns the entry at (ledger, partition, offset), or false if there is none (or it is not
// committed).
func (l *Log) Get(ctx context.Context, ledger string, partition int32, offset int64) (Item, bool, error) {
	type got struct {
		it Item
		ok bool
	}
	g, err := await(ctx, func() (got, error) {
		it, ok, err := l.get(ctx, ledger, partition, offset)
		return got{it, ok}, err
	})
	return g.it, g.ok, err
}

func (l *Log) get(ctx context.Context, ledger string, partition int32, offset int64) (Item, bool, error) {
	topic := broker.EncryptedTopic(ledger)
	meta, err := l.topics(ctx, []string{topic})
	if err != nil {
		return Item{}, false, err
	}
	m := meta[topic]
	i := slices.IndexFunc(m.parts, func(p partMeta) bool { return p.p == partition })
	if i < 0 {
		return Item{}, false, nil
	}
	recs, err := l.read(ctx, span{topic: topic, meta: m, part: m.parts[i]}, offset, offset+1, offset)
	if err != nil || len(recs) == 0 || recs[0].Offset != offset {
		return Item{}, false, err
	}
	q := Query{Filter: Filter{Visible: func(string) bool { return true }}}
	it, ok := match(&q, ledger, recs[0])
	return it, ok, nil
}

// await runs f and returns its result, or ctx's error as soon as ctx ends: a broker that accepts
// connections and never answers must not hold a page (kgo's handshake does not watch ctx).
func await[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("reading the topics: %w", ctx.Err())
	}
}

func knownLedger(s string) bool { _, ok := ledgers.Lookup(s); return ok }
