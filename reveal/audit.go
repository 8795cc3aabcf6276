package reveal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
)

// AuditRecord is one decrypt attempt: who asked for which field of which record, and what came of
// it. It never holds the value, the token or the token's ref KEK: App, Ref and Field are enough to
// find the record, and none of them opens it.
type AuditRecord struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Source    string    `json:"source"` // "api", or the stage that decrypted (e.g. "egress:<name>")
	Principal string    `json:"principal"`
	Kind      Kind      `json:"kind"`
	App       string    `json:"app"`    // empty when the token did not parse
	Ref       string    `json:"ref"`    // hex; empty when the token did not parse
	Field     int       `json:"field"`  // field index in the record; -1 when the token did not parse
	Status    string    `json:"status"` // ok, expired, denied, invalid, or error (store or KMS failed)
}

// StatusError is the audit status of an attempt that failed on the store or the KMS.
const StatusError Status = "error"

// NewAuditRecord fills the token's coordinates into an audit record. A zero tok (one that did not
// parse) yields empty App and Ref and Field -1.
func NewAuditRecord(tok *envelope.Token, st Status) AuditRecord {
	r := AuditRecord{Field: -1, Status: string(st)}
	if tok != nil {
		r.App, r.Ref, r.Field = tok.App, tok.Ref.String(), int(tok.Field)
	}
	return r
}

// KafkaRecord encodes r for broker.AuditTopic, keyed by principal so one principal's records stay
// in order. A stage that decrypts inside a Kafka transaction (egress) produces these in the same
// transaction rather than through an Auditor.
func (r AuditRecord) KafkaRecord() (*kgo.Record, error) {
	b, err := r.appendJSON(make([]byte, 0, auditRecordSize(&r)))
	if err != nil {
		return nil, fmt.Errorf("encoding audit record: %w", err)
	}
	return &kgo.Record{Topic: broker.AuditTopic, Key: []byte(r.Principal), Value: b}, nil
}

// kafkaRecords is KafkaRecord for each of recs in three allocations in all rather than three
// each: the records share one array, their values one buffer (each capped at its own length), and
// records of the same principal (all of them, for one request) one key.
func kafkaRecords(recs []AuditRecord) ([]*kgo.Record, error) {
	size := 0
	for i := range recs {
		size += auditRecordSize(&recs[i])
	}
	buf := make([]byte, 0, size)
	krs := make([]kgo.Record, len(recs))
	out := make([]*kgo.Record, len(recs))
	var key []byte
	for i := range recs {
		r := &recs[i]
		n := len(buf)
		var err error
		if buf, err = r.appendJSON(buf); err != nil {
			return nil, fmt.Errorf("encoding audit record: %w", err)
		}
		if key == nil || string(key) != r.Principal {
			key = []byte(r.Principal)
		}
		krs[i] = kgo.Record{Topic: broker.AuditTopic, Key: key, Value: buf[n:len(buf):len(buf)]}
		out[i] = &krs[i]
	}
	return out, nil
}

// auditRecordSize is the length of r's JSON when no string needs escaping.
func auditRecordSize(r *AuditRecord) int {
	return 140 + len(time.RFC3339Nano) + len(r.RequestID) + len(r.Source) + len(r.Principal) +
		len(r.Kind) + len(r.App) + len(r.Ref) + len(r.Status)
}

// appendJSON appends json.Marshal(r), byte for byte (a test compares them), without reflection:
// the audit writes one record per revealed token.
func (r *AuditRecord) appendJSON(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, `{"time":"`...)
	n0 := len(dst)
	dst = r.Time.AppendFormat(dst, time.RFC3339Nano)
	if !strictRFC3339(dst[n0:]) {
		// A time encoding/json refuses (year beyond 9999, an offset of 24 hours or more): let
		// it say so.
		b, err := json.Marshal(r)
		if err != nil {
			return dst[:start], err
		}
		return append(dst[:start], b...), nil
	}
	dst = append(dst, `","request_id":`...)
	dst = appendSafeString(dst, r.RequestID)
	dst = append(dst, `,"source":`...)
	dst = appendSafeString(dst, r.Source)
	dst = append(dst, `,"principal":`...)
	dst = appendSafeString(dst, r.Principal)
	dst = append(dst, `,"kind":`...)
	dst = appendSafeString(dst, string(r.Kind))
	dst = append(dst, `,"app":`...)
	dst = appendSafeString(dst, r.App)
	dst = append(dst, `,"ref":`...)
	dst = appendSafeString(dst, r.Ref)
	dst = append(dst, `,"field":`...)
	dst = strconv.AppendInt(dst, int64(r.Field), 10)
	dst = append(dst, `,"status":`...)
	dst = appendSafeString(dst, r.Status)
	return append(dst, '}'), nil
}

// strictRFC3339 reports whether b, a time in RFC 3339 format as time.Time.AppendFormat writes
// it, is one time.Time.MarshalJSON accepts: a four-digit year and a zone offset under 24 hours.
func strictRFC3339(b []byte) bool {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' {
		return false
	}
	if b[len(b)-1] == 'Z' {
		return true
	}
	c := b[len(b)-len("Z07:00")]
	h := b[len(b)-len("07:00"):]
	return !('0' <= c && c <= '9') && 10*(h[0]-'0')+(h[1]-'0') < 24
}

// Auditor durably records decrypt attempts.
type Auditor interface {
	// Audit returns nil only once every record is written. A caller must not release a value
	// whose record failed: the reveal API fails closed (no plaintext leaves without its audit
	// record). Cancelling ctx abandons the write and returns an error.
	Audit(ctx context.Context, recs []AuditRecord) error
}

// AuditorFunc adapts a function to Auditor.
type AuditorFunc func(ctx context.Context, recs []AuditRecord) error

// Audit calls f.
func (f AuditorFunc) Audit(ctx context.Context, recs []AuditRecord) error { return f(ctx, recs) }

// ErrAuditClosed is returned by KafkaAuditor.Audit after Close.
var ErrAuditClosed = errors.New("audit: closed")

// KafkaAuditor writes audit records to broker.AuditTopic synchronously: Audit returns after the
// brokers acknowledged every record (acks=all, idempotent producer), so an error means a record
// may be missing and the caller must withhold the value. There is no buffering beyond the
// in-flight request: a Kafka outage turns reveals into errors rather than unaudited reveals.
//
// Concurrent Audit calls share produce requests (group commit): records queue while one
// ProduceSync is in flight and the next one writes everything queued; each caller returns when the
// request that carried its records was acknowledged, with that request's error if it failed.
type KafkaAuditor struct {
	cl    *kgo.Client // its own producer, not transactional (see AuditRecord.KafkaRecord)
	mu    sync.RWMutex
	close bool

	qmu      sync.Mutex
	pending  *auditBatch // records waiting for the next produce; nil if none
	flushing bool        // a flush goroutine is running
}

// auditTimeout bounds one produce of queued records, so that a broker outage fails the waiting
// callers (and later ones) instead of queuing records without end.
const auditTimeout = 10 * time.Second

// auditBatch is the records of one produce and its outcome, published by closing done.
type auditBatch struct {
	recs []*kgo.Record
	done chan struct{}
	err  error
}

// DialKafkaAuditor creates its own producer to brokers; opts (TLS, SASL) are appended. Records
// that cannot be delivered within 10 seconds fail.
func DialKafkaAuditor(brokers []string, opts ...kgo.Opt) (*KafkaAuditor, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(broker.AuditTopic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(10 * time.Second),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating audit producer: %w", err)
	}
	return &KafkaAuditor{cl: cl}, nil
}

// Audit queues recs for the next produce and waits for its acknowledgement. If ctx ends first it
// returns an error; the records may still be written.
func (a *KafkaAuditor) Audit(ctx context.Context, recs []AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.close {
		return ErrAuditClosed
	}
	krs, err := kafkaRecords(recs)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing audit records: %w", err)
	}
	a.qmu.Lock()
	b := a.pending
	if b == nil {
		b = &auditBatch{done: make(chan struct{})}
		a.pending = b
	}
	b.recs = append(b.recs, krs...)
	if !a.flushing {
		a.flushing = true
		go a.flush()
	}
	a.qmu.Unlock()
	select {
	case <-b.done:
		if b.err != nil {
			return fmt.Errorf("writing audit records: %w", b.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("writing audit records: %w", ctx.Err())
	}
}

// flush produces queued batches one at a time until the queue is empty. A produce ends within
// auditTimeout, or when Close closes a client the auditor owns; its waiters then get the error.
func (a *KafkaAuditor) flush() {
	for {
		a.qmu.Lock()
		b := a.pending
		a.pending = nil
		if b == nil {
			a.flushing = false
			a.qmu.Unlock()
			return
		}
		a.qmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
		b.err = a.cl.ProduceSync(ctx, b.recs...).FirstErr()
		cancel()
		close(b.done)
	}
}

// Close stops accepting records, waits for Audit calls in flight and closes the producer. It is
// idempotent.
func (a *KafkaAuditor) Close(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.close {
		return nil
	}
	a.close = true
	a.cl.Close()
	return nil
}
