package egress

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/consume"
	"github.com/veil-project/veil/pipeline"
)

// Webhook delivery: instead of producing to a topic, a stage POSTs each entry to the
// integration's HTTPS endpoint, so decrypted entries never rest in Kafka.
//
// Each request carries:
//   - Idempotency-Key: derived from the integration, the raw record the entry came from (its
//     veil-source header) and the entry id. A redelivery after a crash, a restart, a rebalance,
//     a retry or a replay carries the same key and the same body, so an integration that keeps the keys it has seen
//     (for the longest TTL of its ledgers) receives every entry exactly once.
//   - Veil-Timestamp: Unix seconds of this attempt.
//   - Veil-Signature: "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)); see Sign and
//     Verify. Receivers should also refuse stale timestamps (replays).
//
// A 2xx answer delivers the entry. Network errors, 5xx, 408, 425 and 429 are retried with
// backoff, without end: the partition waits, as it waits for the store. Any other answer (other
// 4xx; 3xx, since redirects are not followed) is permanent: the entry is dead-lettered to
// veil.deadletter with reason webhook_rejected, the status, its source and its idempotency key
// (never its content, and never the response body), and the next entry goes on. The audit
// records of a batch are written before any of its entries leaves; offsets are committed only
// after every entry of the batch was delivered or dead-lettered.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderTimestamp      = "Veil-Timestamp"
	HeaderSignature      = "Veil-Signature"
)

// ReasonWebhookRejected is the dead-letter reason of an entry the webhook refused for good.
const ReasonWebhookRejected = "webhook_rejected"

// MinWebhookSecret is the shortest webhook secret accepted, in bytes.
const MinWebhookSecret = 16

// WebhookConfig configures delivery to an HTTPS endpoint (Integration.Delivery webhook).
type WebhookConfig struct {
	Secret  []byte         // HMAC-SHA256 key of Veil-Signature; required, at least MinWebhookSecret bytes
	RootCAs *x509.CertPool // roots that verify the endpoint; nil: the system's
	Timeout time.Duration  // per request; default 30s
}

// Sign returns the Veil-Signature value of body sent at timestamp (Unix seconds, as sent in
// Veil-Timestamp).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is the Veil-Signature of body sent at timestamp, in constant
// time. It does not judge the timestamp's age: receivers should.
func Verify(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// IdempotencyKey is the key of one entry's delivery to integration: derived from the raw record
// the entry came from (source: its veil-source header, "ledger.<name>/partition/offset") and the
// entry id, so every redelivery — after a retry, a crash, a restart or a replay that re-emits
// encrypted.<ledger> — carries the same key, and distinct per integration.
func IdempotencyKey(integration, source, entryID string) string {
	h := sha256.New()
	var n [4]byte
	for _, s := range []string{"veil-egress-v1", integration, source, entryID} {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// sourceOf returns the raw record r was made from (its veil-source header), or r's own position
// when it has none.
func sourceOf(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == pipeline.HeaderSource && len(h.Value) > 0 {
			return string(h.Value)
		}
	}
	return fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
}

// newWebhookClient returns the HTTP client of a webhook: TLS 1.2 or newer, redirects not
// followed (a redirect could lead to plain HTTP or another host).
func newWebhookClient(c WebhookConfig) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.RootCAs}
	return &http.Client{
		Transport:     tr,
		Timeout:       c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// webhookBatch is the engine's handler for a webhook integration: it delivers the batch
// (deliverWebhook), then commits its offsets.
func (s *Stage) webhookBatch(ctx context.Context, b *consume.Batch) (bool, error) {
	st, err := s.deliverWebhook(ctx, b.Records)
	if err != nil {
		// Only cancellation ends a batch early: nothing is committed, and the batch is
		// delivered again, under the same keys, after a restart.
		return false, err
	}
	if err := s.eng.CommitRecords(ctx, b.Records...); err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		s.log.Warn("committing offsets failed; the batch will be delivered again under the same idempotency keys", "records", len(b.Records), "err", err)
	}
	s.obs.Batch(s.cfg.Integration.Name, st, true)
	return true, nil
}

// deliverWebhook delivers recs: opens their tokens (retrying transient failures), writes every
// audit record, then POSTs each entry in order. It returns an error only when ctx ends.
func (s *Stage) deliverWebhook(ctx context.Context, recs []*kgo.Record) (BatchStats, error) {
	var st BatchStats
	var outs []output
	for attempt := 1; ; attempt++ {
		var err error
		if outs, err = s.entries(ctx, recs); err == nil {
			break
		}
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		s.obs.Dependency("store", false)
		s.log.Warn("opening tokens failed, retrying", "records", len(recs), "attempt", attempt, "err", err)
		consume.Backoff(ctx, attempt)
	}
	defer func() {
		for i := range outs {
			if outs[i].rec != nil {
				clear(outs[i].rec.Value) // decrypted values
			}
		}
	}()
	if s.cfg.Integration.Decrypts() {
		s.obs.Dependency("store", true)
	}

	// Fail closed: no value leaves before its audit record is written.
	var audits []*kgo.Record
	for i := range outs {
		o := &outs[i]
		for _, a := range o.audits {
			kr, err := a.KafkaRecord()
			if err != nil {
				s.log.Warn("not delivering an entry whose audit record does not encode", "source", o.src(recs[i]), "err", err)
				o.rec = nil
				break
			}
			audits = append(audits, kr)
		}
		st.Opened += o.opened
		st.Masked += o.masked
	}
	if err := s.produceAll(ctx, "audit records", audits); err != nil {
		return st, err
	}
	st.Audited = len(audits)

	for i := range outs {
		o := &outs[i]
		if o.rec == nil {
			st.Skipped++
			continue
		}
		r := recs[i]
		key := IdempotencyKey(s.cfg.Integration.Name, sourceOf(r), o.id)
		status, err := s.deliver(ctx, key, o.rec.Value)
		switch {
		case err != nil:
			return st, err
		case status/100 == 2:
			st.Delivered++
		default:
			if err := s.deadLetterRejected(ctx, r, o, key, status); err != nil {
				return st, err
			}
			st.Rejected++
		}
	}
	return st, nil
}

func (o *output) src(r *kgo.Record) string {
	return fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
}

// deliver POSTs body until the webhook answers 2xx or a permanent status, which it returns; the
// error is ctx's only.
func (s *Stage) deliver(ctx context.Context, key string, body []byte) (int, error) {
	for attempt := 1; ; attempt++ {
		status, err := s.post(ctx, key, body)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err == nil && !retryable(status) {
			return status, nil
		}
		// The error names the host only, and the status carries no body: no value is logged.
		s.log.Warn("webhook delivery failed, retrying", "idempotency_key", key, "status", status, "attempt", attempt, "err", err)
		consume.Backoff(ctx, attempt)
	}
}

// retryable reports whether a status is worth another attempt: 5xx, request timeout, too early,
// too many requests.
func retryable(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooEarly || status == http.StatusTooManyRequests
}

// post sends one attempt. The error never holds the URL's path or query, the body or the answer.
func (s *Stage) post(ctx context.Context, key string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.Integration.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("building webhook request failed")
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "veil-egress")
	req.Header.Set(HeaderIdempotencyKey, key)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(s.cfg.Webhook.Secret, ts, body))
	resp, err := s.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("POST %s: %w", s.host, ue.Err)
		}
		return 0, err
	}
	// The answer is drained (so the connection is reused) and never read for content.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// webhookDeadLetter is the veil.deadletter record of an entry the webhook refused for good. It
// names the entry (source, app, key) and the status; the entry itself stays, sealed, on its
// encrypted topic, from where `veil replay` can deliver it again.
type webhookDeadLetter struct {
	Reason         string    `json:"reason"`
	Integration    string    `json:"integration"`
	Status         int       `json:"status"`
	Source         string    `json:"source"`
	AppID          string    `json:"app_id,omitempty"`
	IdempotencyKey string    `json:"idempotency_key"`
	Received       time.Time `json:"received_at"`
}

func (s *Stage) deadLetterRejected(ctx context.Context, r *kgo.Record, o *output, key string, status int) error {
	src := o.src(r)
	s.log.Warn("webhook refused an entry; dead-lettered", "source", src, "status", status, "idempotency_key", key)
	b, err := json.Marshal(webhookDeadLetter{
		Reason: ReasonWebhookRejected, Integration: s.cfg.Integration.Name, Status: status,
		Source: src, AppID: o.app, IdempotencyKey: key, Received: s.now().UTC().Truncate(time.Second),
	})
	if err != nil {
		return fmt.Errorf("encoding dead letter: %w", err)
	}
	return s.produceAll(ctx, "dead letter", []*kgo.Record{{
		Topic: broker.DeadLetterTopic, Key: r.Key, Value: b,
		Headers: []kgo.RecordHeader{
			{Key: pipeline.HeaderSource, Value: []byte(src)},
			{Key: pipeline.HeaderReason, Value: []byte(ReasonWebhookRejected)},
		},
	}})
}

// produceAll produces recs, retrying with backoff until they are all acknowledged; the error is
// ctx's only. A retry may write some of them twice.
func (s *Stage) produceAll(ctx context.Context, what string, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := s.eng.Client().ProduceSync(ctx, recs...).FirstErr()
		if err == nil {
			s.obs.Dependency("broker", true)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.obs.Dependency("broker", false)
		s.log.Warn("producing "+what+" failed, retrying", "attempt", attempt, "err", err)
		consume.Backoff(ctx, attempt)
	}
}
