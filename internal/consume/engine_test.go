package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/veil-project/veil/internal/consume"
	"github.com/veil-project/veil/internal/testkit"
)

const records = 40

// setup starts kfake with topics in and out (partitions each) and writes records values
// v00…v39 to in.
func setup(t *testing.T, partitions int32) (*kfake.Cluster, []string) {
	t.Helper()
	c := testkit.Kafka(t, kfake.SeedTopics(partitions, "in", "out"))
	addrs := c.ListenAddrs()
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte{byte(i)}, Value: fmt.Appendf(nil, "v%02d", i)})
	}
	testkit.Produce(t, addrs, recs...)
	return c, addrs
}

// newEngine makes an engine for cfg; an error fails t.
func newEngine(t *testing.T, cfg consume.Config) *consume.Engine {
	t.Helper()
	e, err := consume.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// bothModes runs f as a subtest in each commit mode: transactional (txn "tx") and manual
// commits (txn "").
func bothModes(t *testing.T, f func(t *testing.T, txn string)) {
	for _, txn := range []string{"tx", ""} {
		t.Run(fmt.Sprintf("transactional=%v", txn != ""), func(t *testing.T) { f(t, txn) })
	}
}

// start runs e with h and returns a function that stops it and returns Run's error.
func start(t *testing.T, e *consume.Engine, h consume.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
			if cerr := e.Close(context.Background()); cerr != nil {
				t.Errorf("Close() = %v", cerr)
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// counting starts e with a handler that counts the records it is handed and commits nothing of
// its own.
func counting(t *testing.T, e *consume.Engine) (n *atomic.Int64, stop func() error) {
	n = new(atomic.Int64)
	return n, start(t, e, func(ctx context.Context, b *consume.Batch) (bool, error) {
		n.Add(int64(len(b.Records)))
		return true, nil
	})
}

// waitUntil polls cond for up to 30 s and reports whether it held.
func waitUntil(cond func() bool) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func values(recs []*kgo.Record) []string {
	var vs []string
	for _, r := range recs {
		vs = append(vs, string(r.Value))
	}
	sort.Strings(vs)
	return vs
}

func want() []string {
	var vs []string
	for i := range records {
		vs = append(vs, fmt.Sprintf("v%02d", i))
	}
	return vs
}

// A failing batch is rewound and handed again: failed once with its transaction open (the engine
// aborts it) and once before beginning (the engine begins and aborts an empty one), the copies
// on out are every input exactly once, none from the failed attempts.
func TestTransactionalFailedBatchIsRewoundAndRetried(t *testing.T) {
	_, addrs := setup(t, 1) // one partition: the batch handed again starts where the failed one did
	e := newEngine(t, consume.Config{Brokers: addrs, Group: "g", Topics: []string{"in"}, TransactionalID: "tx", MaxPoll: 7})
	var (
		mu     sync.Mutex
		calls  int
		firsts []string // first value of each batch handed over
	)
	stop := start(t, e, func(ctx context.Context, b *consume.Batch) (bool, error) {
		mu.Lock()
		calls++
		n := calls
		firsts = append(firsts, string(b.Records[0].Value))
		mu.Unlock()
		if n == 2 {
			return false, errors.New("failing before the transaction")
		}
		if err := b.Begin(); err != nil {
			return false, err
		}
		for _, r := range b.Records {
			b.Produce(ctx, &kgo.Record{Topic: "out", Key: r.Key, Value: r.Value}, nil)
		}
		if n == 1 {
			return false, errors.New("failing inside the transaction")
		}
		if n == 3 {
			return b.End(ctx, false) // aborted: handed again at once
		}
		if err := b.Client().Flush(ctx); err != nil {
			return false, err
		}
		return b.End(ctx, true)
	})
	got := values(testkit.Consume(t, addrs, records, 30*time.Second, 500*time.Millisecond, "out"))
	if err := stop(); err != nil {
		t.Errorf("Run() = %v, want nil after cancel", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want()) {
		t.Errorf("out holds %v, want each input once: %v", got, want())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(firsts) < 4 || firsts[1] != firsts[0] || firsts[2] != firsts[0] || firsts[3] != firsts[0] {
		t.Errorf("first records of the batches = %v, want the failed batch handed again (3 times)", firsts)
	}
}

// In manual mode a failed batch is handed again (the engine seeks back), and what the handler
// committed is not: after a restart on the same group nothing comes again.
func TestManualFailedBatchIsRewoundAndRetried(t *testing.T) {
	_, addrs := setup(t, 2)
	cfg := consume.Config{Brokers: addrs, Group: "m", Topics: []string{"in"}, MaxPoll: 5}
	e := newEngine(t, cfg)
	var (
		mu    sync.Mutex
		calls int
		done  []*kgo.Record
	)
	all := make(chan struct{})
	stop := start(t, e, func(ctx context.Context, b *consume.Batch) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%2 == 1 {
			return false, errors.New("failing every other batch")
		}
		if err := e.CommitRecords(ctx, b.Records...); err != nil {
			return false, err
		}
		done = append(done, b.Records...)
		if len(done) == records {
			close(all)
		}
		return true, nil
	})
	select {
	case <-all:
	case <-time.After(30 * time.Second):
	}
	if err := stop(); err != nil {
		t.Errorf("Run() = %v, want nil after cancel", err)
	}
	mu.Lock()
	got := values(done)
	mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want()) {
		t.Fatalf("handled %v, want each input once: %v", got, want())
	}

	// Everything was committed: a new engine in the same group gets nothing.
	e2 := newEngine(t, cfg)
	again, stop2 := counting(t, e2)
	testkit.Produce(t, addrs, &kgo.Record{Topic: "in", Value: []byte("late")})
	waitUntil(func() bool { return again.Load() > 0 })
	stop2()
	if n := again.Load(); n != 1 {
		t.Errorf("after a restart the group got %d records, want 1 (only the new one)", n)
	}
}

// A fatal error stops Run, which returns it; the handler is not called again.
func TestFatalErrorStopsRun(t *testing.T) {
	bothModes(t, func(t *testing.T, txn string) {
		_, addrs := setup(t, 2)
		e := newEngine(t, consume.Config{Brokers: addrs, Group: "f" + txn, Topics: []string{"in"}, TransactionalID: txn})
		defer e.Close(context.Background())
		boom := errors.New("boom")
		var calls atomic.Int64
		done := make(chan error, 1)
		go func() {
			done <- e.Run(context.Background(), func(ctx context.Context, b *consume.Batch) (bool, error) {
				calls.Add(1)
				return false, fmt.Errorf("handling: %w", consume.Fatal(boom))
			})
		}()
		select {
		case err := <-done:
			if !errors.Is(err, boom) || !consume.IsFatal(err) {
				t.Errorf("Run() = %v, want the fatal error", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("Run did not return after a fatal error (handler called %d times)", calls.Load())
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("handler called %d times, want 1", n)
		}
	})
}

// Polls that return only fetch errors are retried after a growing backoff, not at once: over two
// seconds of a broker refusing every fetch, the engine polls a handful of times (backoff of
// 100 ms doubling: about 5), where a loop without backoff polls hundreds of times. A slower
// machine only polls less. The broker is reported down.
func TestFetchErrorsAreThrottled(t *testing.T) {
	c, addrs := setup(t, 2)
	var fetches atomic.Int64
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		fetches.Add(1)
		return resp, nil, true
	})
	var down, up atomic.Int64
	e := newEngine(t, consume.Config{Brokers: addrs, Group: "t", Topics: []string{"in"}, TransactionalID: "tt",
		Dependency: func(name string, ok bool) {
			if name != "broker" {
				t.Errorf("Dependency(%q)", name)
			}
			if ok {
				up.Add(1)
			} else {
				down.Add(1)
			}
		}})
	handled, stop := counting(t, e)
	if !waitUntil(func() bool { return down.Load() > 0 }) {
		t.Fatalf("no failed poll reported in 30 s (%d fetches answered with an error)", fetches.Load())
	}
	before := down.Load()
	time.Sleep(2 * time.Second)
	polls := down.Load() - before
	stop()
	if polls > 20 {
		t.Errorf("%d polls of only fetch errors in 2 s (%d fetch requests), want a handful: fetch errors are not throttled", polls, fetches.Load())
	}
	if polls == 0 {
		t.Errorf("no poll in 2 s after the first fetch error: the engine stopped polling")
	}
	if handled.Load() != 0 || up.Load() != 0 {
		t.Errorf("handled %d records, broker reported up %d times, while every fetch failed", handled.Load(), up.Load())
	}
}

// Close stops a running Run, waits for it (the handler in flight returns first), is idempotent,
// and a Run after it returns ErrClosed.
func TestCloseIsIdempotentAndWaits(t *testing.T) {
	bothModes(t, func(t *testing.T, txn string) {
		_, addrs := setup(t, 2)
		e := newEngine(t, consume.Config{Brokers: addrs, Group: "c" + txn, Topics: []string{"in"}, TransactionalID: txn})
		inside := make(chan struct{})
		var handlerDone, runDone atomic.Bool
		runErr := make(chan error, 1)
		go func() {
			var once sync.Once
			runErr <- e.Run(context.Background(), func(ctx context.Context, b *consume.Batch) (bool, error) {
				once.Do(func() { close(inside) })
				<-ctx.Done()
				time.Sleep(300 * time.Millisecond) // work that takes a while to stop
				handlerDone.Store(true)
				return false, ctx.Err()
			})
			runDone.Store(true)
		}()
		select {
		case <-inside:
		case <-time.After(30 * time.Second):
			t.Fatal("no batch handed over in 30 s")
		}
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
		if !handlerDone.Load() {
			t.Errorf("Close returned before the handler in flight did")
		}
		if err := <-runErr; !errors.Is(err, consume.ErrClosed) {
			t.Errorf("Run() = %v, want ErrClosed", err)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("second Close() = %v, want nil", err)
		}
		if err := e.Run(context.Background(), func(context.Context, *consume.Batch) (bool, error) { return true, nil }); !errors.Is(err, consume.ErrClosed) {
			t.Errorf("Run after Close = %v, want ErrClosed", err)
		}
	})
}

// Close bounds its wait by its context: a handler that does not stop does not hold it forever.
func TestCloseGivesUpWithItsContext(t *testing.T) {
	_, addrs := setup(t, 2)
	e := newEngine(t, consume.Config{Brokers: addrs, Group: "s", Topics: []string{"in"}})
	inside, release := make(chan struct{}), make(chan struct{})
	runErr := make(chan error, 1)
	go func() {
		var once sync.Once
		runErr <- e.Run(context.Background(), func(ctx context.Context, b *consume.Batch) (bool, error) {
			once.Do(func() { close(inside) })
			<-release
			return true, nil
		})
	}()
	<-inside
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close() with a stuck handler = %v, want its context's error", err)
	}
	close(release)
	if err := <-runErr; !errors.Is(err, consume.ErrClosed) {
		t.Errorf("Run() = %v, want ErrClosed", err)
	}
}

// A topic deleted and created again (a new topic id, as after a restart of a broker that keeps
// no topics) does not wedge the engine: after StaleTopicWait it reconnects (OnReconnect is
// called) and hands over what arrives on the new topic. This holds in both modes (the egress
// stages had no reconnect of their own).
func TestRecreatedTopicReconnects(t *testing.T) {
	bothModes(t, func(t *testing.T, txn string) {
		t.Parallel() // each waits out StaleTopicWait, the client's own retries and a rejoin
		_, addrs := setup(t, 2)
		var reconnects atomic.Int64
		e := newEngine(t, consume.Config{Brokers: addrs, Group: "r" + txn, Topics: []string{"in"}, TransactionalID: txn,
			OnReconnect: func() { reconnects.Add(1) }})
		var (
			mu   sync.Mutex
			seen = map[string]bool{}
		)
		// Records count as seen once their batch is committed: the test deletes the topic
		// when v39 is seen, and a commit still in flight then would land on the recreated
		// topic (offsets are keyed by name), whose records below that offset the client
		// would then skip as lost.
		stop := start(t, e, func(ctx context.Context, b *consume.Batch) (committed bool, err error) {
			defer func() {
				if !committed || err != nil {
					return
				}
				mu.Lock()
				for _, r := range b.Records {
					seen[string(r.Value)] = true
				}
				mu.Unlock()
			}()
			if txn == "" {
				return true, e.CommitRecords(ctx, b.Records...)
			}
			if err := b.Begin(); err != nil {
				return false, err
			}
			return b.End(ctx, true)
		})
		has := func(v string) func() bool {
			return func() bool { mu.Lock(); defer mu.Unlock(); return seen[v] }
		}
		if !waitUntil(has("v39")) {
			t.Fatal("the first records were not handed over in 30 s")
		}

		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ctx := context.Background()
		if _, err := adm.DeleteTopic(ctx, "in"); err != nil {
			t.Fatal(err)
		}
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, "in"); err != nil {
			t.Fatal(err)
		}
		testkit.Produce(t, addrs, &kgo.Record{Topic: "in", Value: []byte("after")})
		ok := waitUntil(has("after")) || waitUntil(has("after")) // StaleTopicWait and a rejoin: up to a minute
		stop()
		if !ok {
			t.Errorf("the record written to the recreated topic was not handed over (reconnects: %d)", reconnects.Load())
		}
		if reconnects.Load() == 0 {
			t.Errorf("OnReconnect was never called")
		}
	})
}

// Connect is retried until it succeeds, before the first poll; a Run stopped by Close while
// Connect keeps failing returns ErrClosed.
func TestConnectIsRetried(t *testing.T) {
	_, addrs := setup(t, 2)
	var calls atomic.Int64
	e := newEngine(t, consume.Config{Brokers: addrs, Group: "k", Topics: []string{"in"},
		Connect: func(ctx context.Context, cl *kgo.Client) error {
			if calls.Add(1) < 3 {
				return errors.New("output not ready")
			}
			return nil
		}})
	n, stop := counting(t, e)
	if !waitUntil(func() bool { return n.Load() == records }) {
		t.Errorf("handled %d records after Connect succeeded, want %d", n.Load(), records)
	}
	stop()
	if c := calls.Load(); c != 3 {
		t.Errorf("Connect called %d times, want 3 (two failures, then success)", c)
	}

	never := newEngine(t, consume.Config{Brokers: addrs, Group: "k2", Topics: []string{"in"},
		Connect: func(context.Context, *kgo.Client) error { return errors.New("never ready") }})
	done := make(chan error, 1)
	go func() {
		done <- never.Run(context.Background(), func(context.Context, *consume.Batch) (bool, error) { return true, nil })
	}()
	time.Sleep(100 * time.Millisecond)
	if err := never.Close(context.Background()); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := <-done; !errors.Is(err, consume.ErrClosed) {
		t.Errorf("Run() = %v, want ErrClosed", err)
	}
}

// In transactional mode only End commits: a handler that reports a commit without ending its
// transaction stops Run with a fatal error instead of wedging the session (the next Begin would
// fail) or handing the batch over forever.
func TestCommitWithoutEndIsFatal(t *testing.T) {
	_, addrs := setup(t, 2)
	e := newEngine(t, consume.Config{Brokers: addrs, Group: "w", Topics: []string{"in"}, TransactionalID: "tw"})
	defer e.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(context.Background(), func(ctx context.Context, b *consume.Batch) (bool, error) {
			return true, nil // no transaction: nothing would commit the offsets
		})
	}()
	select {
	case err := <-done:
		if !consume.IsFatal(err) {
			t.Errorf("Run() = %v, want a fatal error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// A group offset beyond a partition's end (a commit that outlived its topic, or a truncated log)
// makes the client reset the partition and report data loss: the engine logs it at ERROR with
// the offsets, every time, instead of counting it among throttled fetch errors.
func TestDataLossLogged(t *testing.T) {
	c, addrs := setup(t, 1) // 40 records on in/0
	cl := testkit.Client(t, c)
	offs := make(kadm.Offsets)
	offs.Add(kadm.Offset{Topic: "in", Partition: 0, At: 500, LeaderEpoch: 0})
	if _, err := kadm.NewClient(cl).CommitOffsets(context.Background(), "dl", offs); err != nil {
		t.Fatal(err)
	}
	var log testkit.Buffer
	e := newEngine(t, consume.Config{Brokers: addrs, Group: "dl", Topics: []string{"in"},
		Logger: slog.New(slog.NewJSONHandler(&log, nil))})
	start(t, e, func(ctx context.Context, b *consume.Batch) (bool, error) {
		return true, e.CommitRecords(ctx, b.Records...)
	})
	if !waitUntil(func() bool { return strings.Contains(log.String(), "reported as data loss") }) {
		t.Fatalf("no data-loss line logged; log:\n%s", log.String())
	}
	line := log.String()
	for _, want := range []string{`"level":"ERROR"`, `"topic":"in"`, `"partition":0`, `"consumed_to":500`} {
		if !strings.Contains(line, want) {
			t.Errorf("data-loss log lacks %s:\n%s", want, line)
		}
	}
	if strings.Contains(line, `"msg":"fetch error"`) {
		t.Errorf("data loss was also logged as a fetch error:\n%s", line)
	}
}
