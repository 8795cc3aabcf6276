package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/consume"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
)

// Defaults of Config's zero values.
const (
	DefaultGroup           = "veil-analytics"
	DefaultFlushInterval   = 60 * time.Second
	DefaultMaxRows         = 50_000
	DefaultRetryBackoff    = time.Second
	DefaultMaxRetryBackoff = time.Minute
	DefaultShutdownTimeout = 30 * time.Second
)

// maxPollRecords bounds how many records one loop iteration handles, so that rebalances (blocked
// while records are processed) wait for little.
const maxPollRecords = 10_000

// Config configures a Sink. Zero values mean the documented defaults.
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Group is the consumer group; default DefaultGroup ("veil-analytics").
	Group string
	// Ledgers are the ledgers whose redacted topics are consumed; default every ledger.
	Ledgers []string
	// Writer stores the files. Required (NewLocalDir for a local directory).
	Writer Writer
	// FlushInterval is how long rows of a source partition wait at most before they are written;
	// default DefaultFlushInterval (60 s).
	FlushInterval time.Duration
	// MaxRows is the most rows per file; a partition whose file reaches it is flushed at once.
	// Default DefaultMaxRows (50,000).
	MaxRows int
	// RetryBackoff is the first delay before a failed flush is retried, doubling up to
	// MaxRetryBackoff; defaults DefaultRetryBackoff (1 s) and DefaultMaxRetryBackoff (1 min).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// ShutdownTimeout bounds the final flush and commit once Run's context is cancelled; default
	// DefaultShutdownTimeout (30 s).
	ShutdownTimeout time.Duration
	// KafkaOpts are extra client options (TLS, SASL, …). They are applied before the sink's own,
	// which fix the group, topics, read-committed isolation and manual commits.
	KafkaOpts []kgo.Opt
	// Logger receives warnings; default slog.Default(). Lines carry topics, partitions, offsets,
	// field paths and error reasons, never row values.
	Logger *slog.Logger
	// OnFlush, if set, is called after every flush attempt of a source partition, from the sink's
	// goroutine: it should return quickly.
	OnFlush func(FlushStats)
}

// FlushStats describes one flush attempt of one source partition's batch.
type FlushStats struct {
	Topic       string
	Partition   int32
	FirstOffset int64 // first offset of the batch
	LastOffset  int64 // last offset of the batch
	Files       int   // files written (all of them when Err is nil)
	Rows        int
	Bytes       int64
	Latency     time.Duration
	// Err is non-nil when the flush failed: nothing of the batch was committed and the flush will
	// be retried after a backoff.
	Err error
}

// Stats are the sink's counters since New.
type Stats struct {
	Records       uint64 // records consumed, skipped ones included
	Flushes       uint64 // successful flushes of a partition batch
	Files         uint64 // files written (a rewrite counts again)
	Rows          uint64 // rows written (a rewrite counts again)
	Bytes         uint64 // bytes written
	WriteErrors   uint64 // failed flush attempts
	Commits       uint64 // successful offset commits
	CommitErrors  uint64 // failed offset commits (retried with the next one)
	RefusedTokens uint64 // rows refused because their data held a token
	Invalid       uint64 // records skipped because they are not a valid entry of their topic's ledger
}

// ErrClosed is returned by Run when the sink was closed before or while it ran.
var ErrClosed = errors.New("analytics: sink closed")

// Sink consumes the redacted topics and writes Parquet files. Run it once; Close releases it.
// Its engine (internal/consume, manual mode) polls, throttles fetch errors, reconnects and
// commits; the sink buffers rows per partition and says which offsets its files made durable.
type Sink struct {
	cfg Config
	log *slog.Logger
	eng *consume.Engine

	running atomic.Bool

	mu      sync.Mutex
	parts   map[topicPartition]*batch
	pending map[topicPartition]kgo.EpochOffset // durable in files, not yet committed
	// floor is, per assigned partition, the offset of the first record read since it was
	// assigned: every row below it was committed by an earlier run and is not read again.
	floor map[topicPartition]int64

	records, flushes, files, rows, bytes, writeErrs, commits, commitErrs, refused, invalid atomic.Uint64
}

type topicPartition struct {
	topic     string
	partition int32
}

// batch is what a source partition buffered since its last flush: one file per partition key.
type batch struct {
	first, last int64 // offsets of the batch, first < 0 when empty
	epoch       int32 // leader epoch of the last record
	since       time.Time
	files       map[fileKey]*fileRows
	full        bool // a file reached MaxRows

	retryAt time.Time
	backoff time.Duration
	paused  bool
}

type fileRows struct {
	first, last int64
	rows        []Row
}

// New validates cfg and creates the Kafka client; Run starts consuming.
func New(cfg Config) (*Sink, error) {
	if cfg.Writer == nil {
		return nil, errors.New("analytics: no writer configured")
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("analytics: no brokers configured")
	}
	cfg.Group = cmp.Or(cfg.Group, DefaultGroup)
	cfg.FlushInterval = cmp.Or(cfg.FlushInterval, DefaultFlushInterval)
	cfg.MaxRows = cmp.Or(cfg.MaxRows, DefaultMaxRows)
	cfg.RetryBackoff = cmp.Or(cfg.RetryBackoff, DefaultRetryBackoff)
	cfg.MaxRetryBackoff = max(cmp.Or(cfg.MaxRetryBackoff, DefaultMaxRetryBackoff), cfg.RetryBackoff)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, DefaultShutdownTimeout)
	if cfg.FlushInterval < 0 || cfg.MaxRows < 0 || cfg.RetryBackoff < 0 || cfg.ShutdownTimeout < 0 {
		return nil, errors.New("analytics: negative interval, row count or timeout")
	}
	if len(cfg.Ledgers) == 0 {
		for _, l := range ledgers.All() {
			cfg.Ledgers = append(cfg.Ledgers, l.Name)
		}
	}
	topics := make([]string, 0, len(cfg.Ledgers))
	for _, name := range cfg.Ledgers {
		if _, ok := ledgers.Lookup(name); !ok {
			return nil, fmt.Errorf("analytics: unknown ledger %q", name)
		}
		topics = append(topics, broker.RedactedTopic(name))
	}
	s := &Sink{
		cfg:     cfg,
		log:     cmp.Or(cfg.Logger, slog.Default()),
		parts:   make(map[topicPartition]*batch),
		pending: make(map[topicPartition]kgo.EpochOffset),
		floor:   make(map[topicPartition]int64),
	}
	eng, err := consume.New(consume.Config{
		Brokers: cfg.Brokers, Group: cfg.Group, Topics: topics, MaxPoll: maxPollRecords,
		Opts: append(slices.Clip(cfg.KafkaOpts),
			kgo.OnPartitionsRevoked(s.onRevoked),
			kgo.OnPartitionsLost(s.onLost),
		),
		// Every poll, records or not, ends when the earliest batch is due, and flushes what is.
		PollWait:  func() time.Duration { return s.pollWait(time.Now()) },
		EveryPoll: true,
		Drain:     s.drain,
		// A new client reads again from the committed offsets (the old one's revoke wrote and
		// committed what it could): what it reads first is each partition's new floor.
		OnReconnect: func() {
			s.mu.Lock()
			clear(s.floor)
			s.mu.Unlock()
		},
		Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("analytics: %w", err)
	}
	s.eng = eng
	return s, nil
}

// Stats returns the sink's counters.
func (s *Sink) Stats() Stats {
	return Stats{
		Records: s.records.Load(), Flushes: s.flushes.Load(), Files: s.files.Load(), Rows: s.rows.Load(), Bytes: s.bytes.Load(),
		WriteErrors: s.writeErrs.Load(), Commits: s.commits.Load(), CommitErrors: s.commitErrs.Load(),
		RefusedTokens: s.refused.Load(), Invalid: s.invalid.Load(),
	}
}

// Close stops Run if it runs (as cancelling its context does: the final flush and commit run),
// waits for it until ctx ends, then leaves the group and releases the client. It is idempotent;
// Run closes the sink itself when it returns, so Close is needed only for a sink that is never
// run, or to stop one.
func (s *Sink) Close(ctx context.Context) error {
	return s.eng.Close(ctx)
}

// Run consumes until ctx is cancelled, then writes what is buffered, commits, leaves the group
// and returns nil. It returns an error if the final flush cannot complete within ShutdownTimeout
// (the unwritten rows stay uncommitted and are read again by the next run), and ErrClosed if the
// sink was closed. Run may be called once.
func (s *Sink) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("analytics: Run called twice")
	}
	defer s.Close(context.Background())
	err := s.eng.Run(ctx, s.batch)
	if errors.Is(err, consume.ErrClosed) {
		return ErrClosed
	}
	return err
}

// batch buffers the records of one poll (maybe none), writes the batches that are full or due,
// and commits what the files made durable. Failures are the batches' own (retried with their
// backoff, their partition paused): the engine never has to rewind.
func (s *Sink) batch(ctx context.Context, b *consume.Batch) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Records {
		k := topicPartition{r.Topic, r.Partition}
		bt := s.add(k, r)
		if bt.full && ctx.Err() == nil && !time.Now().Before(bt.retryAt) {
			s.flush(ctx, k, bt)
		}
	}
	if ctx.Err() != nil {
		return true, nil // the engine drains: drain writes everything
	}
	now := time.Now()
	for k, bt := range s.parts {
		if s.due(bt, now) {
			s.flush(ctx, k, bt)
		}
	}
	s.commitPending(ctx)
	return true, nil
}

// drain is the end of Run: it buffers the last poll's records, then writes every batch and
// commits (shutdown).
func (s *Sink) drain(recs []*kgo.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		s.add(topicPartition{r.Topic, r.Partition}, r)
	}
	return s.shutdown()
}

// due reports whether b should be flushed now.
func (s *Sink) due(b *batch, now time.Time) bool {
	return b.first >= 0 && !now.Before(b.retryAt) && (b.full || now.Sub(b.since) >= s.cfg.FlushInterval)
}

// pollWait is how long the next poll may wait: until the earliest batch is due.
func (s *Sink) pollWait(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := s.cfg.FlushInterval
	for _, b := range s.parts {
		if b.first < 0 {
			continue
		}
		at := b.since.Add(s.cfg.FlushInterval)
		if b.full || b.retryAt.After(at) {
			at = b.retryAt
		}
		wait = min(wait, at.Sub(now))
	}
	if len(s.pending) > 0 {
		wait = min(wait, s.cfg.RetryBackoff)
	}
	return max(wait, time.Millisecond)
}

// add buffers r into its partition's batch and returns the batch. A record that is not a valid
// entry of its topic's ledger, or that holds a token, is skipped: it only advances the batch.
func (s *Sink) add(k topicPartition, r *kgo.Record) *batch {
	b := s.parts[k]
	if b == nil {
		b = &batch{first: -1}
		s.parts[k] = b
	}
	if b.first < 0 {
		b.first, b.since, b.files, b.full = r.Offset, time.Now(), make(map[fileKey]*fileRows), false
	}
	b.last, b.epoch = r.Offset, r.LeaderEpoch
	if _, ok := s.floor[k]; !ok {
		s.floor[k] = r.Offset
	}
	s.records.Add(1)

	ledger, _ := broker.LedgerOf(r.Topic)
	e, err := schemas.Decode(r.Value, schemas.Limits{})
	if err == nil && e.Ledger != ledger {
		err = errors.New("entry ledger differs from its topic")
	}
	var row Row
	if err == nil {
		row, err = rowOf(e)
	}
	if err != nil {
		if errors.Is(err, errTokenInRow) {
			s.refused.Add(1)
			s.log.Error("analytics: refusing row that holds a token", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		} else {
			s.invalid.Add(1)
			s.log.Warn("analytics: skipping invalid row", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		}
		return b
	}
	fk := keyOf(e.AppID, ledger, e.TS)
	f := b.files[fk]
	if f == nil {
		f = &fileRows{first: r.Offset}
		b.files[fk] = f
	}
	f.last = r.Offset
	f.rows = append(f.rows, row)
	if len(f.rows) >= s.cfg.MaxRows {
		b.full = true
	}
	return b
}

// flush writes every file of b, removes files of earlier uncommitted runs that overlap the batch,
// and on success queues the offset after the batch for commit. On failure the batch is kept whole
// (a retry rewrites the same names), its partition is paused, and a retry is scheduled.
func (s *Sink) flush(ctx context.Context, k topicPartition, b *batch) error {
	start := time.Now()
	st := FlushStats{Topic: k.topic, Partition: k.partition, FirstOffset: b.first, LastOffset: b.last}
	keys := make([]fileKey, 0, len(b.files))
	for fk := range b.files {
		keys = append(keys, fk)
	}
	slices.SortFunc(keys, func(x, y fileKey) int {
		return cmp.Or(cmp.Compare(x.app, y.app), cmp.Compare(x.ledger, y.ledger), x.hour.Compare(y.hour))
	})
	var err error
	for _, fk := range keys {
		f := b.files[fk]
		dir := fk.Dir()
		name := dir + "/" + fileName(k.partition, f.first, f.last)
		var n int64
		err = s.cfg.Writer.WriteFile(ctx, name, func(w io.Writer) error {
			cw := &countingWriter{w: w}
			err := writeParquet(cw, f.rows)
			n = cw.n
			return err
		})
		if err != nil {
			err = fmt.Errorf("writing %s: %w", name, err)
			break
		}
		st.Files++
		st.Rows += len(f.rows)
		st.Bytes += n
		if err = s.removeOverlapping(ctx, dir, name, k.partition, s.floor[k], b.first, b.last); err != nil {
			break
		}
	}
	st.Latency = time.Since(start)
	st.Err = err
	s.files.Add(uint64(st.Files))
	s.rows.Add(uint64(st.Rows))
	s.bytes.Add(uint64(st.Bytes))
	if err != nil {
		s.writeErrs.Add(1)
		b.backoff = min(max(2*b.backoff, s.cfg.RetryBackoff), s.cfg.MaxRetryBackoff)
		b.retryAt = time.Now().Add(b.backoff)
		if !b.paused {
			s.eng.Client().PauseFetchPartitions(map[string][]int32{k.topic: {k.partition}})
			b.paused = true
		}
		s.log.Warn("analytics: flush failed, retrying", "topic", k.topic, "partition", k.partition,
			"first_offset", b.first, "last_offset", b.last, "retry_in", b.backoff, "err", err)
	} else {
		s.flushes.Add(1)
		s.pending[k] = kgo.EpochOffset{Epoch: b.epoch, Offset: b.last + 1}
		if b.paused {
			s.eng.Client().ResumeFetchPartitions(map[string][]int32{k.topic: {k.partition}})
		}
		*b = batch{first: -1}
	}
	if s.cfg.OnFlush != nil {
		s.cfg.OnFlush(st)
	}
	return err
}

// removeOverlapping deletes the files of partition in dir, other than keep, whose offset range
// overlaps [first, last] and starts at or after floor. Such a file was written by an earlier run
// that did not commit (committed offsets all precede floor), and its rows are being rewritten now
// or in a later batch of this run before any commit passes them: keeping it would duplicate them.
// A file that starts below floor holds committed rows that are not read again: it is kept even
// if it overlaps (which happens only if the partition's offsets moved back, as when a group is
// rewound), since removing it would lose rows.
func (s *Sink) removeOverlapping(ctx context.Context, dir, keep string, partition int32, floor, first, last int64) error {
	names, err := s.cfg.Writer.List(ctx, dir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, n := range names {
		p, f, l, ok := parseFileName(n)
		name := dir + "/" + n
		if !ok || p != partition || name == keep || l < first || f > last {
			continue
		}
		if f < floor {
			s.log.Warn("analytics: kept an overlapping file that holds committed rows", "file", name, "first_offset_read", floor)
			continue
		}
		if err := s.cfg.Writer.Remove(ctx, name); err != nil {
			return fmt.Errorf("removing %s: %w", name, err)
		}
		s.log.Info("analytics: removed file of an uncommitted earlier run", "file", name)
	}
	return nil
}

// commitPending commits the offsets whose rows are all in durable files. A failed commit is kept
// and retried; committing the same offset again is harmless.
func (s *Sink) commitPending(ctx context.Context) {
	if len(s.pending) == 0 {
		return
	}
	if err := s.commit(ctx, s.pending); err != nil {
		s.log.Warn("analytics: committing offsets", "err", err)
		return
	}
	clear(s.pending)
}

func (s *Sink) commit(ctx context.Context, offsets map[topicPartition]kgo.EpochOffset) error {
	m := make(map[string]map[int32]kgo.EpochOffset)
	for k, o := range offsets {
		if m[k.topic] == nil {
			m[k.topic] = make(map[int32]kgo.EpochOffset)
		}
		m[k.topic][k.partition] = o
	}
	if err := s.eng.Commit(ctx, m); err != nil {
		s.commitErrs.Add(1)
		return err
	}
	s.commits.Add(1)
	return nil
}

// shutdown flushes every batch, retrying failures until ShutdownTimeout, and commits.
func (s *Sink) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var lastErr error
	for {
		lastErr = nil
		retryAt := time.Time{}
		for k, b := range s.parts {
			if b.first < 0 {
				continue
			}
			if err := s.flush(ctx, k, b); err != nil {
				lastErr = err
				if retryAt.IsZero() || b.retryAt.Before(retryAt) {
					retryAt = b.retryAt
				}
			}
		}
		if lastErr == nil {
			break
		}
		t := time.NewTimer(time.Until(retryAt))
		select {
		case <-ctx.Done():
			t.Stop()
			s.commitPending(ctx)
			return fmt.Errorf("analytics: flushing at shutdown: %w", lastErr)
		case <-t.C:
		}
	}
	if len(s.pending) > 0 {
		if err := s.commit(ctx, s.pending); err != nil {
			return fmt.Errorf("analytics: committing at shutdown: %w", err)
		}
		clear(s.pending)
	}
	return nil
}

// onRevoked writes the revoked partitions' batches once (no retry: the rebalance waits) and
// commits what is durable; whatever could not be written is dropped and read again by the next
// owner from the committed offset.
func (s *Sink) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	commit := make(map[topicPartition]kgo.EpochOffset)
	for topic, ps := range revoked {
		for _, p := range ps {
			k := topicPartition{topic, p}
			if b := s.parts[k]; b != nil && b.first >= 0 {
				s.flush(ctx, k, b)
			}
			if o, ok := s.pending[k]; ok {
				commit[k] = o
			}
		}
	}
	if len(commit) > 0 {
		if err := s.commit(ctx, commit); err != nil {
			s.log.Warn("analytics: committing revoked partitions", "err", err)
		}
	}
	s.drop(revoked)
}

// onLost drops the lost partitions' batches and pending commits: their next owner reads them again.
func (s *Sink) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(lost)
}

func (s *Sink) drop(tps map[string][]int32) {
	for topic, ps := range tps {
		for _, p := range ps {
			k := topicPartition{topic, p}
			if b := s.parts[k]; b != nil && b.paused {
				s.eng.Client().ResumeFetchPartitions(map[string][]int32{topic: {p}})
			}
			delete(s.parts, k)
			delete(s.pending, k)
			delete(s.floor, k)
		}
	}
}

// writeParquet writes rows as one Parquet file (zstd-compressed columns).
func writeParquet(w io.Writer, rows []Row) error {
	pw := parquet.NewGenericWriter[Row](w, parquet.Compression(&zstd.Codec{}))
	if _, err := pw.Write(rows); err != nil {
		return fmt.Errorf("encoding parquet rows: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("closing parquet file: %w", err)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
