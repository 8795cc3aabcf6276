package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// span is the offset range [lo, hi) of one partition.
type span struct{ lo, hi int64 }

// spans maps topic → partition → span.
type spans map[string]map[int32]span

func (s spans) set(topic string, p int32, sp span) {
	if s[topic] == nil {
		s[topic] = make(map[int32]span)
	}
	s[topic][p] = sp
}

func (s spans) size() int64 {
	var n int64
	for _, ps := range s {
		for _, sp := range ps {
			n += max(sp.hi-sp.lo, 0)
		}
	}
	return n
}

// window returns, for each partition of topics, the offsets of the records timestamped in
// [from, to]: from the first at or after from, to the first after to, capped at the last stable
// offset (records of open transactions cannot be read committed yet).
func window(ctx context.Context, adm *kadm.Client, from, to time.Time, topics ...string) (spans, error) {
	lo, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topics...)
	if err != nil {
		return nil, fmt.Errorf("listing offsets by time: %w", err)
	}
	hi, err := adm.ListOffsetsAfterMilli(ctx, to.UnixMilli()+1, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing offsets by time: %w", err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing stable offsets: %w", err)
	}
	out := make(spans)
	var ferr error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = fmt.Errorf("topic %s: %w", o.Topic, o.Err)
			return
		}
		h, ok1 := hi.Lookup(o.Topic, o.Partition)
		s, ok2 := stable.Lookup(o.Topic, o.Partition)
		if !ok1 || !ok2 || h.Err != nil || s.Err != nil {
			ferr = fmt.Errorf("topic %s partition %d: offsets unavailable", o.Topic, o.Partition)
			return
		}
		end := min(h.Offset, s.Offset)
		if h.Offset < 0 {
			end = s.Offset
		}
		start := o.Offset
		if start < 0 {
			start = end
		}
		out.set(o.Topic, o.Partition, span{start, end})
	})
	for _, t := range topics {
		if _, ok := out[t]; !ok && ferr == nil {
			ferr = fmt.Errorf("topic %s does not exist", t)
		}
	}
	return out, ferr
}

// stallTimeout is how long a read may get no record while partitions still have records left to
// deliver before it fails instead of waiting forever.
const stallTimeout = 10 * time.Second

// read calls fn, in offset order per partition, for every data record (read committed) within sp.
// Control records are consumed to see the end of a range but not passed on; gap, if not nil, is
// told how many offsets of sp held no data record (transaction markers, aborted records).
func read(ctx context.Context, brokers []string, opts []kgo.Opt, sp spans, gap func(int64), fn func(*kgo.Record) error) error {
	if gap == nil {
		gap = func(int64) {}
	}
	offsets := make(map[string]map[int32]kgo.Offset)
	next := make(map[string]map[int32]int64)
	left := 0
	for t, ps := range sp {
		for p, s := range ps {
			if s.lo >= s.hi {
				continue
			}
			if offsets[t] == nil {
				offsets[t] = make(map[int32]kgo.Offset)
				next[t] = make(map[int32]int64)
			}
			offsets[t][p] = kgo.NewOffset().At(s.lo)
			next[t][p] = s.lo
			left++
		}
	}
	if left == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, opts...)...)
	if err != nil {
		return fmt.Errorf("connecting to Kafka: %w", err)
	}
	defer cl.Close()
	done := make(map[string]map[int32]bool)
	finish := func(t string, p int32) {
		if done[t] == nil {
			done[t] = make(map[int32]bool)
		}
		if !done[t][p] {
			done[t][p] = true
			left--
			cl.PauseFetchPartitions(map[string][]int32{t: {p}})
		}
	}
	for left > 0 {
		pctx, cancel := context.WithTimeout(ctx, stallTimeout)
		fs := cl.PollFetches(pctx)
		timedOut := pctx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("fetching %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		recs := fs.Records()
		if len(recs) == 0 && timedOut {
			return fmt.Errorf("reading stalled: %d partitions still have records in range but none arrived for %s", left, stallTimeout)
		}
		for _, r := range recs {
			s, ok := sp[r.Topic][r.Partition]
			if !ok || done[r.Topic][r.Partition] {
				continue
			}
			n := next[r.Topic][r.Partition]
			if r.Offset >= s.hi {
				gap(s.hi - n)
				finish(r.Topic, r.Partition)
				continue
			}
			if r.Offset > n {
				gap(r.Offset - n)
			}
			next[r.Topic][r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				gap(1)
			} else if err := fn(r); err != nil {
				return err
			}
			if r.Offset >= s.hi-1 {
				finish(r.Topic, r.Partition)
			}
		}
	}
	return nil
}
