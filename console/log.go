package console

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Log reads ranges of offsets from topics, read_committed, without a consumer group: a page is
// found by listing offsets by timestamp (ListOffsets) and fetching only the offsets it needs,
// never by reading a topic from its start. It is safe for concurrent use: every read is its own
// Fetch request, so concurrent pages share nothing but the connection.
type Log struct {
	cl  *kgo.Client
	adm *kadm.Client
	dec kgo.Decompressor

	closeOnce sync.Once

	mu     sync.Mutex
	meta   map[string]topicMeta
	metaAt time.Time
}

type topicMeta struct {
	id    kadm.TopicID
	parts []partMeta
}

type partMeta struct {
	p      int32
	leader int32
}

// metaTTL bounds how long partition leaders and counts are cached.
const metaTTL = 10 * time.Second

// fetchBytes bounds one fetch response per partition.
const fetchBytes = 1 << 20

// NewLog connects to brokers; opts (TLS, SASL) are appended.
func NewLog(brokers []string, opts ...kgo.Opt) (*Log, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("veil-console")}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting console reader: %w", err)
	}
	return &Log{cl: cl, adm: kadm.NewClient(cl), dec: kgo.DefaultDecompressor()}, nil
}

// Close closes the client, waiting for its requests in flight to end. It is idempotent and
// always returns nil; ctx is not consulted.
func (l *Log) Close(context.Context) error {
	l.closeOnce.Do(l.cl.Close)
	return nil
}

// topics returns the metadata of the existing topics among names; missing topics are left out.
func (l *Log) topics(ctx context.Context, names []string) (map[string]topicMeta, error) {
	l.mu.Lock()
	fresh := time.Since(l.metaAt) < metaTTL
	out := make(map[string]topicMeta, len(names))
	missing := false
	for _, n := range names {
		m, ok := l.meta[n]
		if !ok {
			missing = true
		}
		out[n] = m
	}
	l.mu.Unlock()
	if fresh && !missing {
		return out, nil
	}
	md, err := l.adm.Metadata(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("reading topic metadata: %w", err)
	}
	clear(out)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.meta == nil || !fresh {
		l.meta = make(map[string]topicMeta)
	}
	for _, td := range md.Topics {
		if td.Err != nil {
			continue
		}
		m := topicMeta{id: td.ID}
		for _, pd := range td.Partitions.Sorted() {
			m.parts = append(m.parts, partMeta{p: pd.Partition, leader: pd.Leader})
		}
		l.meta[td.Topic] = m
		out[td.Topic] = m
	}
	l.metaAt = time.Now()
	return out, nil
}

// span is the offsets [lo, hi) of one partition to read.
type span struct {
	topic  string
	meta   topicMeta
	part   partMeta
	lo, hi int64
}

// spans returns, for every partition of topics, the committed offsets whose timestamps fall in
// [fromMs, toMs); fromMs < 0 means the log start, toMs < 0 the last stable offset.
func (l *Log) spans(ctx context.Context, topics []string, fromMs, toMs int64) ([]span, error) {
	meta, err := l.topics(ctx, topics)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range topics {
		if len(meta[t].parts) > 0 {
			names = append(names, t)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	var (
		wg                        sync.WaitGroup
		starts, ends, lows, highs kadm.ListedOffsets
		e1, e2, e3, e4            error
	)
	wg.Add(2)
	go func() { defer wg.Done(); starts, e1 = l.adm.ListStartOffsets(ctx, names...) }()
	// read_committed end: the last stable offset, so an open transaction's records are not read.
	go func() { defer wg.Done(); ends, e2 = l.adm.ListCommittedOffsets(ctx, names...) }()
	if fromMs >= 0 {
		wg.Add(1)
		go func() { defer wg.Done(); lows, e3 = l.adm.ListOffsetsAfterMilli(ctx, fromMs, names...) }()
	}
	if toMs >= 0 {
		wg.Add(1)
		go func() { defer wg.Done(); highs, e4 = l.adm.ListOffsetsAfterMilli(ctx, toMs, names...) }()
	}
	wg.Wait()
	if err := errors.Join(e1, e2, e3, e4); err != nil {
		return nil, fmt.Errorf("listing offsets: %w", err)
	}
	var out []span
	for _, t := range names {
		m := meta[t]
		for _, pm := range m.parts {
			s, ok1 := starts.Lookup(t, pm.p)
			e, ok2 := ends.Lookup(t, pm.p)
			if !ok1 || !ok2 || s.Err != nil || e.Err != nil {
				return nil, fmt.Errorf("listing offsets of %s/%d: %w", t, pm.p, errors.Join(s.Err, e.Err))
			}
			lo, hi := s.Offset, e.Offset
			if o, ok := lows.Lookup(t, pm.p); ok && o.Err == nil && o.Offset > lo {
				lo = o.Offset
			}
			if o, ok := highs.Lookup(t, pm.p); ok && o.Err == nil && o.Offset >= 0 && o.Offset < hi {
				hi = o.Offset
			}
			if lo < hi {
				out = append(out, span{topic: t, meta: m, part: pm, lo: lo, hi: hi})
			}
		}
	}
	return out, nil
}

// read returns the committed records of one partition with offsets in [lo, hi), in order, and
// those of the record batch holding lo that lie below it down to floor: the broker returns whole
// batches and decoding them is the cost, so walking back uses all of it. Records of aborted
// transactions and control records are left out, so fewer than hi-lo may come back.
func (l *Log) read(ctx context.Context, s span, lo, hi, floor int64) ([]*kgo.Record, error) {
	var out []*kgo.Record
	floor = min(floor, lo)
	first := true
	for lo < hi {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MinBytes = 1
		req.MaxBytes = fetchBytes
		req.IsolationLevel = 1
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = s.topic, s.meta.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = s.part.p, lo, fetchBytes
		rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, l.cl.Broker(int(s.part.leader)))
		if err != nil {
			l.forget()
			return nil, fmt.Errorf("fetching %s/%d: %w", s.topic, s.part.p, err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			l.forget()
			return nil, fmt.Errorf("fetching %s/%d: %w", s.topic, s.part.p, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return nil, fmt.Errorf("fetching %s/%d: unexpected response shape", s.topic, s.part.p)
		}
		from := lo
		if first {
			from, first = floor, false
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset: from, IsolationLevel: kgo.ReadCommitted(), Topic: s.topic, Partition: s.part.p,
		}, &resp.Topics[0].Partitions[0], l.dec, nil)
		if errors.Is(fp.Err, kerr.OffsetOutOfRange) {
			return out, nil // past the end or below the start: nothing there
		}
		if fp.Err != nil {
			l.forget()
			return nil, fmt.Errorf("fetching %s/%d: %w", s.topic, s.part.p, fp.Err)
		}
		for _, r := range fp.Records {
			if r.Offset >= hi {
				return out, nil
			}
			out = append(out, r)
		}
		if next <= lo {
			break // nothing more to read below hi (a gap at the end of the log)
		}
		lo = next
	}
	return out, nil
}

// forget drops cached metadata after an error, so a moved leader is found again.
func (l *Log) forget() {
	l.mu.Lock()
	l.metaAt = time.Time{}
	l.mu.Unlock()
}
