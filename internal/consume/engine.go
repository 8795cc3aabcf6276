package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config configures an Engine. Zero values are the documented defaults.
type Config struct {
	Brokers []string // seed brokers; required
	Group   string   // consumer group; required
	Topics  []string // topics to consume
	// InstanceID makes the member static under this id: a process restarted after a crash takes
	// its partitions back at once instead of waiting for the dead member's session to time out.
	// Empty: dynamic membership.
	InstanceID string
	// TransactionalID selects transactional mode (exactly once: outputs and offsets in one
	// transaction). Empty: manual mode (the handler commits; at least once).
	TransactionalID string
	// MaxPoll is the most records handed to one batch; default 500.
	MaxPoll int
	// Opts are further client options (buffering, fetch sizes, callbacks, TLS, SASL, logger).
	// They are applied after the engine's defaults (reading a partition the group never committed
	// from its start; in transactional mode, a transaction timeout of 60 s and producer batches of
	// 4 MiB) and before what the engine fixes: brokers, group, topics, ids, read_committed and,
	// in manual mode, manual commits with rebalances blocked while a batch is handled.
	Opts []kgo.Opt

	// Connect, if set, is what the handler needs before the first poll (creating its output
	// topic, say). Run calls it first and retries it with Backoff until it succeeds, ctx ends or
	// Close is called.
	Connect func(ctx context.Context, cl *kgo.Client) error

	// PollWait, if set, bounds how long one poll waits for records (a handler with timed work,
	// such as flushes, sets it together with EveryPoll). Nil: until records arrive or ctx ends.
	PollWait func() time.Duration
	// EveryPoll calls the handler after every poll, with the records it returned (maybe none).
	// False: only when a poll returned records.
	EveryPoll bool
	// Drain, if set, is called once when Run's context ends, with the records of the last poll
	// (not handed to the handler); its error is Run's. Nil: those records are dropped,
	// uncommitted, and read again by the group's next consumer.
	Drain func(recs []*kgo.Record) error
	// OnReconnect, if set, is called after the engine replaced its client (see Reconnect in the
	// package doc), from Run's goroutine.
	OnReconnect func()

	// Logger receives the engine's warnings (fetch errors, retries, reconnects); default none.
	Logger *slog.Logger
	// Dependency, if set, hears whether the broker works ("broker"): false when polls return
	// only fetch errors, true on the first clean poll after them.
	Dependency func(name string, ok bool)
}

// Handler is a component's work on one poll's records.
//
// In transactional mode it produces its outputs through b (Begin, Produce) and ends the
// transaction with b.End, returning whether it committed. In manual mode it returns true when
// its work is done (it commits through the Engine once the work is durable).
//
// A non-nil error, or false, rewinds the batch: its records come back on the next poll. An
// error marked Fatal stops Run, which returns it; any other error is retried after a backoff.
type Handler func(ctx context.Context, b *Batch) (committed bool, err error)

// ErrClosed is returned by Run once Close was called, before or while it ran.
var ErrClosed = errors.New("consume: closed")

// StaleTopicWait is how long fetches may fail with an unknown topic id before the engine
// reconnects: a moment's metadata lag after a topic is recreated resolves by itself.
const StaleTopicWait = 3 * time.Second

// Engine is one group consumer and the loop around a Handler. Create it with New, run it with
// Run, release it with Close.
type Engine struct {
	cfg  Config
	opts []kgo.Opt
	log  *slog.Logger
	conn atomic.Pointer[conn] // replaced by reconnect

	mu        sync.Mutex
	closed    bool
	running   bool
	cancelRun context.CancelFunc
	runDone   chan struct{} // closed when the current (or last) Run returned

	closeOnce sync.Once
}

// conn is the engine's client; sess is set in transactional mode.
type conn struct {
	cl   *kgo.Client
	sess *kgo.GroupTransactSession
}

// New creates the engine's client. It does not connect yet: Run does.
func New(cfg Config) (*Engine, error) {
	if len(cfg.Brokers) == 0 || cfg.Group == "" {
		return nil, errors.New("consume: brokers and group are required")
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 500
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A group that never committed a partition reads it from its start (franz-go's default would
	// start a minute back in time, skipping older records).
	opts := []kgo.Opt{kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if cfg.TransactionalID != "" {
		opts = append(opts, kgo.TransactionTimeout(60*time.Second), kgo.ProducerBatchMaxBytes(4<<20))
	}
	opts = append(opts, cfg.Opts...)
	opts = append(opts,
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.TransactionalID != "" {
		opts = append(opts, kgo.TransactionalID(cfg.TransactionalID))
	} else {
		opts = append(opts, kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	}
	e := &Engine{cfg: cfg, opts: opts, log: log}
	c, err := e.connect()
	if err != nil {
		return nil, err
	}
	e.conn.Store(c)
	return e, nil
}

func (e *Engine) connect() (*conn, error) {
	if e.cfg.TransactionalID == "" {
		cl, err := kgo.NewClient(e.opts...)
		if err != nil {
			return nil, fmt.Errorf("creating consumer: %w", err)
		}
		return &conn{cl: cl}, nil
	}
	sess, err := kgo.NewGroupTransactSession(e.opts...)
	if err != nil {
		return nil, fmt.Errorf("creating transactional session: %w", err)
	}
	return &conn{cl: sess.Client(), sess: sess}, nil
}

// Client returns the engine's current client (it changes when the engine reconnects), for
// requests of the handler's own: topic administration, pausing partitions. In transactional
// mode, transactions belong to the engine: produce through the Batch.
func (e *Engine) Client() *kgo.Client { return e.conn.Load().cl }

func (e *Engine) transactional() bool { return e.cfg.TransactionalID != "" }

// Run polls and hands batches to h until ctx ends (returning nil, or Drain's error), Close is
// called (ErrClosed) or an error is fatal (returned). Cancelling ctx lets the batch in flight
// return; a transaction it did not end is not committed. Run may be called again after it
// returned, never twice at once.
func (e *Engine) Run(ctx context.Context, h Handler) error {
	ctx, done, err := e.start(ctx)
	if err != nil {
		return err
	}
	defer done()
	if !e.transactional() {
		// Leaving the group (Close) waits for rebalances to be allowed again.
		defer func() { e.Client().AllowRebalance() }()
	}
	if e.cfg.Connect != nil {
		for attempt := 1; ; attempt++ {
			err := e.cfg.Connect(ctx, e.Client())
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return e.stop(nil)
			}
			e.log.Warn("connecting failed, retrying", "attempt", attempt, "err", err)
			Backoff(ctx, attempt)
		}
	}
	var (
		failures      int       // consecutive failed batches
		fetchFailures int       // consecutive polls that returned only errors
		staleSince    time.Time // first such poll that found a topic id the broker no longer knows
	)
	for {
		fetches := e.poll(ctx)
		if fetches.IsClientClosed() {
			return ErrClosed
		}
		recs := fetches.Records()
		if ctx.Err() != nil {
			return e.stop(recs)
		}
		var fetchErrs int
		stale := false
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return // the end of a PollWait, or of ctx
			}
			if dl := (*kgo.ErrDataLoss)(nil); errors.As(err, &dl) {
				// Not a failed fetch: the client has already moved the partition and goes on.
				// But records may have been skipped, so say so every time, loudly.
				e.log.Error("consumer reset a partition past records it had not read (reported as data loss)",
					"topic", dl.Topic, "partition", dl.Partition, "consumed_to", dl.ConsumedTo, "reset_to", dl.ResetTo)
				return
			}
			fetchErrs++
			stale = stale || errors.Is(err, kerr.UnknownTopicID)
			// Errors come back at once on every poll while they last: log the first few and then
			// every hundredth, so a broker outage does not flood the log.
			if fetchFailures < 3 || fetchFailures%100 == 0 {
				e.log.Warn("fetch error", "topic", topic, "partition", partition, "attempt", fetchFailures+1, "err", err)
			}
		})
		if len(recs) > 0 || e.cfg.EveryPoll {
			if stop, err := e.handle(ctx, h, recs, &failures); stop {
				return err
			}
		}
		if !e.transactional() {
			e.Client().AllowRebalance()
		}
		switch {
		case fetchErrs > 0 && len(recs) == 0:
			fetchFailures++
			e.dependency(false)
			switch {
			case !stale:
				staleSince = time.Time{}
			case staleSince.IsZero():
				staleSince = time.Now()
			case time.Since(staleSince) > StaleTopicWait:
				// The topics were deleted and created again (new topic ids): the client keeps
				// asking for the old ids, so start a new one, which resumes from the group's
				// committed offsets.
				e.log.Warn("topic ids changed on the broker; reconnecting")
				if err := e.reconnect(); err != nil {
					return err
				}
				staleSince = time.Time{}
			}
			Backoff(ctx, fetchFailures)
		case fetchErrs == 0:
			if fetchFailures > 0 {
				e.dependency(true)
			}
			fetchFailures, staleSince = 0, time.Time{}
		}
	}
}

// start registers a Run: its context is cancelled by Close, and done tells Close it returned.
func (e *Engine) start(ctx context.Context) (context.Context, func(), error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, nil, ErrClosed
	}
	if e.running {
		return nil, nil, errors.New("consume: Run called while running")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	e.running, e.cancelRun, e.runDone = true, cancel, done
	return ctx, func() {
		cancel()
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
		close(done)
	}, nil
}

func (e *Engine) poll(ctx context.Context) kgo.Fetches {
	c := e.conn.Load()
	if e.cfg.PollWait == nil {
		return c.cl.PollRecords(ctx, e.cfg.MaxPoll)
	}
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PollWait())
	defer cancel()
	return c.cl.PollRecords(pctx, e.cfg.MaxPoll)
}

// stop ends Run after its context ended.
func (e *Engine) stop(recs []*kgo.Record) error {
	var err error
	if e.cfg.Drain != nil {
		err = e.cfg.Drain(recs)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return errors.Join(ErrClosed, err)
	}
	return err
}

// handle runs one batch; stop says Run ends, with err.
func (e *Engine) handle(ctx context.Context, h Handler, recs []*kgo.Record, failures *int) (stop bool, err error) {
	b := &Batch{Records: recs, e: e, c: e.conn.Load()}
	committed, err := h(ctx, b)
	if err == nil && committed && e.transactional() && !b.ended {
		// Only End commits: a commit claimed without it would leave a transaction open (the next
		// Begin fails) or the offsets uncommitted (the batch comes again forever).
		err = Fatal(errors.New("consume: handler reported a commit without ending its transaction"))
	}
	if ctx.Err() != nil {
		// Shutting down: a transaction left open is not committed; the records come again.
		return true, e.stop(nil)
	}
	if err != nil && IsFatal(err) {
		return true, err
	}
	if err != nil || !committed {
		if rerr := e.rewind(ctx, b); rerr != nil {
			return true, rerr
		}
	}
	switch {
	case err != nil:
		*failures++
		e.log.Warn("batch failed, retrying", "records", len(recs), "attempt", *failures, "err", err)
		Backoff(ctx, *failures)
	case !committed && len(recs) > 0:
		*failures++
		e.log.Info("batch aborted, retrying", "records", len(recs))
	default:
		*failures = 0
	}
	return false, nil
}

// rewind makes b's records come again on the next poll.
func (e *Engine) rewind(ctx context.Context, b *Batch) error {
	if !e.transactional() {
		// Seek each partition back to its first record of the batch: what came before was handled.
		to := make(map[string]map[int32]kgo.EpochOffset)
		for _, r := range b.Records {
			ps := to[r.Topic]
			if ps == nil {
				ps = make(map[int32]kgo.EpochOffset)
				to[r.Topic] = ps
			}
			if _, ok := ps[r.Partition]; !ok {
				ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
			}
		}
		b.c.cl.SetOffsets(to)
		return nil
	}
	switch {
	case b.ended:
		return nil // End aborted, which rewound the session
	case b.begun:
		_, err := b.End(ctx, false)
		return err
	}
	// Aborting an empty transaction resets the session to its committed offsets.
	if err := b.c.sess.Begin(); err != nil {
		return Fatal(fmt.Errorf("beginning rewind: %w", err))
	}
	if _, err := b.c.sess.End(ctx, kgo.TryAbort); err != nil {
		return Fatal(fmt.Errorf("rewinding to committed offsets: %w", err))
	}
	return nil
}

// reconnect replaces the client by a new one with the same options (between batches only). The
// old one leaves the group first, so the new one resumes from the committed offsets.
func (e *Engine) reconnect() error {
	e.conn.Load().cl.Close()
	c, err := e.connect()
	if err != nil {
		return Fatal(fmt.Errorf("reconnecting: %w", err))
	}
	e.conn.Store(c)
	if e.cfg.OnReconnect != nil {
		e.cfg.OnReconnect()
	}
	return nil
}

func (e *Engine) dependency(ok bool) {
	if e.cfg.Dependency != nil {
		e.cfg.Dependency("broker", ok)
	}
}

// Commit commits offsets (manual mode), reporting a failed partition as an error. A failed
// commit can be retried; committing the same offset again is harmless.
func (e *Engine) Commit(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
	var cerr error
	e.Client().CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("partition %s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("committing offsets: %w", cerr)
	}
	return nil
}

// CommitRecords commits the offsets after recs (manual mode); see Commit.
func (e *Engine) CommitRecords(ctx context.Context, recs ...*kgo.Record) error {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for _, r := range recs {
		ps := offsets[r.Topic]
		if ps == nil {
			ps = make(map[int32]kgo.EpochOffset)
			offsets[r.Topic] = ps
		}
		if o, ok := ps[r.Partition]; !ok || o.Offset <= r.Offset {
			ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		}
	}
	return e.Commit(ctx, offsets)
}

// Close stops Run as cancelling its context does, waits for it to return (or for ctx to end,
// returning ctx's error), then leaves the group and closes the client. It is idempotent: a
// later call waits the same way and returns nil once the client is closed.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	cancel, done := e.cancelRun, e.runDone
	e.mu.Unlock()
	var err error
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("consume: waiting for Run: %w", ctx.Err())
		}
	}
	e.closeOnce.Do(func() {
		cl := e.Client()
		if !e.transactional() {
			cl.AllowRebalance() // Close leaves the group, which waits for it
		}
		cl.Close()
	})
	return err
}

// Batch is one poll's records, handed to a Handler, with the transaction to produce them in.
type Batch struct {
	Records []*kgo.Record

	e            *Engine
	c            *conn
	begun, ended bool
}

// Client returns the engine's client for this batch.
func (b *Batch) Client() *kgo.Client { return b.c.cl }

// Begin begins the batch's transaction (transactional mode). Its error is Fatal.
func (b *Batch) Begin() error {
	if err := b.c.sess.Begin(); err != nil {
		return Fatal(fmt.Errorf("beginning transaction: %w", err))
	}
	b.begun = true
	return nil
}

// Produce produces r in the batch's transaction; promise is called when it is acknowledged or
// failed. Call it between Begin and End.
func (b *Batch) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	b.c.sess.Produce(ctx, r, promise)
}

// End ends the batch's transaction: if commit is true, commits the batch's offsets with what it
// produced (unless the group rebalanced meanwhile, which aborts); otherwise aborts, which rewinds
// the session to its committed offsets. It returns whether it committed; its error is Fatal.
func (b *Batch) End(ctx context.Context, commit bool) (bool, error) {
	b.ended = true
	committed, err := b.c.sess.End(ctx, kgo.TransactionEndTry(commit))
	if err != nil {
		return false, Fatal(fmt.Errorf("ending transaction: %w", err))
	}
	return committed, nil
}

// fatalError marks an error that stops Run.
type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

// Fatal marks err as fatal: a handler returning it stops Run, which returns it. Nil stays nil.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err}
}

// IsFatal reports whether err (or an error it wraps) was marked Fatal.
func IsFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

// Backoff waits before the next attempt after failures consecutive failures: 100 ms doubling up
// to 5 s, with jitter (half to all of it), or until ctx ends.
func Backoff(ctx context.Context, failures int) {
	d := min(100*time.Millisecond<<min(max(failures, 1)-1, 6), 5*time.Second)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
