package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/pipeline/sample"
)

// The latency sweep: an open-loop producer writes sample entries to the raw topics at a fixed
// rate, the pipeline runs as in production, and a read_committed consumer of every redacted.*
// topic notes when each entry becomes visible there. An entry's latency runs from the time it was
// due to be produced (not from when the producer got to it: a producer that falls behind counts
// against the pipeline, so there is no coordinated omission) to its arrival at the consumer.
// Produced records and redacted ones are joined on the raw record's position, which the pipeline
// copies into the veil-source header.

// sweepOpts configure the sweep.
type sweepOpts struct {
	Rates    []int         // fixed rates, entries/s, always measured
	Sweep    bool          // then raise the rate by half until p99 exceeds P99Limit, and narrow the gap twice
	MaxRate  int           // the sweep stops here whatever p99 is
	Duration time.Duration // producing time per rate
	P99Limit time.Duration
	MaxPoll  int
	Opts     []kgo.Opt // extra options of the pipeline's Kafka client (the knob under test)
}

type rateResult struct {
	Rate       int     `json:"rate"`
	Achieved   float64 `json:"produced_per_s"` // what the producer actually managed
	Entries    int     `json:"entries"`
	Lost       int     `json:"not_visible"` // produced but not visible when the drain timed out
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Overloaded bool    `json:"p99_over_limit"`
}

type latencyResult struct {
	Rates []rateResult `json:"rates"`
	// P99Over is the lowest measured rate whose p99 exceeds the limit (0: none did), BelowLimit
	// the highest measured rate under it.
	P99Over    int     `json:"p99_over_limit_at"`
	BelowLimit int     `json:"p99_under_limit_up_to"`
	LimitMs    float64 `json:"p99_limit_ms"`
	Load       string  `json:"load_average"`
}

// benchLatency runs the sweep on a broker process of its own (so the backlog of the throughput
// phases is not in it) with the pipeline built by mk.
func benchLatency(ctx context.Context, o sweepOpts, mk func(brokers []string) (*pipeline.Processor, error)) (latencyResult, error) {
	addr, stopBroker, err := startBrokerChild()
	if err != nil {
		return latencyResult{}, err
	}
	defer stopBroker()
	brokers := []string{addr}
	if err := createTopics(ctx, brokers, 3); err != nil {
		return latencyResult{}, err
	}
	p, err := mk(brokers)
	if err != nil {
		return latencyResult{}, err
	}
	defer p.Close(context.WithoutCancel(ctx))
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(pctx) }()

	w, err := newWatcher(ctx, brokers)
	if err != nil {
		return latencyResult{}, err
	}
	defer w.close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return latencyResult{}, err
	}
	defer prod.Close()

	// A pool of entries produced round-robin: generating them on the clock would make the
	// producer, not the pipeline, the bottleneck.
	gen := sample.New(sample.Options{Seed: 2026, Now: time.Now})
	pool := make([]sample.Entry, 20_000)
	for i := range pool {
		pool[i] = gen.Next()
	}
	// Warm up: group join, first key fetch from the KMS, connections.
	if _, err := oneRate(ctx, prod, w, pool, 500, 2*time.Second, errc); err != nil {
		return latencyResult{}, fmt.Errorf("warm-up: %w", err)
	}
	res := latencyResult{LimitMs: ms(o.P99Limit)}
	measure := func(rate int) (rateResult, error) {
		fmt.Fprintf(os.Stderr, "latency: %d entries/s for %s …\n", rate, o.Duration)
		r, err := oneRate(ctx, prod, w, pool, rate, o.Duration, errc)
		if err != nil {
			return r, err
		}
		r.Overloaded = r.P99Ms > ms(o.P99Limit) || r.Lost > 0
		fmt.Fprintf(os.Stderr, "  p50 %.1f ms, p99 %.1f ms, max %.1f ms (produced %.0f/s, %d not visible)\n", r.P50Ms, r.P99Ms, r.MaxMs, r.Achieved, r.Lost)
		res.Rates = append(res.Rates, r)
		return r, nil
	}
	for _, rate := range o.Rates {
		if _, err := measure(rate); err != nil {
			return res, err
		}
	}
	if o.Sweep {
		// Above the fixed rates, raise by half until p99 is over the limit; then halve the gap
		// between the last rate under it and the first over it, twice.
		lo, hi := 0, 0
		for _, r := range res.Rates {
			if r.Overloaded {
				if hi == 0 || r.Rate < hi {
					hi = r.Rate
				}
			} else {
				lo = max(lo, r.Rate)
			}
		}
		// probe measures rate and moves the bound it falls on.
		probe := func(rate int) error {
			r, err := measure(rate)
			if err != nil {
				return err
			}
			if r.Overloaded {
				hi = rate
			} else {
				lo = rate
			}
			return nil
		}
		for hi == 0 && lo > 0 && lo < o.MaxRate {
			if err := probe(min(o.MaxRate, lo*3/2)); err != nil {
				return res, err
			}
		}
		for range 2 {
			if lo == 0 || hi == 0 || hi-lo <= hi/10 {
				break
			}
			if err := probe((lo + hi) / 2); err != nil {
				return res, err
			}
		}
	}
	for _, r := range res.Rates {
		if r.Overloaded && (res.P99Over == 0 || r.Rate < res.P99Over) {
			res.P99Over = r.Rate
		}
	}
	for _, r := range res.Rates {
		if !r.Overloaded && (res.P99Over == 0 || r.Rate < res.P99Over) {
			res.BelowLimit = max(res.BelowLimit, r.Rate)
		}
	}
	res.Load = loadAverage()
	return res, nil
}

// oneRate produces rate entries per second for d, open loop, and waits for them to be visible.
func oneRate(ctx context.Context, prod *kgo.Client, w *watcher, pool []sample.Entry, rate int, d time.Duration, errc <-chan error) (rateResult, error) {
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	var (
		mu      sync.Mutex
		due     = make(map[string]time.Time, total) // raw position → when the entry was due
		failed  error
		pending sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < total; {
		now := time.Now()
		if next := start.Add(time.Duration(i) * interval); now.Before(next) {
			time.Sleep(next.Sub(now))
			continue
		}
		for ; i < total && !start.Add(time.Duration(i)*interval).After(now); i++ {
			e := pool[i%len(pool)]
			when := start.Add(time.Duration(i) * interval)
			pending.Add(1)
			prod.Produce(ctx, &kgo.Record{Topic: broker.RawTopic(e.Ledger), Key: e.Key, Value: e.Value}, func(r *kgo.Record, err error) {
				defer pending.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = err
					return
				}
				due[position(r.Topic, r.Partition, r.Offset)] = when
			})
		}
	}
	produced := time.Since(start)
	pending.Wait()
	if failed != nil {
		return rateResult{}, fmt.Errorf("producing: %w", failed)
	}
	// Drain: wait until every produced entry is visible, or 10 s without progress.
	lastSeen, lastChange := 0, time.Now()
	for {
		seen := w.count(due)
		if seen == len(due) {
			break
		}
		if seen != lastSeen {
			lastSeen, lastChange = seen, time.Now()
		}
		if time.Since(lastChange) > 10*time.Second {
			break
		}
		select {
		case err := <-errc:
			return rateResult{}, fmt.Errorf("pipeline stopped: %v", err)
		case <-ctx.Done():
			return rateResult{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	lat, lost := w.take(due)
	r := rateResult{Rate: rate, Entries: total, Lost: lost, Achieved: float64(total) / produced.Seconds()}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50Ms, r.P99Ms, r.MaxMs = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1])
	}
	return r, nil
}

func position(topic string, partition int32, offset int64) string {
	return topic + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10)
}

// watcher is the read_committed consumer of every redacted.* topic: the view a downstream user
// reads. It notes when each raw position became visible there.
type watcher struct {
	cl   *kgo.Client
	mu   sync.Mutex
	seen map[string]time.Time
	done chan struct{}
}

func newWatcher(ctx context.Context, brokers []string) (*watcher, error) {
	var topics []string
	for _, l := range ledgers.All() {
		topics = append(topics, broker.RedactedTopic(l.Name))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	w := &watcher{cl: cl, seen: map[string]time.Time{}, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() || ctx.Err() != nil {
				return
			}
			now := time.Now()
			w.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == pipeline.HeaderSource {
						w.seen[string(h.Value)] = now
					}
				}
			})
			w.mu.Unlock()
		}
	}()
	return w, nil
}

func (w *watcher) count(due map[string]time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for pos := range due {
		if _, ok := w.seen[pos]; ok {
			n++
		}
	}
	return n
}

// take returns the latencies of the positions in due and how many were not seen, and forgets them.
func (w *watcher) take(due map[string]time.Time) ([]time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	lat := make([]time.Duration, 0, len(due))
	lost := 0
	for pos, t := range due {
		at, ok := w.seen[pos]
		if !ok {
			lost++
			continue
		}
		lat = append(lat, at.Sub(t))
		delete(w.seen, pos)
	}
	return lat, lost
}

func (w *watcher) close() { w.cl.Close(); <-w.done }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func printLatency(w io.Writer, r latencyResult) {
	fmt.Fprintf(w, "latency, produce → visible in redacted.* (read_committed), open loop (load average %s):\n", r.Load)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tproduced/s\tentries\tp50 ms\tp99 ms\tmax ms\tnot visible\t")
	for _, x := range r.Rates {
		fmt.Fprintf(tw, "%d\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%d\t\n", x.Rate, x.Achieved, x.Entries, x.P50Ms, x.P99Ms, x.MaxMs, x.Lost)
	}
	tw.Flush()
	switch {
	case r.P99Over > 0 && r.BelowLimit == 0:
		fmt.Fprintf(w, "p99 exceeds %.0f ms at every measured rate, from %d entries/s\n", r.LimitMs, r.P99Over)
	case r.P99Over > 0:
		fmt.Fprintf(w, "p99 exceeds %.0f ms at %d entries/s (under it up to %d entries/s)\n", r.LimitMs, r.P99Over, r.BelowLimit)
	default:
		fmt.Fprintf(w, "p99 stayed under %.0f ms at every measured rate (up to %d entries/s)\n", r.LimitMs, r.BelowLimit)
	}
}
