package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store"
)

// Config configures a Processor. Zero values are the documented defaults.
type Config struct {
	Brokers       []string
	Group         string    // consumer group; default "veil"
	TransactionID string    // transactional id; default "veil-" + group
	Ledgers       []string  // ledger names to consume (raw topics ledger.<name>)
	KafkaOpts     []kgo.Opt // extra client options (TLS, SASL, logger)
	MaxPoll       int       // records per poll and transaction; default 2,000
	Workers       int       // transform goroutines; default GOMAXPROCS
	// RecordAttempts is how many times a record whose processing fails with an unexpected
	// (neither bad-input nor transient) error is tried before it is dead-lettered as
	// unprocessable, when the Stage is a Rejecter; default 5. Transient failures never count.
	RecordAttempts int

	Transformer Stage // what each record becomes; *Transformer in production
	Store       store.Store
	Observer    Observer
	Logger      *slog.Logger
}

// Stage turns one raw record into its outputs. A non-nil error retries the batch: without limit
// when it is Transient, otherwise up to Config.RecordAttempts times for that record.
type Stage interface {
	Transform(ctx context.Context, src Source, key, value []byte) (Output, error)
}

// Rejecter is a Stage that can dead-letter a record it failed to process, so that a record
// failing again and again does not hold its partition. *Transformer is one.
type Rejecter interface {
	Reject(ctx context.Context, src Source, key, value []byte, reason schemas.Reason) (Output, error)
}

// PassThrough copies each record unchanged to the two topics named by ledger, with the same
// transactions and batching as the pipeline: the baseline the benchmark compares against.
type PassThrough struct {
	Topics func(ledger string) (a, b string)
}

// Transform implements Stage.
func (p PassThrough) Transform(_ context.Context, src Source, key, value []byte) (Output, error) {
	ledger, _ := broker.LedgerOf(src.Topic)
	a, b := p.Topics(ledger)
	return Output{
		Ledger:    ledger,
		Encrypted: &kgo.Record{Topic: a, Key: key, Value: value},
		Redacted:  &kgo.Record{Topic: b, Key: key, Value: value},
	}, nil
}

// Observer receives what the processor does; ops.Metrics and readiness implement it. Nil is fine.
type Observer interface {
	// Batch reports one committed or aborted transaction.
	Batch(outs []Output, committed bool)
	// Dependency reports whether a dependency ("keys", "store", "broker") works.
	Dependency(name string, ok bool)
}

type nopObserver struct{}

func (nopObserver) Batch([]Output, bool)    {}
func (nopObserver) Dependency(string, bool) {}

// Processor is the exactly-once stream processor.
type Processor struct {
	cfg  Config
	opts []kgo.Opt // the session's options, to reconnect with
	// fresh holds the records an aborted attempt already sealed under their derived refs: the
	// next attempt seals them under fresh refs (see processBatch). Used by Run's goroutine only.
	fresh map[Source]bool
	sess  *kgo.GroupTransactSession
	log   *slog.Logger
	obs   Observer

	// attempts counts the failed attempts of records that failed unexpectedly, until their batch
	// commits; it is only used by Run's goroutine and holds at most one poll's records.
	attempts map[Source]int
	// tooLarge holds the records whose outputs the broker refused as too large: the next attempt
	// dead-letters them (too_large). Used by Run's goroutine only; cleared on commit.
	tooLarge map[Source]bool

	closeOnce sync.Once
}

// New creates the processor's Kafka session; Run starts consuming.
func New(cfg Config) (*Processor, error) {
	if cfg.Transformer == nil || cfg.Store == nil {
		return nil, errors.New("pipeline: Transformer and Store are required")
	}
	if cfg.Group == "" {
		cfg.Group = "veil"
	}
	if cfg.TransactionID == "" {
		cfg.TransactionID = "veil-" + cfg.Group
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 2000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.RecordAttempts <= 0 {
		cfg.RecordAttempts = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	topics := make([]string, len(cfg.Ledgers))
	for i, l := range cfg.Ledgers {
		topics[i] = broker.RawTopic(l)
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.TransactionalID(cfg.TransactionID),
		// Static membership under the same id: a process restarted after a crash takes over its
		// partitions at once instead of waiting for the dead member's session to time out.
		kgo.InstanceID(cfg.TransactionID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionTimeout(60 * time.Second),
		kgo.ProducerBatchMaxBytes(4 << 20),
		kgo.MaxBufferedRecords(4 * cfg.MaxPoll),
		// Fetch about as much as a few transactions need: the default (50 MiB per fetch, and as
		// much again decompressed) would keep a large backlog in memory for nothing.
		kgo.FetchMaxBytes(8 << 20),
		kgo.FetchMaxPartitionBytes(2 << 20),
	}, cfg.KafkaOpts...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating transactional session: %w", err)
	}
	return &Processor{cfg: cfg, opts: opts, fresh: make(map[Source]bool), sess: sess, log: cfg.Logger, obs: obs, attempts: map[Source]int{}, tooLarge: map[Source]bool{}}, nil
}

// Run consumes until ctx is cancelled (returning nil) or the transactional session fails fatally.
// Cancelling ctx aborts the transaction in flight; its records are processed again on restart.
func (p *Processor) Run(ctx context.Context) error {
	var (
		failures      int
		fetchFailures int
		staleSince    time.Time // first poll that found a topic id the broker no longer knows
	)
	for {
		fetches := p.sess.PollRecords(ctx, p.cfg.MaxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		var fetchErrs int
		stale := false
		fetches.EachError(func(topic string, partition int32, err error) {
			fetchErrs++
			stale = stale || errors.Is(err, kerr.UnknownTopicID)
			// Errors come back at once on every poll while they last: log the first few and then
			// every hundredth, so a broker outage does not flood the log.
			if fetchFailures < 3 || fetchFailures%100 == 0 {
				p.log.Warn("fetch error", "topic", topic, "partition", partition, "attempt", fetchFailures+1, "err", err)
			}
		})
		recs := fetches.Records()
		if len(recs) == 0 && fetchErrs > 0 {
			fetchFailures++
			p.obs.Dependency("broker", false)
			if !stale {
				staleSince = time.Time{}
			} else if staleSince.IsZero() {
				staleSince = time.Now()
			} else if time.Since(staleSince) > staleTopicWait {
				// The topics were deleted and created again (new topic ids, as after a restart of
				// a broker that keeps no raw topics): the client keeps asking for the old ids, so
				// start a new session, which resumes from the group's committed offsets.
				p.log.Warn("topic ids changed on the broker; reconnecting")
				if err := p.reconnect(); err != nil {
					return err
				}
				staleSince = time.Time{}
			}
			Backoff(ctx, fetchFailures)
			continue
		}
		if fetchErrs == 0 {
			if fetchFailures > 0 {
				p.obs.Dependency("broker", true)
			}
			fetchFailures, staleSince = 0, time.Time{}
		}
		if len(recs) == 0 {
			continue
		}
		committed, err := p.processBatch(ctx, recs)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && isFatal(err):
			return err
		case err != nil:
			failures++
			p.log.Warn("batch failed, retrying", "records", len(recs), "attempt", failures, "err", err)
			Backoff(ctx, failures)
		case !committed:
			failures++
			p.log.Info("transaction aborted, reprocessing", "records", len(recs))
		default:
			failures = 0
		}
	}
}

// staleTopicWait is how long fetches may fail with an unknown topic id before the processor
// reconnects: a moment's metadata lag after a topic is recreated resolves by itself.
const staleTopicWait = 3 * time.Second

// reconnect replaces the transactional session by a new one (between transactions only).
func (p *Processor) reconnect() error {
	p.sess.Close()
	sess, err := kgo.NewGroupTransactSession(p.opts...)
	if err != nil {
		return &fatalError{fmt.Errorf("recreating transactional session: %w", err)}
	}
	p.sess = sess
	return nil
}

type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

// processBatch runs one transaction. A transient failure before the transaction begins rewinds the
// session to its committed offsets so the same records come back on the next poll.
//
// The store write runs while the outputs are produced: the transaction commits only if both the
// store write and every produce succeeded, so a failed store write aborts the transaction (the
// records produced in it are never visible to read_committed consumers) and the abort rewinds the
// session. Nothing commits before its sealed values are in the store.
//
// A ref is sealed once (sinks/store): when the store already holds another record under a ref of
// this batch, an earlier attempt at these records sealed them and never committed (a crash or an
// abort after its store write; or a fenced process). The tokens of this attempt would not open the
// kept record, so the transaction is aborted and the batch sealed again under fresh refs. The
// records of the earlier attempt are orphans no committed token names; they die at their expiry.
// Replay never seals a record the group has not committed (see package replay), so the refs taken
// here are never another writer's published ones.
func (p *Processor) processBatch(ctx context.Context, recs []*kgo.Record) (bool, error) {
	outs, err := p.transformAll(ctx, recs)
	if err != nil {
		if IsTransient(err) {
			p.obs.Dependency("keys", false)
		}
		if rerr := p.rewind(ctx); rerr != nil {
			return false, &fatalError{rerr}
		}
		return false, err
	}
	p.obs.Dependency("keys", true)

	if err := p.sess.Begin(); err != nil {
		return false, &fatalError{fmt.Errorf("beginning transaction: %w", err)}
	}
	stored := make(chan error, 1)
	go func() { stored <- p.put(ctx, outs) }()
	promise := kgo.AbortingFirstErrPromise(p.sess.Client())
	var (
		mu      sync.Mutex
		tooLong []Source // records an output of which the broker (or the client) refused as too large
	)
	for i := range outs {
		src := Source{recs[i].Topic, recs[i].Partition, recs[i].Offset}
		for _, r := range []*kgo.Record{outs[i].Encrypted, outs[i].Redacted, outs[i].DeadLetter} {
			if r != nil {
				done := promise.Promise()
				p.sess.Produce(ctx, r, func(r *kgo.Record, err error) {
					if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
						mu.Lock()
						tooLong = append(tooLong, src)
						mu.Unlock()
					}
					done(r, err)
				})
			}
		}
	}
	perr := promise.Err()
	serr := <-stored // the store write must have succeeded before the commit is tried
	committed, err := p.sess.End(ctx, kgo.TransactionEndTry(perr == nil && serr == nil))
	p.obs.Batch(outs, committed)
	if err != nil {
		p.obs.Dependency("broker", false)
		return false, &fatalError{fmt.Errorf("ending transaction: %w", err)}
	}
	p.obs.Dependency("broker", perr == nil)
	if _, taken := store.Existing(serr); taken && !committed {
		for _, r := range recs {
			p.fresh[Source{r.Topic, r.Partition, r.Offset}] = true
		}
		p.log.Info("records already sealed by an earlier attempt; sealing them again under fresh refs", "records", len(recs))
		return false, nil
	}
	if _, canReject := p.cfg.Transformer.(Rejecter); len(tooLong) > 0 && !committed && canReject {
		// The same outputs would be refused on every retry (the output topic takes smaller
		// records than the raw topic, or the entry grew by its headers): dead-letter those records
		// on the next attempt instead of holding their partitions.
		for _, src := range tooLong {
			p.tooLarge[src] = true
		}
		p.log.Warn("outputs refused as too large; dead-lettering their records", "records", len(tooLong))
		return false, nil
	}
	if serr != nil {
		return false, serr
	}
	if perr != nil {
		return false, fmt.Errorf("producing outputs: %w", perr)
	}
	if committed {
		clear(p.attempts)
		clear(p.fresh)
		clear(p.tooLarge)
		for i := range outs {
			if outs[i].AfterCommit != nil {
				outs[i].AfterCommit(ctx)
			}
		}
	}
	return committed, nil
}

func (p *Processor) put(ctx context.Context, outs []Output) error {
	items := make([]store.Item, 0, len(outs))
	for i := range outs {
		if outs[i].Item != nil {
			items = append(items, *outs[i].Item)
		}
		items = append(items, outs[i].Media...)
	}
	if len(items) == 0 {
		return nil
	}
	if err := p.cfg.Store.Put(ctx, items); err != nil {
		if _, taken := store.Existing(err); taken {
			p.obs.Dependency("store", true)
			return fmt.Errorf("writing to the encrypted store: %w", err)
		}
		p.obs.Dependency("store", false)
		return fmt.Errorf("writing to the encrypted store: %w", err)
	}
	p.obs.Dependency("store", true)
	return nil
}

// rewind aborts an empty transaction, which resets the session to its committed offsets.
func (p *Processor) rewind(ctx context.Context) error {
	if err := p.sess.Begin(); err != nil {
		return fmt.Errorf("beginning rewind: %w", err)
	}
	if _, err := p.sess.End(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("rewinding to committed offsets: %w", err)
	}
	return nil
}

// transformAll transforms recs in parallel; outputs keep the input order, so per-partition (and
// per-thread) order is preserved when they are produced.
//
// A record that fails with an unexpected error (not Transient) counts an attempt; once it has
// failed RecordAttempts times, it is dead-lettered (Rejecter) in place of its outputs and the batch
// goes on. A panic in the Stage is such an error. A transient failure fails the batch, whatever
// else failed.
func (p *Processor) transformAll(ctx context.Context, recs []*kgo.Record) ([]Output, error) {
	errs := make([]error, len(recs))
	outs, _ := MapOrdered(len(recs), min(p.cfg.Workers, (len(recs)+63)/64), func(i int) (Output, error) {
		r := recs[i]
		src := Source{r.Topic, r.Partition, r.Offset}
		if rej, ok := p.cfg.Transformer.(Rejecter); ok && p.tooLarge[src] {
			out, err := rej.Reject(p.refsFor(ctx, src), src, r.Key, r.Value, schemas.ReasonTooLarge)
			errs[i] = err
			return out, nil
		}
		out, err := p.transform(p.refsFor(ctx, src), src, r.Key, r.Value)
		errs[i] = err
		return out, nil
	})
	for _, err := range errs {
		if err != nil && IsTransient(err) {
			return nil, err
		}
	}
	var unexpected error
	for i, err := range errs {
		if err == nil {
			continue
		}
		r := recs[i]
		src := Source{r.Topic, r.Partition, r.Offset}
		p.attempts[src]++
		rej, ok := p.cfg.Transformer.(Rejecter)
		if !ok || p.attempts[src] < p.cfg.RecordAttempts {
			unexpected = cmp.Or(unexpected, err)
			continue
		}
		p.log.Error("record failed repeatedly; dead-lettering it", "source", src.String(), "attempts", p.attempts[src], "err", err)
		out, rerr := rej.Reject(p.refsFor(ctx, src), src, r.Key, r.Value, schemas.ReasonUnprocessable)
		if rerr != nil {
			return nil, Transient(fmt.Errorf("dead-lettering %s: %w", src, rerr))
		}
		outs[i] = out
	}
	if unexpected != nil {
		return nil, unexpected
	}
	return outs, nil
}

// refsFor returns ctx, marked to seal under fresh refs if an aborted attempt holds src's derived
// refs (see processBatch).
func (p *Processor) refsFor(ctx context.Context, src Source) context.Context {
	if p.fresh[src] {
		return withFreshRefs(ctx)
	}
	return ctx
}

// transform calls the Stage, turning a panic into an (unexpected) error: a record that crashes
// the Stage is retried and then dead-lettered like any other failing record, instead of crashing
// the process again after every restart.
func (p *Processor) transform(ctx context.Context, src Source, key, value []byte) (out Output, err error) {
	defer func() {
		if v := recover(); v != nil {
			// A runtime error's message holds no data; any other panic value might.
			if re, ok := v.(runtime.Error); ok {
				err = fmt.Errorf("processing %s: panic: %w", src, re)
			} else {
				err = fmt.Errorf("processing %s: panic (%T)", src, v)
			}
		}
	}()
	return p.cfg.Transformer.Transform(ctx, src, key, value)
}

// Close leaves the group and closes the session; it is idempotent. In-flight work is aborted.
func (p *Processor) Close() {
	p.closeOnce.Do(func() { p.sess.Close() })
}
