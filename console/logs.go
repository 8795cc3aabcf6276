package console

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/reveal"
)

// entryView is one entry as a page shows it.
type entryView struct {
	Item
	Fields   []Field
	Sealed   int  // sealed fields
	Live     int  // sealed fields that can still be revealed
	CanOpen  bool // the principal's kind may decrypt this app (reveal API rules)
	Revealed bool
}

// logsBody is the Logs page.
type logsBody struct {
	Form     url.Values
	Apps     []string
	AnyApp   bool // an admin of every app: the app filter is free text
	Ledgers  []string
	Entries  []entryView
	Next     template.URL // link to the next page (built from url.Values); empty on the last
	Scanned  int64
	Partial  bool
	Took     time.Duration
	Thread   string // thread view: the thread id
	BadInput string
}

// parseTime reads a time filter: RFC 3339, or the "2006-01-02T15:04" of a datetime-local input,
// taken as UTC.
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// query builds the search of a Logs or thread request.
func (c *Console) query(p *reveal.Principal, form url.Values) (Query, string) {
	q := Query{
		Filter: Filter{
			Visible: func(app string) bool { return visible(p, app) },
			App:     form.Get("app"), Ledger: form.Get("ledger"), Type: form.Get("type"),
			Thread: form.Get("thread"), User: form.Get("user"),
		},
		Ledgers: c.cfg.Ledgers, Limit: c.cfg.PageSize, Slack: c.cfg.Slack, Skew: c.cfg.FutureSkew, Budget: c.cfg.ScanBudget,
	}
	for _, v := range []string{q.App, q.Type, q.Thread, q.User} {
		if len(v) > 256 {
			return q, "filter values are at most 256 bytes"
		}
	}
	if q.Ledger != "" && !c.ledgerOK[q.Ledger] {
		return q, "unknown ledger"
	}
	var ok1, ok2 bool
	q.From, ok1 = parseTime(form.Get("from"))
	q.To, ok2 = parseTime(form.Get("to"))
	if !ok1 || !ok2 {
		return q, "times are RFC 3339 or YYYY-MM-DDTHH:MM (UTC)"
	}
	if a := form.Get("after"); a != "" {
		cur, ok := ParseCursor(a)
		if !ok {
			return q, "bad page cursor"
		}
		q.After = &cur
	}
	return q, ""
}

func (c *Console) logs(w http.ResponseWriter, r *http.Request, rq *request) {
	form := r.URL.Query()
	body := logsBody{Form: form, Apps: appsOf(&rq.p), Ledgers: c.cfg.Ledgers, AnyApp: visible(&rq.p, "\x00")}
	q, bad := c.query(&rq.p, form)
	if bad != "" {
		body.BadInput = bad
		c.render(w, http.StatusBadRequest, "logs", page{Title: "Logs", Nav: "logs", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
		return
	}
	start := time.Now()
	pg, err := c.cfg.Log.Search(r.Context(), q)
	if err != nil {
		c.unavailable(w, r, &rq.p, "searching entries", fromBroker, err)
		return
	}
	body.Entries, err = c.views(r.Context(), &rq.p, pg.Items)
	if err != nil {
		c.unavailable(w, r, &rq.p, "probing sealed values", fromStore, err)
		return
	}
	body.Scanned, body.Partial, body.Took = pg.Scanned, pg.Partial, time.Since(start).Round(time.Millisecond)
	if pg.Next != nil {
		next := url.Values{}
		for k, v := range form {
			if k != "after" {
				next[k] = v
			}
		}
		next.Set("after", pg.Next.String())
		body.Next = template.URL(Prefix + "logs?" + next.Encode())
	}
	c.render(w, http.StatusOK, "logs", page{Title: "Logs", Nav: "logs", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
}

// threadLimit bounds the entries of a thread view.
const threadLimit = 500

func (c *Console) thread(w http.ResponseWriter, r *http.Request, rq *request) {
	form := r.URL.Query()
	id := form.Get("thread")
	body := logsBody{Form: form, Apps: appsOf(&rq.p), Ledgers: c.cfg.Ledgers, Thread: id}
	q, bad := c.query(&rq.p, url.Values{"app": {form.Get("app")}, "thread": {id}})
	if id == "" {
		bad = "a thread id is required"
	}
	if bad != "" {
		body.BadInput = bad
		c.render(w, http.StatusBadRequest, "logs", page{Title: "Thread", Nav: "logs", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
		return
	}
	q.Limit = threadLimit
	start := time.Now()
	pg, err := c.cfg.Log.Search(r.Context(), q)
	if err != nil {
		c.unavailable(w, r, &rq.p, "searching thread", fromBroker, err)
		return
	}
	// A conversation reads in order: by entry time, then as written.
	items := pg.Items
	slices.SortStableFunc(items, func(a, b Item) int {
		if c := a.Entry.TS.Compare(b.Entry.TS); c != 0 {
			return c
		}
		return -a.Cursor.compare(b.Cursor)
	})
	body.Entries, err = c.views(r.Context(), &rq.p, items)
	if err != nil {
		c.unavailable(w, r, &rq.p, "probing sealed values", fromStore, err)
		return
	}
	body.Scanned, body.Partial, body.Took = pg.Scanned, pg.Partial || pg.Next != nil, time.Since(start).Round(time.Millisecond)
	c.render(w, http.StatusOK, "logs", page{Title: "Thread " + id, Nav: "logs", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
}

// views flattens items and probes their sealed values (one store read per distinct ref, in
// parallel).
func (c *Console) views(ctx context.Context, p *reveal.Principal, items []Item) ([]entryView, error) {
	now := c.cfg.Now()
	out := make([]entryView, len(items))
	var keys []rowKey
	toks := make([][]rowKey, len(items)) // per item, per sealed field: its row (zero if no token)
	oks := make([][]bool, len(items))
	for i, it := range items {
		out[i] = entryView{Item: it, Fields: fields(it.Entry.Data), CanOpen: p.MayDecrypt(it.Entry.AppID)}
		for j := range out[i].Fields {
			f := &out[i].Fields[j]
			if !f.Sealed {
				continue
			}
			tok, err := envelope.ParseToken(f.token)
			k := rowKey{app: tok.App, ref: tok.Ref}
			toks[i], oks[i] = append(toks[i], k), append(oks[i], err == nil)
			if err == nil {
				keys = append(keys, k)
			}
		}
	}
	rows, err := probeRows(ctx, c.cfg.Store, keys)
	if err != nil {
		return nil, err
	}
	for i := range out {
		v := &out[i]
		n := 0
		for j := range v.Fields {
			f := &v.Fields[j]
			if !f.Sealed {
				continue
			}
			judge(f, oks[i][n], rows[toks[i][n]], now, v.Expiry)
			n++
			v.Sealed++
			if f.State == "live" {
				v.Live++
			}
		}
	}
	return out, nil
}

// entryAt reads the entry a form or query names (l, p, o) if the principal may see it.
func (c *Console) entryAt(ctx context.Context, p *reveal.Principal, form url.Values) (Item, bool, error) {
	ledger := form.Get("l")
	part, e1 := strconv.ParseInt(form.Get("p"), 10, 32)
	off, e2 := strconv.ParseInt(form.Get("o"), 10, 64)
	if !c.ledgerOK[ledger] || e1 != nil || e2 != nil || part < 0 || off < 0 {
		return Item{}, false, nil
	}
	it, ok, err := c.cfg.Log.Get(ctx, ledger, int32(part), off)
	if err != nil || !ok || !visible(p, it.Entry.AppID) {
		// Another app's entry answers exactly like a missing one.
		return Item{}, false, err
	}
	return it, true, nil
}

// viewAt is entryAt and views for one entry; when it reports false it has answered the request
// (broker or store down, no such entry).
func (c *Console) viewAt(w http.ResponseWriter, r *http.Request, p *reveal.Principal, q url.Values) (Item, entryView, bool) {
	it, ok, err := c.entryAt(r.Context(), p, q)
	if err != nil {
		c.unavailable(w, r, p, "reading entry", fromBroker, err)
		return Item{}, entryView{}, false
	}
	if !ok {
		c.fail(w, r, http.StatusNotFound, "no such entry")
		return Item{}, entryView{}, false
	}
	vs, err := c.views(r.Context(), p, []Item{it})
	if err != nil {
		c.unavailable(w, r, p, "probing sealed values", fromStore, err)
		return Item{}, entryView{}, false
	}
	return it, vs[0], true
}

func (c *Console) entry(w http.ResponseWriter, r *http.Request, rq *request) {
	it, v, ok := c.viewAt(w, r, &rq.p, r.URL.Query())
	if !ok {
		return
	}
	c.render(w, http.StatusOK, "entry", page{Title: "Entry " + it.Entry.ID, Nav: "logs", Principal: &rq.p, CSRF: rq.sess.csrf, Body: v})
}

// reveal opens the sealed fields of one entry (field f, or every live one) through the reveal
// API's path: the principal's kind and apps decide, one audit record per token, and nothing is
// shown if the audit cannot be written. Tokens never reach the browser: the form names the entry
// and the field, and the tokens are read from the topic again here.
func (c *Console) reveal(w http.ResponseWriter, r *http.Request, rq *request) {
	it, v, ok := c.viewAt(w, r, &rq.p, r.PostForm)
	if !ok {
		return
	}
	want := -1
	if f := r.PostForm.Get("f"); f != "" && f != "all" {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n >= v.Sealed {
			c.fail(w, r, http.StatusBadRequest, "no such field")
			return
		}
		want = n
	}
	var idx []int
	var tokens []string
	for j := range v.Fields {
		f := &v.Fields[j]
		if f.Sealed && f.State == "live" && (want < 0 || f.Index == want) {
			idx = append(idx, j)
			tokens = append(tokens, f.token)
		}
	}
	if len(tokens) > 0 {
		results, values, err := c.cfg.Revealer.Reveal(r.Context(), rq.p, rq.id, "console", tokens)
		defer func() {
			for _, b := range values {
				clear(b)
			}
		}()
		if errors.Is(err, reveal.ErrRateLimited) {
			c.fail(w, r, http.StatusTooManyRequests, "too many reveals: wait a moment (the reveal API's rate limit)")
			return
		}
		if err != nil {
			c.log.Warn("console: reveal failed", "request_id", rq.id, "principal", rq.p.Name, "err", err)
			c.fail(w, r, http.StatusServiceUnavailable, "store, key service or audit unavailable: nothing was revealed; retry")
			return
		}
		for k, res := range results {
			f := &v.Fields[idx[k]]
			f.Status = string(res.Status)
			switch res.Status {
			case reveal.StatusOK:
				f.Value, f.Revealed = shown(res.Value), true
				v.Revealed = true
			case reveal.StatusExpired:
				f.State, f.Why = "gone", "erased or past its TTL"
			case reveal.StatusDenied:
				f.Why = "your principal (kind " + string(rq.p.Kind) + ") may not decrypt this app"
				if rq.p.MayDecrypt(v.Entry.AppID) {
					// Allowed for the entry's app: the token is another app's, or a media key
					// (media are fetched through signed links, never revealed).
					f.Why = "not revealable here: another app's token, or a media key (media open through signed links)"
				}
			default:
				f.State, f.Why = "invalid", "the token does not open"
			}
		}
	}
	c.log.Info("console reveal", "request_id", rq.id, "principal", rq.p.Name, "ledger", it.Ledger,
		"partition", it.Partition, "offset", it.Offset, "tokens", len(tokens))
	c.render(w, http.StatusOK, "entry", page{Title: "Entry " + it.Entry.ID, Nav: "logs", Principal: &rq.p, CSRF: rq.sess.csrf, Body: v})
}
