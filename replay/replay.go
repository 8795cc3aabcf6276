package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	Read      int64    // source records read, raw and encrypted
	Encrypted int64    // records produced to encrypted topics
	Redacted  int64    // records produced to redacted topics, rebuilt ones included
	Rebuilt   int64    // of Redacted, rebuilt from encrypted topics (raw data gone)
	Stored    int64    // store rows written
	Present   int64    // source records whose every wanted output was already there
	Skipped   int64    // records of other apps, dead-lettered input, undecodable encrypted records
	Rewound   []string // consumer groups moved back to From
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

	// the open batch
	recs    []*kgo.Record
	items   []store.Item
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
	cp, err := loadCheckpoint(cfg.Checkpoint, cfg.From, cfg.To)
	if err != nil {
		return Result{}, err
	}
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
	rawStart           map[int32]int64 // first offset each raw partition still holds
}

func (r *runner) plan(ctx context.Context) ([]plan, error) {
	var plans []plan
	for _, l := range r.cfg.Ledgers {
		p := plan{ledger: l, raw: broker.RawTopic(l), enc: broker.EncryptedTopic(l), red: broker.RedactedTopic(l)}
		var err error
		if p.rawSpans, err = window(ctx, r.adm, r.cfg.From, r.cfg.To, p.raw); err != nil {
			return nil, err
		}
		starts, err := r.adm.ListStartOffsets(ctx, p.raw)
		if err != nil {
			return nil, fmt.Errorf("listing start offsets: %w", err)
		}
		p.rawStart = make(map[int32]int64)
		starts.Each(func(o kadm.ListedOffset) { p.rawStart[o.Partition] = o.Offset })
		// Only records the raw topic no longer holds are rebuilt from the encrypted topic.
		gone := false
		for _, o := range p.rawStart {
			gone = gone || o > 0
		}
		if r.cfg.wantRedacted() && gone {
			if p.encSpans, err = window(ctx, r.adm, r.cfg.From, r.cfg.To, p.enc); err != nil {
				return nil, err
			}
		}
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

func (r *runner) ledger(ctx context.Context, p plan) error {
	presentEnc, presentRed := map[string]bool{}, map[string]bool{}
	var err error
	if r.cfg.wantEncrypted() {
		if presentEnc, err = r.sources(ctx, p.enc); err != nil {
			return err
		}
	}
	if r.cfg.wantRedacted() {
		if presentRed, err = r.sources(ctx, p.red); err != nil {
			return err
		}
	}
	err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, p.rawSpans, func(rec *kgo.Record) error {
		return r.fromRaw(ctx, rec, presentEnc, presentRed)
	})
	if err != nil {
		return err
	}
	if r.cfg.wantRedacted() && len(p.encSpans[p.enc]) > 0 {
		err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, p.encSpans, func(rec *kgo.Record) error {
			return r.fromEncrypted(ctx, rec, p, presentRed)
		})
		if err != nil {
			return err
		}
	}
	return r.flush(ctx)
}

// sources returns the veil-source header of every committed record of topic from From minus
// OutputSlack on: the raw records whose output topic already holds their output.
func (r *runner) sources(ctx context.Context, topic string) (map[string]bool, error) {
	end := r.cfg.Clock().Add(24 * time.Hour) // every record up to the stable offset
	sp, err := window(ctx, r.adm, r.cfg.From.Add(-r.cfg.OutputSlack), end, topic)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool)
	err = read(ctx, r.cfg.Brokers, r.cfg.KafkaOpts, sp, func(rec *kgo.Record) error {
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
	needEnc := r.cfg.wantEncrypted() && !presentEnc[key]
	needRed := r.cfg.wantRedacted() && !presentRed[key]
	if r.cfg.App != "" && appOf(rec.Value) != r.cfg.App {
		r.skipped.Add(1)
		return r.maybeFlush(ctx)
	}
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
	if needEnc && out.Encrypted != nil {
		r.recs = append(r.recs, out.Encrypted)
		if out.Item != nil {
			r.items = append(r.items, *out.Item)
		}
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

// fromEncrypted rebuilds the redacted output of an encrypted record whose raw record is gone.
func (r *runner) fromEncrypted(ctx context.Context, rec *kgo.Record, p plan, presentRed map[string]bool) error {
	if err := r.tick(ctx); err != nil {
		return err
	}
	r.mark(rec)
	src, ok := header(rec, pipeline.HeaderSource)
	topic, part, off, perr := parseSource(src)
	if !ok || perr != nil || topic != p.raw {
		r.skipped.Add(1)
		return r.maybeFlush(ctx)
	}
	if start, ok := p.rawStart[part]; ok && off >= start {
		return r.maybeFlush(ctx) // the raw topic still holds it: the raw pass handled it
	}
	if presentRed[src] {
		r.present.Add(1)
		return r.maybeFlush(ctx)
	}
	e, err := schemas.Decode(rec.Value, r.cfg.Transformer.Limits)
	if err != nil || (r.cfg.App != "" && e.AppID != r.cfg.App) {
		r.skipped.Add(1)
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
// checkpoint.
func (r *runner) flush(ctx context.Context) error {
	if len(r.recs) == 0 && len(r.pending) == 0 {
		return nil
	}
	if r.cfg.DryRun {
		r.commitCounts()
		return nil
	}
	if len(r.items) > 0 {
		if err := r.cfg.Store.Put(ctx, r.items); err != nil {
			return fmt.Errorf("writing to the encrypted store: %w", err)
		}
	}
	if len(r.recs) > 0 {
		if err := r.prod.BeginTransaction(); err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		promise := kgo.AbortingFirstErrPromise(r.prod)
		for _, rec := range r.recs {
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
	r.commitCounts()
	if err := r.cp.save(r.cfg.Checkpoint); err != nil {
		return err
	}
	return nil
}

func (r *runner) commitCounts() {
	r.encrypted.Add(r.nEnc)
	r.redacted.Add(r.nRed)
	r.rebuilt.Add(r.nReb)
	r.stored.Add(int64(len(r.items)))
	for k, o := range r.pending {
		r.cp.Done[k] = o
	}
	r.recs, r.items, r.nEnc, r.nRed, r.nReb = r.recs[:0], r.items[:0], 0, 0, 0
	clear(r.pending)
}

// abort drops the open batch (nothing of it was committed).
func (r *runner) abort() {
	r.recs, r.items, r.nEnc, r.nRed, r.nReb = nil, nil, 0, 0, 0
	clear(r.pending)
}

func (r *runner) result() Result {
	return Result{
		Read: r.read.Load(), Encrypted: r.encrypted.Load(), Redacted: r.redacted.Load(), Rebuilt: r.rebuilt.Load(),
		Stored: r.stored.Load(), Present: r.present.Load(), Skipped: r.skipped.Load(),
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
	elapsed := time.Since(r.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(read) / elapsed
	}
	eta := "-"
	if rate > 0 && total > read {
		eta = (time.Duration(float64(total-read)/rate) * time.Second).Round(time.Second).String()
	} else if total <= read {
		eta = "0s"
	}
	verb := "produced"
	if r.cfg.DryRun {
		verb = "would produce"
	}
	fmt.Fprintf(w, "replay: %d/%d records, %.0f/s, ETA %s; %s %d encrypted, %d redacted (%d rebuilt); %d already present, %d skipped\n",
		read, total, rate, eta, verb, r.encrypted.Load(), r.redacted.Load(), r.rebuilt.Load(), r.present.Load(), r.skipped.Load())
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
