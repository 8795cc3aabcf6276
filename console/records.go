package console

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
)

// deadLetter is what the Dead letters page reads of a veil.deadletter record: the pipeline's
// DeadLetter, which has no payload field, so the sealed payload token is never decoded into
// memory, let alone shown.
type deadLetter = pipeline.DeadLetter

// Count is one row of a count table.
type Count struct {
	Name string
	N    int
}

func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.N != b.N {
			return b.N - a.N
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

type deadLettersBody struct {
	Records  []deadLetter
	ByReason []Count
	ByApp    []Count
	Partial  bool
	Limit    int
}

// recordsLimit and recordsBudget bound the Dead letters and Audit pages.
const (
	recordsLimit  = 500
	recordsBudget = 100_000
)

// deadLetterVisible: a dead letter whose app is unknown (the entry did not parse) is shown only
// to admins of every app.
func deadLetterVisible(p *reveal.Principal, app string) bool {
	if app == "" {
		return visible(p, "\x00") // only an all-apps admin
	}
	return visible(p, app)
}

// tailVisible returns the newest records of topic (up to recordsLimit, reading at most
// recordsBudget) that decode as T and whose app p may see (deadLetterVisible), newest first;
// partial reports that the budget ran out.
func tailVisible[T any](ctx context.Context, log *Log, topic string, p *reveal.Principal, app func(*T) string) ([]T, bool, error) {
	krs, partial, err := log.Tail(ctx, topic, recordsLimit, recordsBudget, func(kr *kgo.Record) bool {
		var v T
		return json.Unmarshal(kr.Value, &v) == nil && deadLetterVisible(p, app(&v))
	})
	if err != nil {
		return nil, false, err
	}
	recs := make([]T, len(krs))
	for i, kr := range krs {
		json.Unmarshal(kr.Value, &recs[i]) // keep decoded it without error
	}
	return recs, partial, nil
}

func (c *Console) deadletters(w http.ResponseWriter, r *http.Request, rq *request) {
	recs, partial, err := tailVisible(r.Context(), c.cfg.Log, broker.DeadLetterTopic, &rq.p, func(d *deadLetter) string { return d.AppID })
	if err != nil {
		c.unavailable(w, r, &rq.p, "reading dead letters", fromBroker, err)
		return
	}
	body := deadLettersBody{Records: recs, Limit: recordsLimit}
	byReason, byApp := map[string]int{}, map[string]int{}
	for _, d := range recs {
		byReason[string(d.Reason)]++
		app := d.AppID
		if app == "" {
			app = "(unknown)"
		}
		byApp[app]++
	}
	body.ByReason, body.ByApp, body.Partial = counts(byReason), counts(byApp), partial
	c.render(w, http.StatusOK, "deadletters", page{Title: "Dead letters", Nav: "deadletters", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
}

// auditEntry is a veil.audit record: a decrypt attempt (reveal.AuditRecord) or an erasure
// ("veil keys erase"). Neither holds a value.
type auditEntry struct {
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`
	Principal string    `json:"principal"`
	Kind      string    `json:"kind"`
	App       string    `json:"app"`
	Ref       string    `json:"ref"`
	Field     int       `json:"field"`
	Status    string    `json:"status"`
	Action    string    `json:"action"`
	Operator  string    `json:"operator"`
	Keys      int       `json:"keys"`
	StoreRows int       `json:"store_rows"`
}

type auditBody struct {
	Records []auditEntry
	Partial bool
	Limit   int
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, rq *request) {
	recs, partial, err := tailVisible(r.Context(), c.cfg.Log, broker.AuditTopic, &rq.p, func(a *auditEntry) string { return a.App })
	if err != nil {
		c.unavailable(w, r, &rq.p, "reading audit trail", fromBroker, err)
		return
	}
	body := auditBody{Records: recs, Partial: partial, Limit: recordsLimit}
	c.render(w, http.StatusOK, "audit", page{Title: "Audit trail", Nav: "audit", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
}
