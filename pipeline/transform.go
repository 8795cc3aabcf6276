// Package pipeline is veil's exactly-once stream processor: it consumes the ledger.<name> topics
// in one consumer group and, per record, decodes, validates, flags, seals, stores and fans out the
// encrypted and redacted views, with the produce and the offset commit in one Kafka transaction.
//
// Guarantees: a sensitive value leaves this package only sealed (as a veil:v1: token whose
// ciphertext is in the store) or redacted (★★★★★); bad input goes to the dead-letter topic with its
// raw bytes sealed; a transient failure (KMS, store) aborts the batch and retries, never passing
// plaintext and never committing offsets past unprocessed records.
package pipeline

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// DeadLetterApp is the app under whose keys dead-letter payloads are sealed when the entry's own
// app is unknown or could not be read.
const DeadLetterApp = "veil.deadletter"

// DeadLetterTTL is how long a dead-lettered payload stays revealable.
const DeadLetterTTL = 24 * time.Hour

// Record headers set on every output record.
const (
	HeaderSource    = "veil-source"    // topic/partition/offset of the raw record
	HeaderExpiry    = "veil-expiry"    // RFC 3339 expiry of the sealed values
	HeaderSensitive = "veil-sensitive" // "true" or "false"
	HeaderReason    = "veil-reason"    // dead-letter reason
)

// Apps resolves an app id to its settings; ok is false for apps veil does not know.
type Apps func(app string) (settings ledgers.AppSettings, ok bool)

// Transformer turns one raw ledger record into its outputs. It is safe for concurrent use.
type Transformer struct {
	Registry *schemas.Registry
	Ledgers  *ledgers.Table
	Apps     Apps
	Sealer   *envelope.Sealer
	Blobs    *blob.Service // moves blob media into the blob store; nil seals media inline
	// MaxItemBytes bounds the sealed record of one entry (and of one dead-letter payload): the
	// largest value the store accepts, 0 for no bound beyond the envelope's. An entry whose sealed
	// record is larger is dead-lettered too_large (the store would refuse it on every retry and
	// hold the partition); a dead letter whose payload is larger keeps no payload.
	MaxItemBytes int
	// Store is read (Get only) to tell a genuine token at a sensitive path, passed through, from
	// token-shaped text, sealed. Nil takes no token as genuine: every one is sealed again.
	Store      store.Store
	Limits     schemas.Limits
	FutureSkew time.Duration    // entries with ts further in the future are dead-lettered; default 5m
	MaxAge     time.Duration    // entries older than this are dead-lettered; default 7 days
	Clock      func() time.Time // default time.Now
	Logger     *slog.Logger     // optional
}

// Output is what one raw record becomes.
type Output struct {
	Item  *store.Item  // sealed values to store before the commit; nil if nothing was sealed
	Media []store.Item // sealed media keys of blob entries, stored with Item
	// AfterCommit runs once the outputs are committed (deleting staged media); nil if nothing.
	AfterCommit func(context.Context)
	Encrypted   *kgo.Record // to encrypted.<ledger>; nil when dead-lettered
	Redacted    *kgo.Record // to redacted.<ledger>; nil when dead-lettered
	DeadLetter  *kgo.Record // to veil.deadletter; nil unless the input was rejected
	Ledger      string
	Sensitive   bool
	Reason      schemas.Reason // why the record was dead-lettered
	SealTime    time.Duration  // time spent sealing the entry's values; zero if none were sealed
}

// Source names a raw record.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (s Source) String() string { return string(appendSource(nil, s)) }

func (t *Transformer) now() time.Time {
	if t.Clock != nil {
		return t.Clock()
	}
	return time.Now()
}

// Transform processes one raw record. Bad input is not an error: it yields a dead-letter Output.
// An error marked Transient (the keys, the KMS or the blob store failed) means the record could not
// be processed now and must be retried; any other error is unexpected, and the processor retries
// it a bounded number of times before it dead-letters the record (Reject).
func (t *Transformer) Transform(ctx context.Context, src Source, key, value []byte) (Output, error) {
	out, err := t.transform(ctx, src, key, value)
	if err == nil {
		return out, nil
	}
	var perm *permanentError
	if errors.As(err, &perm) {
		return t.deadLetter(ctx, src, value, perm, sourceLedger(t.Ledgers, src))
	}
	if err != nil {
		return Output{}, fmt.Errorf("processing %s: %w", src, err)
	}
	return out, nil
}

// Reject dead-letters a record with reason, whatever it holds: what the processor does with a
// record whose processing keeps failing for no reason it knows, so that it does not hold its
// partition. It fails only when the dead letter cannot be sealed (a transient failure).
func (t *Transformer) Reject(ctx context.Context, src Source, key, value []byte, reason schemas.Reason) (Output, error) {
	return t.deadLetter(ctx, src, value, &permanentError{reason: reason}, sourceLedger(t.Ledgers, src))
}

// sourceLedger names the ledger whose raw topic src is, if the table knows it; "" otherwise. It
// is what Output.Ledger holds for a dead letter: never a name taken from the record itself, so a
// producer cannot choose a metric label.
func sourceLedger(table *ledgers.Table, src Source) string {
	name, ok := broker.LedgerOf(src.Topic)
	if !ok {
		return ""
	}
	if led, known := table.Lookup(name); known {
		return led.Name
	}
	return ""
}

// unsealable reports whether a Seal error is the input's fault (it would fail the same way on
// every retry) rather than the keys' or the KMS's.
func unsealable(err error) bool {
	return errors.Is(err, envelope.ErrInvalidInput) || errors.Is(err, keyring.ErrInvalidApp)
}

// maxTokenLookups bounds the store lookups one entry can cause (one per token at a sensitive
// path; a whole-data entry can hold thousands of top-level members): beyond it, tokens are not
// looked up but sealed as values (fail closed), so a hostile entry costs at most this many round
// trips to a remote store.
const maxTokenLookups = schemas.MaxSensitivePaths

// genuine reports whether s is a token of a live record of app: its ref is in the store and its
// tag matches the record's field (the key-free part of opening; nothing is decrypted). A copied
// token passes; an edited, forged or other app's token does not. Without a Store no token is
// taken as genuine (fail closed: it is sealed). A store failure is transient.
func (t *Transformer) genuine(ctx context.Context, app, s string, media []store.Item) (bool, error) {
	tok, err := envelope.ParseToken(s)
	if err != nil || tok.App != app {
		return false, nil
	}
	var item store.Item
	for _, m := range media {
		if m.App == app && m.Ref == tok.Ref {
			item = m // minted by sealMedia in this transform, stored with the entry
		}
	}
	if item.Value == nil {
		if t.Store == nil {
			return false, nil
		}
		item, err = t.Store.Get(ctx, app, tok.Ref)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, Transient(fmt.Errorf("looking up a token's record: %w", err))
		}
	}
	var rec envelope.Record
	if err := rec.UnmarshalBinary(item.Value); err != nil {
		return false, nil
	}
	return envelope.CheckToken(&rec, tok, t.now()) == nil, nil
}

func validToken(s string) bool {
	_, err := envelope.ParseToken(s)
	return err == nil
}

// RedactTokens replaces every token string in v (a decoded JSON value) with the redacted view,
// in place, and returns v: what the redacted view holds where the encrypted view holds a token.
// Any string with the token scheme prefix counts, valid or not.
func RedactTokens(v any) any {
	switch x := v.(type) {
	case string:
		if schemas.IsToken(x) {
			return envelope.Redacted
		}
	case map[string]any:
		for k, e := range x {
			x[k] = RedactTokens(e)
		}
	case []any:
		for i, e := range x {
			x[i] = RedactTokens(e)
		}
	}
	return v
}

// RefFor derives the ref id of an entry from its app, its id and its source position: the ref
// every first attempt at sealing a raw record uses, so whoever seals a record second (a retried
// batch, a replay) finds it taken in the store (a ref is sealed once, see sinks/store), and a
// recreated topic never collides with live ones.
func RefFor(app, entryID string, src Source) envelope.RefID {
	var buf [256]byte // app, id and topic are bounded names: the message fits, without allocating
	b := buf[:0]
	for _, s := range []string{app, entryID, src.Topic} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(src.Partition))
	b = binary.BigEndian.AppendUint64(b, uint64(src.Offset))
	sum := sha256.Sum256(b)
	var ref envelope.RefID
	copy(ref[:], sum[:])
	return ref
}

// freshRefsKey marks a context under which entries are sealed under fresh random refs instead of
// RefFor's: the processor seals a batch so when an earlier attempt at it (aborted after its store
// write, or cut short by a crash) already holds the derived refs. The store keeps the first record
// of a ref, and the tokens of that attempt were never committed, so its records are orphans that
// die at their expiry; the committed tokens are those of the fresh refs.
type freshRefsKey struct{}

func withFreshRefs(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshRefsKey{}, true)
}

func refFor(ctx context.Context, app, entryID string, src Source) envelope.RefID {
	if ctx.Value(freshRefsKey{}) != nil {
		var ref envelope.RefID
		rand.Read(ref[:]) // never fails (crypto/rand)
		return ref
	}
	return RefFor(app, entryID, src)
}

func (t *Transformer) futureSkew() time.Duration {
	if t.FutureSkew > 0 {
		return t.FutureSkew
	}
	return 5 * time.Minute
}

func (t *Transformer) maxAge() time.Duration {
	if t.MaxAge > 0 {
		return t.MaxAge
	}
	return 7 * 24 * time.Hour
}

// DeadLetter is what a veil.deadletter record says about the record it sets aside. The record
// (deadLetterRecord) also holds the token of the raw bytes; a reader that decodes into
// DeadLetter, as the console does, never has that token in memory.
type DeadLetter struct {
	Reason    schemas.Reason `json:"reason"`
	Field     string         `json:"field,omitempty"`
	Source    string         `json:"source"`
	AppID     string         `json:"app_id,omitempty"`
	Received  time.Time      `json:"received_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	Size      int            `json:"size"`
}

// deadLetterRecord is the JSON value written to veil.deadletter. The raw bytes are never in it:
// only their token, or nothing when they are too large to keep.
type deadLetterRecord struct {
	DeadLetter
	Payload string `json:"payload,omitempty"` // token of the raw bytes (base64 inside)
	// PayloadOmitted is true when the raw bytes were too large to keep (Reason is then too_large):
	// they are in the raw topic until its retention ends, and nowhere else.
	PayloadOmitted bool `json:"payload_omitted,omitempty"`
}

// DeadLetterMaxPayload is the size of the largest record whose bytes a dead letter keeps (sealed,
// as base64, which must fit envelope.MaxValueSize). A larger record (one that is a few KiB on the
// wire may be tens of MiB decompressed) is dead-lettered without its bytes, with reason too_large,
// instead of making a value too large to seal or to store.
const DeadLetterMaxPayload = 8 << 20

// fits reports whether a sealed record is small enough for the store (MaxItemBytes).
func (t *Transformer) fits(sealed []byte) bool {
	return t.MaxItemBytes <= 0 || len(sealed) <= t.MaxItemBytes
}

func (t *Transformer) deadLetter(ctx context.Context, src Source, value []byte, perm *permanentError, ledger string) (Output, error) {
	now := t.now().UTC().Truncate(time.Second)
	expiry := now.Add(DeadLetterTTL)
	ref := refFor(ctx, DeadLetterApp, "", src)
	dlr := deadLetterRecord{DeadLetter: DeadLetter{
		Reason: perm.reason, Field: perm.field, Source: src.String(),
		Received: now, ExpiresAt: expiry, Size: len(value),
	}}
	var item *store.Item
	if len(value) <= DeadLetterMaxPayload {
		payload, err := json.Marshal(base64.StdEncoding.EncodeToString(value))
		if err != nil {
			return Output{}, fmt.Errorf("encoding dead-letter payload: %w", err)
		}
		rec, toks, err := t.Sealer.Seal(ctx, envelope.Header{App: DeadLetterApp, Ledger: "deadletter", Ref: ref, Expiry: expiry},
			[]envelope.Field{{Path: "payload", Value: payload}})
		clear(payload)
		switch {
		case errors.Is(err, envelope.ErrInvalidInput):
			// Limits configured beyond what one sealed value holds: keep the record without its bytes.
		case err != nil:
			return Output{}, Transient(fmt.Errorf("sealing dead-letter payload: %w", err))
		default:
			b, err := rec.MarshalBinary()
			if err != nil {
				return Output{}, fmt.Errorf("encoding sealed dead-letter record: %w", err)
			}
			if t.fits(b) {
				item = &store.Item{App: DeadLetterApp, Ref: ref, Expiry: expiry, Value: b}
				dlr.Payload = toks[0].Encode()
			}
		}
	}
	if item == nil {
		dlr.PayloadOmitted = true
		if perm.reason != schemas.ReasonTooLarge {
			// The reason must say why the bytes are missing; the original one goes in the log.
			if t.Logger != nil {
				t.Logger.Warn("dead-lettering a record too large to keep", "source", src.String(), "reason", string(perm.reason), "size", len(value))
			}
			dlr.Reason, dlr.Field = schemas.ReasonTooLarge, ""
		}
	}
	dl, err := json.Marshal(dlr)
	if err != nil {
		return Output{}, fmt.Errorf("encoding dead-letter record: %w", err)
	}
	return Output{
		Item: item,
		DeadLetter: &kgo.Record{Topic: broker.DeadLetterTopic, Value: dl, Headers: []kgo.RecordHeader{
			{Key: HeaderSource, Value: []byte(src.String())},
			{Key: HeaderReason, Value: []byte(dlr.Reason)},
		}},
		Ledger: ledger,
		Reason: dlr.Reason,
	}, nil
}
