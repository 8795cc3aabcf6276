package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// Result counts what a replay did (or, dry run, would do).
type Result struct {
	Read      int64 // source records processed, raw and encrypted
	Encrypted int64 // records produced to encrypted topics
	Redacted  int64 // records produced to redacted topics, rebuilt ones included
	Rebuilt   int64 // of Redacted, rebuilt from encrypted topics (raw data gone)
	Stored    int64 // store rows written
	Present   int64 // source records whose every wanted output was already there
	// Sealed counts source records whose encrypted output is missing but whose ref the store
	// already holds: a ref is sealed once, and the tokens of the first seal cannot be made again,
	// so their encrypted output is not rebuilt (their redacted one is, if missing).
	Sealed   int64
	Filtered int64 // records of apps other than Config.App
	Erased   int64 // records of an erased app from before its erasure (Config.Erased): never replayed
	Skipped  int64 // dead-lettered input, encrypted records that do not decode or name no raw record
	// Pending counts raw records in the window past the pipeline group's committed offsets: the
	// pipeline has not processed them yet and produces them itself, so replay leaves them.
	Pending int64
	Sources []Source // per ledger, what was read
	Rewound []string // consumer groups moved back to From
}

// Source says what a replay read for one ledger.
type Source struct {
	Ledger    string
	Raw       string // the raw topic read, "" if none could be
	Encrypted string // the encrypted topic read to rebuild redacted outputs whose raw data is gone, or ""
	Why       string // what was found, for the operator
}

// Progress is a snapshot passed to Config.OnRecord.
type Progress struct {
	Read, Total, Produced int64
}

type runner struct {
	cfg   Config
	adm   *kadm.Client
	admCl *kgo.Client
	prod  *kgo.Client // transactional; nil on a dry run
	cp    *checkpoint

	total                                                        atomic.Int64
	read, encrypted, redacted, rebuilt, stored, present, skipped atomic.Int64
	sealed, filtered, waiting, erased                            atomic.Int64
	sources                                                      []Source

	// the open batch
	recs    []*kgo.Record
	items   []store.Item
	itemRec []int            // index in recs of the encrypted record of each item
	pending map[string]int64 // source partition → last offset processed in the batch
	nEnc    int64
	nRed    int64
	nReb    int64

	start time.Time
}

// Run replays cfg.Ledgers over [cfg.From, cfg.To] into cfg.Targets; see the package comment. It
// returns what it did so far along with any error; cancelling ctx stops it after aborting the
// transaction in flight (the checkpoint keeps what was committed) and returns ctx.Err().
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	cp, err := loadCheckpoint(cfg.Checkpoint, &cfg)
	if err != nil {
		return Result{}, err
	}
	if err := cfg.validateWindow(); err != nil {
		return Result{}, err
	}
	cp.To = cfg.To.UTC()
	r := &runner{cfg: cfg, cp: cp, pending: make(map[string]int64), start: time.Now()}
	r.admCl, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOpts...)...)
	if err != nil {
		return Result{}, fmt.Errorf("connecting to Kafka: %w", err)
	}
	defer r.admCl.Close()
	r.adm = kadm.NewClient(r.admCl)
	if !cfg.DryRun {
		r.prod, err = kgo.NewClient(append([]kgo.Opt{
			kgo.SeedBrokers(cfg.Brokers...),
			kgo.TransactionalID(cfg.TransactionalID),
			kgo.TransactionTimeout(60 * time.Second),
			kgo.ProducerBatchMaxBytes(4 << 20),
		}, cfg.KafkaOpts...)...)
		if err != nil {
			return Result{}, fmt.Errorf("creating transactional producer: %w", err)
		}
		defer r.prod.Close()
	}

	plans, err := r.plan(ctx)
	if err != nil {
		return r.result(), err
	}
	stop := r.reportEvery(cfg.Progress, cfg.ProgressInterval)
	for _, p := range plans {
		if err = r.ledger(ctx, p); err != nil {
			break
		}
	}
	stop()
	if err != nil {
		r.abort()
		return r.result(), err
	}
	res := r.result()
	if !cfg.DryRun {
		res.Rewound, err = r.rewindGroups(ctx)
	}
	return res, err
}

// plan is the work of one ledger.
type plan struct {
	ledger             string
	raw, enc, red      string
	rawSpans, encSpans spans
	held               map[int32]held // what each raw partition still holds
}

// held is what one raw partition still holds: offsets [start, end), the oldest record written at
// first (zero if it could not be read).
type held struct {
	start, end int64
	first      time.Time
}

// gone reports whether the raw record at offset off of partition part, whose output was written
// at ts, is no longer in the raw topic: its offset is outside what the partition holds, or the
// oldest record the partition holds was written after the output (the partition lost its data,
// as a broker that keeps no raw records does on restart, and was written again since).
func (p plan) gone(part int32, off int64, ts time.Time) bool {
	h, ok := p.held[part]
	return !ok || off < h.start || off >= h.end || !h.first.IsZero() && h.first.After(ts)
}

func (r *runner) plan(ctx context.Context) ([]plan, error) {
	var plans []plan
	for _, l := range r.cfg.Ledgers {
		p := plan{ledger: l, raw: broker.RawTopic(l), enc: broker.EncryptedTopic(l), red: broker.RedactedTopic(l)}
		var err error
		if p.rawSpans, err = window(ctx, r.adm, r.cfg.From, r.cfg.To, p.raw); err != nil {
			return nil, err
		}
		if err := r.capToPipeline(ctx, p.raw, p.rawSpans); err != nil {
			return nil, err
		}
		if p.held, err = r.rawHeld(ctx, p.raw); err != nil {
			return nil, err
		}
		src, err := r.sourcesOf(ctx, &p)
		if err != nil {
			return nil, err
		}
		if r.cfg.Progress != nil {
			fmt.Fprintf(r.cfg.Progress, "replay: %s: reading %s\n", l, src.Why)
		}
		r.sources = append(r.sources, src)
		for _, sp := range []spans{p.rawSpans, p.encSpans} {
			for t, ps := range sp {
				for part, s := range ps {
					if done, ok := r.cp.Done[partKey(t, part)]; ok && done+1 > s.lo {
						s.lo = min(done+1, s.hi)
						ps[part] = s
					}
				}
			}
			r.total.Add(sp.size())
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// sourcesOf decides what to read for p, from what its raw partitions still hold: the raw topic
// always; the encrypted topic too when it has outputs in the window older than the oldest record
// some raw partition holds (every output if a partition holds nothing): their raw records are
// gone (retention, or a broker that lost them), and their redacted outputs can be rebuilt from
// the encrypted ones. Which encrypted records those are is decided per record (plan.gone).
func (r *runner) sourcesOf(ctx context.Context, p *plan) (Source, error) {
	src := Source{Ledger: p.ledger, Raw: p.raw}
	var cutoff time.Time // the latest "oldest record held" over the raw partitions
	var notes []string
	for _, part := range slices.Sorted(maps.Keys(p.held)) {
		switch h := p.held[part]; {
		case h.start >= h.end:
			cutoff = r.cfg.To.Add(time.Millisecond)
			notes = append(notes, fmt.Sprintf("partition %d holds no record", part))
		case !h.first.IsZero() && h.first.After(r.cfg.From):
			cutoff = maxTime(cutoff, h.first)
			notes = append(notes, fmt.Sprintf("partition %d none before %s", part, h.first.UTC().Format(time.RFC3339)))
		}
	}
	if !cutoff.After(r.cfg.From) {
		src.Why = p.raw + ", which holds the whole window"
		return src, nil
	}
	probe, err := window(ctx, r.adm, r.cfg.From, minTime(cutoff.Add(-time.Millisecond), r.cfg.To), p.enc)
	if err != nil {
		return src, err
	}
	if probe.size() == 0 {
		src.Why = p.raw + " (no output in the window is older than what it holds)"
		return src, nil
	}
	if !r.cfg.wantRedacted() {
		src.Why = fmt.Sprintf("%s (%s); %s may hold outputs of records it no longer holds: their encrypted outputs cannot be rebuilt",
			p.raw, strings.Join(notes, ", "), p.enc)
		return src, nil
	}
	if p.encSpans, err = window(ctx, r.adm, r.cfg.From, r.cfg.To, p.enc); err != nil {
		return src, err
	}
	src.Encrypted = p.enc
	src.Why = fmt.Sprintf("%s (%s), and %s: the redacted outputs of records %s no longer holds are rebuilt from the encrypted ones",
		p.raw, strings.Join(notes, ", "), p.enc, p.raw)
	return src, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// capToPipeline ends each raw span at the pipeline group's committed offset: the records after it
// are the pipeline's to process (it will, when it runs), and replay never emits an output the
// pipeline may emit too. It counts them in Pending.
func (r *runner) capToPipeline(ctx context.Context, topic string, sp spans) error {
	committed, err := r.adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), r.cfg.PipelineGroup, topic)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("fetching the offsets of the pipeline group %s: %w", r.cfg.PipelineGroup, err)
	}
	for part, s := range sp[topic] {
		limit := int64(-1)
		if o, ok := committed.Lookup(topic, part); ok && o.Err == nil {
			limit = o.At
		}
		limit = max(limit, s.lo)
		if s.hi > limit {
			r.waiting.Add(s.hi - limit)
			s.hi = limit
			sp[topic][part] = s
		}
	}
	return nil
}

// listErr is err, else the first per-partition error of o.
func listErr(o kadm.ListedOffsets, err error) error {
	if err != nil {
		return err
	}
	return o.Error()
}

// endOffsets lists the end offsets of topic's partitions.
func (r *runner) endOffsets(ctx context.Context, topic string) (kadm.ListedOffsets, error) {
	ends, err := r.adm.ListEndOffsets(ctx, topic)
	if err = listErr(ends, err); err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	return ends, nil
}

// rawHeld lists what each partition of a raw topic still holds.
func (r *runner) rawHeld(ctx context.Context, topic string) (map[int32]held, error) {
	starts, err := r.adm.ListStartOffsets(ctx, topic)
	if err = listErr(starts, err); err != nil {
		return nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	ends, err := r.endOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]held)
	first := make(spans)
	starts.Each(func(o kadm.ListedOffset) {
		e, _ := ends.Lookup(o.Topic, o.Partition)
		out[o.Partition] = held{start: o.Offset, end: e.Offset}
		if o.Offset < e.Offset {
			// The first few offsets: the first may be a transaction marker.
			first.set(topic, o.Partition, span{o.Offset, min(e.Offset, o.Offset+16)})
		}
	})
	err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, first, nil, func(rec *kgo.Record) error {
		if h := out[rec.Partition]; h.first.IsZero() {
			h.first = rec.Timestamp
			out[rec.Partition] = h
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the oldest records of %s: %w", topic, err)
	}
	return out, nil
}

func (r *runner) ledger(ctx context.Context, p plan) error {
	presentEnc, presentRed := map[string]bool{}, map[string]bool{}
	var err error
	if r.cfg.wantEncrypted() {
		if presentEnc, err = r.outputs(ctx, p.enc); err != nil {
			return err
		}
	}
	if r.cfg.wantRedacted() {
		if presentRed, err = r.outputs(ctx, p.red); err != nil {
			return err
		}
	}
	err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, p.rawSpans, r.gap, func(rec *kgo.Record) error {
		return r.fromRaw(ctx, rec, presentEnc, presentRed)
	})
	if err != nil {
		return err
	}
	if len(p.encSpans[p.enc]) > 0 {
		err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, p.encSpans, r.gap, func(rec *kgo.Record) error {
			return r.fromEncrypted(ctx, rec, p, presentRed)
		})
		if err != nil {
			return err
		}
	}
	return r.flush(ctx)
}

// gap takes offsets that hold no data record (transaction markers, aborted records) off the total.
func (r *runner) gap(n int64) { r.total.Add(-n) }

// outputs returns the veil-source header of every committed record of an output topic from From
// minus OutputSlack on: the raw records whose output is already there. It reads up to the end the
// topic had when called, once every transaction open then has ended, so every output committed
// before the pipeline group's offsets were fetched (plan) is seen.
func (r *runner) outputs(ctx context.Context, topic string) (map[string]bool, error) {
	lo, err := r.adm.ListOffsetsAfterMilli(ctx, r.cfg.From.Add(-r.cfg.OutputSlack).UnixMilli(), topic)
	if err = listErr(lo, err); err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	ends, err := r.endOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := waitStable(ctx, r.adm, topic, ends); err != nil {
		return nil, err
	}
	sp := make(spans)
	ends.Each(func(e kadm.ListedOffset) {
		start := e.Offset
		if l, ok := lo.Lookup(e.Topic, e.Partition); ok && l.Offset >= 0 {
			start = min(l.Offset, e.Offset)
		}
		sp.set(e.Topic, e.Partition, span{start, e.Offset})
	})
	set := make(map[string]bool)
	err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, sp, nil, func(rec *kgo.Record) error {
		if src, ok := header(rec, pipeline.HeaderSource); ok {
			set[src] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s for outputs already present: %w", topic, err)
	}
	return set, nil
}

// stableWait bounds how long outputs waits for the transactions open on a topic to end: a
// transaction that outlives its timeout (60 s in veil) is aborted by the broker.
const stableWait = 2 * time.Minute

// waitStable waits until the last stable offset of every partition of topic reaches ends.
func waitStable(ctx context.Context, adm *kadm.Client, topic string, ends kadm.ListedOffsets) error {
	deadline := time.Now().Add(stableWait)
	for {
		lso, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return fmt.Errorf("listing stable offsets of %s: %w", topic, err)
		}
		stable := true
		ends.Each(func(e kadm.ListedOffset) {
			l, ok := lso.Lookup(e.Topic, e.Partition)
			stable = stable && ok && l.Err == nil && l.Offset >= e.Offset
		})
		if stable {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("transactions on %s stayed open for %s", topic, stableWait)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func header(rec *kgo.Record, key string) (string, bool) {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func (r *runner) fromRaw(ctx context.Context, rec *kgo.Record, presentEnc, presentRed map[string]bool) error {
	if err := r.tick(ctx); err != nil {
		return err
	}
	r.mark(rec)
	src := pipeline.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	key := src.String()
	if r.cfg.App != "" || len(r.cfg.Erased) > 0 {
		app := appOf(rec.Value)
		if r.cfg.App != "" && app != r.cfg.App {
			r.filtered.Add(1)
			return r.maybeFlush(ctx)
		}
		if r.erasedRecord(app, rec.Timestamp) {
			return r.maybeFlush(ctx)
		}
	}
	needEnc := r.cfg.wantEncrypted() && !presentEnc[key]
	needRed := r.cfg.wantRedacted() && !presentRed[key]
	if !needEnc && !needRed {
		r.present.Add(1)
		return r.maybeFlush(ctx)
	}
	out, err := r.cfg.Transformer.Transform(ctx, src, rec.Key, rec.Value)
	if err != nil {
		return err
	}
	if out.DeadLetter != nil {
		r.skipped.Add(1) // the live run dead-lettered it already
		return r.maybeFlush(ctx)
	}
	if needEnc && out.Encrypted != nil && out.Item != nil && rec.Topic == broker.RawTopic(blobLedger) {
		taken, err := r.mediaSealed(ctx, rec, src)
		if err != nil {
			return err
		}
		if taken {
			needEnc = false
			presentEnc[key] = true
			r.sealed.Add(1)
		}
	}
	if needEnc && out.Encrypted != nil {
		if out.Item != nil {
			r.items = append(r.items, *out.Item)
			r.itemRec = append(r.itemRec, len(r.recs))
		}
		r.recs = append(r.recs, out.Encrypted)
		presentEnc[key] = true
		r.nEnc++
	}
	if needRed && out.Redacted != nil {
		r.recs = append(r.recs, out.Redacted)
		presentRed[key] = true
		r.nRed++
	}
	return r.maybeFlush(ctx)
}

// blobLedger is the ledger whose media the pipeline seals under refs of their own.
const blobLedger = "blob"

// mediaSealed reports whether the store holds the ref the pipeline seals a blob entry's media
// under (pipeline.RefFor of "<id>#<path>"): such an entry was sealed, even when its own ref was
// not (an entry whose only sensitive values are media), so its tokens cannot be made again.
func (r *runner) mediaSealed(ctx context.Context, rec *kgo.Record, src pipeline.Source) (bool, error) {
	if r.cfg.Store == nil {
		return false, nil
	}
	var v struct {
		ID    string `json:"id"`
		AppID string `json:"app_id"`
	}
	if json.Unmarshal(rec.Value, &v) != nil {
		return false, nil
	}
	for _, path := range []string{"data.content", "data.object"} {
		_, err := r.cfg.Store.Get(ctx, v.AppID, pipeline.RefFor(v.AppID, v.ID+"#"+path, src))
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, store.ErrNotFound):
			return false, fmt.Errorf("reading the encrypted store: %w", err)
		}
	}
	return false, nil
}

// fromEncrypted rebuilds the redacted output of an encrypted record whose raw record is gone.
func (r *runner) fromEncrypted(ctx context.Context, rec *kgo.Record, p plan, presentRed map[string]bool) error {
	src, ok := header(rec, pipeline.HeaderSource)
	topic, part, off, perr := parseSource(src)
	if ok && perr == nil && topic == p.raw && !p.gone(part, off, rec.Timestamp) {
		// The raw topic still holds it: the raw pass handled it, or it is outside the window.
		r.total.Add(-1)
		r.pending[partKey(rec.Topic, rec.Partition)] = rec.Offset
		return r.maybeFlush(ctx)
	}
	if err := r.tick(ctx); err != nil {
		return err
	}
	r.mark(rec)
	if !ok || perr != nil || topic != p.raw {
		r.skipped.Add(1)
		return r.maybeFlush(ctx)
	}
	e, err := schemas.Decode(rec.Value, r.cfg.Transformer.Limits)
	if err != nil {
		r.skipped.Add(1)
		return r.maybeFlush(ctx)
	}
	if r.cfg.App != "" && e.AppID != r.cfg.App {
		r.filtered.Add(1)
		return r.maybeFlush(ctx)
	}
	if r.erasedRecord(e.AppID, rec.Timestamp) {
		return r.maybeFlush(ctx)
	}
	if presentRed[src] {
		r.present.Add(1)
		return r.maybeFlush(ctx)
	}
	pipeline.RedactTokens(e.Data)
	b, err := e.Encode()
	if err != nil {
		r.skipped.Add(1)
		return r.maybeFlush(ctx)
	}
	r.recs = append(r.recs, &kgo.Record{Topic: p.red, Key: rec.Key, Value: b, Headers: slices.Clone(rec.Headers)})
	presentRed[src] = true
	r.nRed++
	r.nReb++
	return r.maybeFlush(ctx)
}

// erasedRecord reports (and counts) a record of an erased app from before its erasure.
func (r *runner) erasedRecord(app string, ts time.Time) bool {
	until, ok := r.cfg.Erased[app]
	if ok && ts.Before(until) {
		r.erased.Add(1)
		return true
	}
	return false
}

// parseSource splits a veil-source header "topic/partition/offset".
func parseSource(s string) (string, int32, int64, error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", 0, 0, errors.New("bad source")
	}
	j := strings.LastIndexByte(s[:i], '/')
	if j < 0 {
		return "", 0, 0, errors.New("bad source")
	}
	p, err1 := strconv.ParseInt(s[j+1:i], 10, 32)
	o, err2 := strconv.ParseInt(s[i+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, 0, errors.New("bad source")
	}
	return s[:j], int32(p), o, nil
}

// appOf reads the app_id of a raw entry without validating the rest; "" if it has none.
func appOf(b []byte) string {
	var v struct {
		AppID string `json:"app_id"`
	}
	_ = json.Unmarshal(b, &v)
	return v.AppID
}

// mark records rec as processed in the open batch.
func (r *runner) mark(rec *kgo.Record) {
	r.read.Add(1)
	r.pending[partKey(rec.Topic, rec.Partition)] = rec.Offset
	if r.cfg.OnRecord != nil {
		r.cfg.OnRecord(Progress{Read: r.read.Load(), Total: r.total.Load(), Produced: r.encrypted.Load() + r.redacted.Load() + r.nEnc + r.nRed})
	}
}

// tick waits as long as --rate asks before the next record.
func (r *runner) tick(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.cfg.Rate <= 0 {
		return nil
	}
	due := r.start.Add(time.Duration(float64(r.read.Load()) / r.cfg.Rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func (r *runner) maybeFlush(ctx context.Context) error {
	if len(r.recs) >= r.cfg.BatchSize || len(r.pending) > 0 && r.read.Load()%int64(r.cfg.BatchSize) == 0 {
		return r.flush(ctx)
	}
	return nil
}

// flush commits the open batch: store rows first, then the records in one transaction, then the
// checkpoint. A store row whose ref is already sealed is kept, and the encrypted record carrying
// the tokens of this second seal is dropped: they could open nothing.
func (r *runner) flush(ctx context.Context) error {
	if len(r.recs) == 0 && len(r.pending) == 0 {
		return nil
	}
	taken, err := r.putItems(ctx)
	if err != nil {
		return err
	}
	for _, i := range taken {
		r.recs[r.itemRec[i]] = nil
	}
	r.nEnc -= int64(len(taken))
	r.sealed.Add(int64(len(taken)))
	stored := int64(len(r.items) - len(taken))
	if r.cfg.DryRun {
		r.commitCounts(stored)
		return nil
	}
	recs := slices.DeleteFunc(r.recs, func(rec *kgo.Record) bool { return rec == nil })
	if len(recs) > 0 {
		if err := r.prod.BeginTransaction(); err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		promise := kgo.AbortingFirstErrPromise(r.prod)
		for _, rec := range recs {
			r.prod.Produce(ctx, rec, promise.Promise())
		}
		perr := promise.Err()
		if err := r.prod.EndTransaction(ctx, kgo.TransactionEndTry(perr == nil)); err != nil {
			return fmt.Errorf("ending transaction: %w", err)
		}
		if perr != nil {
			return fmt.Errorf("producing outputs: %w", perr)
		}
	}
	r.commitCounts(stored)
	return r.cp.save(r.cfg.Checkpoint)
}

// putItems writes the open batch's store rows (a dry run only looks them up) and returns the
// indexes of those whose ref the store already holds.
func (r *runner) putItems(ctx context.Context) ([]int, error) {
	if len(r.items) == 0 || r.cfg.Store == nil {
		return nil, nil
	}
	if r.cfg.DryRun {
		var taken []int
		for i, it := range r.items {
			_, err := r.cfg.Store.Get(ctx, it.App, it.Ref)
			switch {
			case err == nil:
				taken = append(taken, i)
			case !errors.Is(err, store.ErrNotFound):
				return nil, fmt.Errorf("reading the encrypted store: %w", err)
			}
		}
		return taken, nil
	}
	err := r.cfg.Store.Put(ctx, r.items)
	if taken, ok := store.Existing(err); ok {
		return taken, nil
	}
	if err != nil {
		return nil, fmt.Errorf("writing to the encrypted store: %w", err)
	}
	return nil, nil
}

func (r *runner) commitCounts(stored int64) {
	r.encrypted.Add(r.nEnc)
	r.redacted.Add(r.nRed)
	r.rebuilt.Add(r.nReb)
	r.stored.Add(stored)
	for k, o := range r.pending {
		r.cp.Done[k] = o
	}
	r.recs, r.items, r.itemRec, r.nEnc, r.nRed, r.nReb = r.recs[:0], r.items[:0], r.itemRec[:0], 0, 0, 0
	clear(r.pending)
}

// abort drops the open batch (nothing of it was committed).
func (r *runner) abort() {
	r.recs, r.items, r.itemRec, r.nEnc, r.nRed, r.nReb = nil, nil, nil, 0, 0, 0
	clear(r.pending)
}

func (r *runner) result() Result {
	return Result{
		Read: r.read.Load(), Encrypted: r.encrypted.Load(), Redacted: r.redacted.Load(), Rebuilt: r.rebuilt.Load(),
		Stored: r.stored.Load(), Present: r.present.Load(), Sealed: r.sealed.Load(), Filtered: r.filtered.Load(), Erased: r.erased.Load(),
		Skipped: r.skipped.Load(), Pending: r.waiting.Load(), Sources: slices.Clone(r.sources),
	}
}

// reportEvery writes a progress line to w every interval until the returned stop is called, and
// a last one then.
func (r *runner) reportEvery(w io.Writer, interval time.Duration) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				r.report(w)
				return
			case <-t.C:
				r.report(w)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (r *runner) report(w io.Writer) {
	read, total := r.read.Load(), r.total.Load()
	elapsed := time.Since(r.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(read) / s
	}
	verb := "produced"
	if r.cfg.DryRun {
		verb = "would produce"
	}
	fmt.Fprintf(w, "replay: %d/%d records, %.0f/s, ETA %s; %s %d encrypted, %d redacted (%d rebuilt); %d already present, %d already sealed, %d of other apps, %d skipped\n",
		read, max(total, read), rate, eta(total-read, rate), verb, r.encrypted.Load(), r.redacted.Load(), r.rebuilt.Load(),
		r.present.Load(), r.sealed.Load(), r.filtered.Load(), r.skipped.Load())
}

// eta is the time left for left records at rate records a second: "0s" only when nothing is left,
// at least "1s" otherwise, "-" before the rate is known.
func eta(left int64, rate float64) string {
	switch {
	case left <= 0:
		return "0s"
	case rate <= 0:
		return "-"
	}
	d := time.Duration(float64(left) / rate * float64(time.Second))
	return max(d.Round(time.Second), time.Second).String()
}

// rewindGroups moves the analytics group (redacted topics) and the egress groups (encrypted
// topics) back to From.
func (r *runner) rewindGroups(ctx context.Context) ([]string, error) {
	var done []string
	var red, enc []string
	for _, l := range r.cfg.Ledgers {
		red = append(red, broker.RedactedTopic(l))
		enc = append(enc, broker.EncryptedTopic(l))
	}
	type job struct {
		group  string
		topics []string
	}
	var jobs []job
	if r.cfg.has(TargetAnalytics) {
		jobs = append(jobs, job{r.cfg.AnalyticsGroup, red})
	}
	if r.cfg.has(TargetEgress) {
		for _, g := range r.cfg.EgressGroups {
			jobs = append(jobs, job{g, enc})
		}
	}
	for _, j := range jobs {
		moved, err := r.rewind(ctx, j.group, j.topics)
		if err != nil {
			return done, err
		}
		if moved {
			done = append(done, j.group)
		}
	}
	return done, nil
}

// rewind moves group back to the first offsets at or after From on topics, never forward. A group
// with members is refused: its members would overwrite the commit.
func (r *runner) rewind(ctx context.Context, group string, topics []string) (bool, error) {
	dg, err := r.adm.DescribeGroups(ctx, group)
	if err != nil {
		return false, fmt.Errorf("describing group %s: %w", group, err)
	}
	if g, ok := dg[group]; ok && len(g.Members) > 0 {
		return false, fmt.Errorf("consumer group %s is running (%d members): stop it and run the replay again to move it back", group, len(g.Members))
	}
	committed, err := r.adm.FetchOffsetsForTopics(ctx, group, topics...)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return false, nil // never committed: it starts from its reset offset anyway
	}
	if err != nil {
		return false, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	target, err := r.adm.ListOffsetsAfterMilli(ctx, r.cfg.From.UnixMilli(), topics...)
	if err != nil {
		return false, fmt.Errorf("listing offsets by time: %w", err)
	}
	var os kadm.Offsets
	committed.Each(func(o kadm.OffsetResponse) {
		t, ok := target.Lookup(o.Topic, o.Partition)
		if o.Err != nil || o.At < 0 || !ok || t.Err != nil || t.Offset < 0 || t.Offset >= o.At {
			return
		}
		os.AddOffset(o.Topic, o.Partition, t.Offset, -1)
	})
	if len(os) == 0 {
		return false, nil
	}
	resp, err := r.adm.CommitOffsets(ctx, group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return false, fmt.Errorf("moving group %s back: %w", group, err)
	}
	return true, nil
}
