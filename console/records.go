package console

import (
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

func (c *Console) deadletters(w http.ResponseWriter, r *http.Request, rq *request) {
	var body deadLettersBody
	body.Limit = recordsLimit
	recs, partial, err := c.cfg.Log.Tail(r.Context(), broker.DeadLetterTopic, recordsLimit, recordsBudget, func(kr *kgo.Record) bool {
		var d deadLetter
		return json.Unmarshal(kr.Value, &d) == nil && deadLetterVisible(&rq.p, d.AppID)
	})
	if err != nil {
		c.unavailable(w, r, &rq.p, "reading dead letters", fromBroker, err)
		return
	}
	byReason, byApp := map[string]int{}, map[string]int{}
	for _, kr := range recs {
		var d deadLetter
		json.Unmarshal(kr.Value, &d)
		body.Records = append(body.Records, d)
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
	body := auditBody{Limit: recordsLimit}
	recs, partial, err := c.cfg.Log.Tail(r.Context(), broker.AuditTopic, recordsLimit, recordsBudget, func(kr *kgo.Record) bool {
		var a auditEntry
		return json.Unmarshal(kr.Value, &a) == nil && deadLetterVisible(&rq.p, a.App)
	})
	if err != nil {
		c.unavailable(w, r, &rq.p, "reading audit trail", fromBroker, err)
		return
	}
	for _, kr := range recs {
		var a auditEntry
		json.Unmarshal(kr.Value, &a)
		body.Records = append(body.Records, a)
	}
	body.Partial = partial
	c.render(w, http.StatusOK, "audit", page{Title: "Audit trail", Nav: "audit", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
}
