package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/consume"
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

// Processor is the exactly-once stream processor: its engine (internal/consume) polls, retries,
// rewinds, reconnects and commits; the processor turns each batch into one transaction.
type Processor struct {
	cfg Config
	eng *consume.Engine
	// fresh holds the records an aborted attempt already sealed under their derived refs: the
	// next attempt seals them under fresh refs (see processBatch). Used by Run's goroutine only.
	fresh map[Source]bool
	log   *slog.Logger
	obs   Observer

	// attempts counts the failed attempts of records that failed unexpectedly, until their batch
	// commits; it is only used by Run's goroutine and holds at most one poll's records.
	attempts map[Source]int
	// tooLarge holds the records whose outputs the broker refused as too large: the next attempt
	// dead-letters them (too_large). Used by Run's goroutine only; cleared on commit.
	tooLarge map[Source]bool
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
	eng, err := consume.New(consume.Config{
		Brokers: cfg.Brokers, Group: cfg.Group, Topics: topics,
		// Static membership under the same id: a process restarted after a crash takes over its
		// partitions at once instead of waiting for the dead member's session to time out.
		InstanceID: cfg.TransactionID, TransactionalID: cfg.TransactionID,
		MaxPoll: cfg.MaxPoll,
		Opts: append([]kgo.Opt{
			kgo.MaxBufferedRecords(4 * cfg.MaxPoll),
			// Fetch about as much as a few transactions need: the default (50 MiB per fetch, and as
			// much again decompressed) would keep a large backlog in memory for nothing.
			kgo.FetchMaxBytes(8 << 20),
			kgo.FetchMaxPartitionBytes(2 << 20),
		}, cfg.KafkaOpts...),
		Logger: cfg.Logger, Dependency: obs.Dependency,
	})
	if err != nil {
		return nil, err
	}
	return &Processor{cfg: cfg, eng: eng, fresh: make(map[Source]bool), log: cfg.Logger, obs: obs, attempts: map[Source]int{}, tooLarge: map[Source]bool{}}, nil
}

// Run consumes until ctx is cancelled or Close is called (returning nil) or the transactional
// session fails fatally. Cancelling ctx aborts the transaction in flight; its records are
// processed again on restart.
func (p *Processor) Run(ctx context.Context) error {
	if err := p.eng.Run(ctx, p.processBatch); err != nil && !errors.Is(err, consume.ErrClosed) {
		return err
	}
	return nil
}

// processBatch runs one transaction. A failure returned before the transaction ends makes the
// engine rewind the session to its committed offsets so the same records come back on the next
// poll; an aborted transaction rewinds it as well.
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
func (p *Processor) processBatch(ctx context.Context, b *consume.Batch) (bool, error) {
	recs := b.Records
	outs, err := p.transformAll(ctx, recs)
	if err != nil {
		if IsTransient(err) {
			p.obs.Dependency("keys", false)
		}
		return false, err
	}
	p.obs.Dependency("keys", true)

	if err := b.Begin(); err != nil {
		return false, err
	}
	stored := make(chan error, 1)
	go func() { stored <- p.put(ctx, outs) }()
	promise := kgo.AbortingFirstErrPromise(b.Client())
	var (
		mu      sync.Mutex
		tooLong []Source // records an output of which the broker (or the client) refused as too large
	)
	for i := range outs {
		src := Source{recs[i].Topic, recs[i].Partition, recs[i].Offset}
		for _, r := range []*kgo.Record{outs[i].Encrypted, outs[i].Redacted, outs[i].DeadLetter} {
			if r != nil {
				done := promise.Promise()
				b.Produce(ctx, r, func(r *kgo.Record, err error) {
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
	committed, err := b.End(ctx, perr == nil && serr == nil)
	p.obs.Batch(outs, committed)
	if err != nil {
		p.obs.Dependency("broker", false)
		return false, err
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

// Close stops Run if it runs (the transaction in flight is aborted), waits for it until ctx
// ends, then leaves the group and closes the session. It is idempotent.
func (p *Processor) Close(ctx context.Context) error {
	return p.eng.Close(ctx)
}
