package egress

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
)

// Skip reasons: why an input record was not delivered.
const (
	SkipApp       = "app"       // the entry's app is outside the integration's app filter
	SkipMalformed = "malformed" // the record is not an entry (never written by the pipeline)
)

// output is what one input record becomes.
type output struct {
	rec    *kgo.Record // nil when skipped
	skip   string
	id     string // the entry's id and app, when it decoded
	app    string
	audits []reveal.AuditRecord
	opened int // tokens that opened to their value
	masked int // tokens replaced by the redacted view
}

// transientError marks a store or KMS failure: the batch is retried.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// entry turns one record of encrypted.<ledger> into what the integration receives. A non-nil
// error is transient (store, KMS) and never carries a value.
func (s *Stage) entry(ctx context.Context, r *kgo.Record) (output, error) {
	e, err := schemas.Decode(r.Value, s.cfg.Limits)
	if err != nil {
		var de *schemas.DecodeError
		reason := "undecodable"
		if errors.As(err, &de) {
			reason = string(de.Reason)
		}
		s.log.Warn("skipping record that is not an entry", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
		return output{skip: SkipMalformed}, nil
	}
	in := &s.cfg.Integration
	if !in.Delivers(e.AppID) {
		return output{skip: SkipApp}, nil
	}
	w := walker{s: s, ctx: ctx, app: e.AppID, src: fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)}
	if e.Data != nil {
		w.walk(e.Data)
	}
	if w.err != nil {
		return output{}, &transientError{w.err}
	}
	value := r.Value
	if w.changed {
		if value, err = e.Encode(); err != nil {
			// Retrying cannot help: skip the entry (its decrypts stay audited). The error
			// names the field only.
			s.log.Warn("skipping entry that does not re-encode", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return output{skip: SkipMalformed, audits: w.audits}, nil
		}
	}
	return output{
		rec: &kgo.Record{
			Topic: in.Topic, Key: r.Key, Value: value, Headers: slices.Clone(r.Headers),
		},
		id: e.ID, app: e.AppID,
		audits: w.audits, opened: w.opened, masked: w.masked,
	}, nil
}

// walker replaces every token under an entry's data in place.
type walker struct {
	s       *Stage
	ctx     context.Context
	app     string
	src     string
	changed bool
	audits  []reveal.AuditRecord
	opened  int
	masked  int
	err     error
}

func (w *walker) walk(v any) {
	switch c := v.(type) {
	case map[string]any:
		for k, x := range c {
			if r, ok := w.visit(x); ok {
				c[k] = r
			}
			if w.err != nil {
				return
			}
		}
	case []any:
		for i, x := range c {
			if r, ok := w.visit(x); ok {
				c[i] = r
			}
			if w.err != nil {
				return
			}
		}
	}
}

// visit returns what stands in place of x when x is a token; otherwise it walks x and returns
// false.
func (w *walker) visit(x any) (any, bool) {
	str, ok := x.(string)
	if !ok {
		w.walk(x)
		return nil, false
	}
	if !schemas.IsToken(str) {
		return nil, false
	}
	return w.replace(str), true
}

// replace returns what the integration sees in place of one token: its value, or the redacted
// view. It sets w.err on a transient failure.
func (w *walker) replace(token string) any {
	w.changed = true
	in := &w.s.cfg.Integration
	if !in.Decrypts() {
		w.masked++
		return envelope.Redacted
	}
	tok, err := envelope.ParseToken(token)
	if err != nil {
		w.audit(nil, reveal.StatusInvalid)
		w.masked++
		return envelope.Redacted
	}
	// A token travels only with entries of its own app: one copied into another app's entry is
	// not that app's to reveal.
	if tok.App != w.app {
		w.audit(&tok, reveal.StatusDenied)
		w.masked++
		return envelope.Redacted
	}
	plain, st, err := w.s.cfg.Opener.OpenToken(w.ctx, tok)
	if err != nil {
		w.err = fmt.Errorf("opening token of app %s field %d: %w", tok.App, tok.Field, err)
		return nil
	}
	if st == reveal.StatusOK {
		var v any
		err := json.Unmarshal(plain, &v)
		clear(plain)
		if err == nil {
			w.audit(&tok, st)
			w.opened++
			return v
		}
		st = reveal.StatusInvalid
	}
	w.audit(&tok, st)
	w.masked++
	return envelope.Redacted
}

func (w *walker) audit(tok *envelope.Token, st reveal.Status) {
	in := &w.s.cfg.Integration
	a := reveal.NewAuditRecord(tok, st)
	a.Time = w.s.now().UTC().Truncate(time.Millisecond)
	a.RequestID = w.src
	a.Source = "egress:" + in.Name
	a.Principal = in.Name
	a.Kind = in.Kind
	w.audits = append(w.audits, a)
}
