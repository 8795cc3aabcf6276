// Package reference is the transform veil had before the splicing one: it decodes the whole entry
// into maps (schemas.Decode), reads and sets values by path, and encodes both views again. It is
// kept only as the reference that the differential fuzz test (pipeline/fuzz) compares
// pipeline.Transformer against: the same verdict, sensitivity, sealed paths and values, views
// and headers. It is never used to process records.
package reference

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// Result is what the reference makes of one record: either a rejection (Reason, Field) or the
// two views, the sealed record and the values it seals.
type Result struct {
	Reason    schemas.Reason // empty unless the record is dead-lettered
	Field     string
	Ledger    string
	Sensitive bool
	Item      *store.Item
	Fields    []envelope.Field // the values sealed (or, past the TTL, redacted), by path
	Encrypted *kgo.Record
	Redacted  *kgo.Record
}

type rejected struct {
	reason schemas.Reason
	field  string
}

func (r *rejected) Error() string { return string(r.reason) }

// Transform runs the reference transform with t's settings. Media of blob entries are not moved
// (t.Blobs must be nil), and every ref is RefFor's. An error is a failure that is not the
// record's (keys, KMS, store).
func Transform(ctx context.Context, t *pipeline.Transformer, src pipeline.Source, key, value []byte) (Result, error) {
	if t.Blobs != nil {
		return Result{}, errors.New("reference: blob media are not supported")
	}
	res, err := transform(ctx, t, src, key, value)
	var rej *rejected
	if errors.As(err, &rej) {
		return Result{Reason: rej.reason, Field: rej.field}, nil
	}
	return res, err
}

func now(t *pipeline.Transformer) time.Time {
	if t.Clock != nil {
		return t.Clock()
	}
	return time.Now()
}

func transform(ctx context.Context, t *pipeline.Transformer, src pipeline.Source, key, value []byte) (Result, error) {
	e, err := schemas.Decode(value, t.Limits)
	if err != nil {
		var de *schemas.DecodeError
		if errors.As(err, &de) {
			return Result{}, &rejected{reason: de.Reason, field: de.Field}
		}
		return Result{}, &rejected{reason: schemas.ReasonMalformedJSON}
	}
	var out Result
	led, ok := t.Ledgers.Lookup(e.Ledger)
	if !ok {
		return out, &rejected{reason: schemas.ReasonUnknownLedger, field: "ledger"}
	}
	out.Ledger = led.Name
	if want := broker.RawTopic(led.Name); src.Topic != "" && src.Topic != want {
		return out, &rejected{reason: schemas.ReasonInvalidField, field: "ledger"}
	}
	if info, known := t.Registry.Lookup(e.Type); known && !slices.Contains(info.Ledgers, led.Name) {
		return out, &rejected{reason: schemas.ReasonTypeLedger, field: "type"}
	}
	if e.AppID == pipeline.DeadLetterApp {
		return out, &rejected{reason: schemas.ReasonInvalidField, field: "app_id"}
	}
	settings, ok := t.Apps(e.AppID)
	if !ok {
		return out, &rejected{reason: schemas.ReasonUnknownApp, field: "app_id"}
	}
	n := now(t)
	skew, age := t.FutureSkew, t.MaxAge
	if skew <= 0 {
		skew = 5 * time.Minute
	}
	if age <= 0 {
		age = 7 * 24 * time.Hour
	}
	if e.TS.After(n.Add(skew)) || e.TS.Before(n.Add(-age)) {
		return out, &rejected{reason: schemas.ReasonTimestamp, field: "ts"}
	}
	if schemas.IsToken(string(key)) {
		return out, &rejected{reason: schemas.ReasonInvalidField, field: "key"}
	}
	if field, found := schemas.TokenOutsideData(e); found {
		return out, &rejected{reason: schemas.ReasonInvalidField, field: field}
	}
	info, _ := t.Registry.Lookup(e.Type)
	if field, ok := schemas.ScanTokens(e, validToken, info.Fields...); !ok {
		return out, &rejected{reason: schemas.ReasonForgedToken, field: field}
	}

	d := ledgers.Decide(e, settings, t.Registry)
	expiry := led.Expiry(e.TS)
	fields, paths, err := collectFields(ctx, t, e, d.Paths)
	if err != nil {
		return out, err
	}
	out.Fields = fields
	expired := !expiry.After(n)
	var tokens []envelope.Token
	if len(fields) > 0 && !expired {
		ref := pipeline.RefFor(e.AppID, e.ID, src)
		rec, toks, err := t.Sealer.Seal(ctx, envelope.Header{App: e.AppID, Ledger: led.Name, Ref: ref, Expiry: expiry}, fields)
		if errors.Is(err, envelope.ErrInvalidInput) || errors.Is(err, keyring.ErrInvalidApp) {
			return out, &rejected{reason: schemas.ReasonInvalidField, field: "app_id"}
		}
		if err != nil {
			return out, fmt.Errorf("sealing entry: %w", err)
		}
		b, err := rec.MarshalBinary()
		if err != nil {
			return out, fmt.Errorf("encoding sealed record: %w", err)
		}
		if t.MaxItemBytes > 0 && len(b) > t.MaxItemBytes {
			return out, &rejected{reason: schemas.ReasonTooLarge, field: "data"}
		}
		out.Item = &store.Item{App: e.AppID, Ref: ref, Expiry: expiry, Value: b}
		tokens = toks
	}
	out.Sensitive = d.Sensitive || len(fields) > 0
	if out.Sensitive {
		yes := true
		e.Sensitive = &yes
	}
	hdrs := []kgo.RecordHeader{
		{Key: pipeline.HeaderSource, Value: []byte(src.String())},
		{Key: pipeline.HeaderSensitive, Value: []byte(fmt.Sprint(out.Sensitive))},
	}
	if out.Sensitive {
		hdrs = append(hdrs, kgo.RecordHeader{Key: pipeline.HeaderExpiry, Value: []byte(expiry.UTC().Format(time.RFC3339))})
	}
	for i, p := range paths {
		if expired {
			e.Set(p, envelope.Redacted)
		} else {
			e.Set(p, tokens[i].Encode())
		}
	}
	encrypted, err := e.Encode()
	if err != nil {
		return out, &rejected{reason: schemas.ReasonInvalidField, field: "data"}
	}
	for _, p := range paths {
		e.Set(p, envelope.Redacted)
	}
	pipeline.RedactTokens(e.Data)
	redacted, err := e.Encode()
	if err != nil {
		return out, &rejected{reason: schemas.ReasonInvalidField, field: "data"}
	}
	out.Encrypted = &kgo.Record{Topic: broker.EncryptedTopic(led.Name), Key: key, Value: encrypted, Headers: hdrs}
	out.Redacted = &kgo.Record{Topic: broker.RedactedTopic(led.Name), Key: key, Value: redacted, Headers: slices.Clone(hdrs)}
	return out, nil
}

const maxTokenLookups = schemas.MaxSensitivePaths

func collectFields(ctx context.Context, t *pipeline.Transformer, e *schemas.Entry, want []string) ([]envelope.Field, []schemas.Path, error) {
	paths := make([]schemas.Path, 0, len(want))
	for _, s := range want {
		if s == "data" {
			all, ok := e.DataPaths()
			if !ok {
				return nil, nil, &rejected{reason: schemas.ReasonInvalidField, field: "data"}
			}
			paths = append(paths, all...)
			continue
		}
		p, err := schemas.ParsePath(s)
		if err != nil {
			return nil, nil, &rejected{reason: schemas.ReasonInvalidField, field: "sensitive_paths"}
		}
		paths = append(paths, p)
	}
	fields := make([]envelope.Field, 0, len(paths))
	sealed := paths[:0]
	lookups := 0
	for _, p := range paths {
		v, ok := e.Get(p)
		if !ok {
			continue
		}
		if str, isStr := v.(string); isStr && envelope.IsToken(str) && lookups < maxTokenLookups {
			lookups++
			ok, err := genuine(ctx, t, e.AppID, str)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				continue
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, nil, &rejected{reason: schemas.ReasonInvalidField, field: "data"}
		}
		fields = append(fields, envelope.Field{Path: p.String(), Value: b})
		sealed = append(sealed, p)
	}
	if len(fields) > envelope.MaxFields {
		return nil, nil, &rejected{reason: schemas.ReasonInvalidField, field: "data"}
	}
	return fields, sealed, nil
}

func genuine(ctx context.Context, t *pipeline.Transformer, app, s string) (bool, error) {
	tok, err := envelope.ParseToken(s)
	if err != nil || tok.App != app || t.Store == nil {
		return false, nil
	}
	item, err := t.Store.Get(ctx, app, tok.Ref)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up a token's record: %w", err)
	}
	var rec envelope.Record
	if err := rec.UnmarshalBinary(item.Value); err != nil {
		return false, nil
	}
	clock := t.Clock
	if clock == nil {
		clock = time.Now
	}
	return envelope.CheckToken(&rec, tok, clock()) == nil, nil
}

func validToken(s string) bool {
	_, err := envelope.ParseToken(s)
	return err == nil
}
