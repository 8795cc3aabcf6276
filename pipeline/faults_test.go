package pipeline_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/crypto/kmsaws"
	"github.com/veil-project/veil/internal/kmsfake"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/sinks/store"
)

// recorder is an Observer that remembers dependency states and committed batches.
type recorder struct {
	mu        sync.Mutex
	deps      map[string][]bool
	committed int
	aborted   int
}

func (r *recorder) Batch(outs []pipeline.Output, committed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if committed {
		r.committed += len(outs)
	} else {
		r.aborted++
	}
}

func (r *recorder) Dependency(name string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deps == nil {
		r.deps = map[string][]bool{}
	}
	r.deps[name] = append(r.deps[name], ok)
}

func (r *recorder) sawDown(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ok := range r.deps[name] {
		if !ok {
			return true
		}
	}
	return false
}

func (r *recorder) last(name string) (ok, seen bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.deps[name]
	if len(s) == 0 {
		return false, false
	}
	return s[len(s)-1], true
}

// TestKMSDownHoldsAndResumes: with the KMS unreachable nothing is produced and nothing committed,
// readiness reports the keys down, and the pipeline resumes by itself when the KMS returns.
func TestKMSDownHoldsAndResumes(t *testing.T) {
	fake := kmsfake.New(kmsfake.Config{KeyIDs: []string{"k1"}})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	client, err := kmsaws.New(context.Background(), kmsaws.Config{Region: "eu-west-1", Endpoint: srv.URL, KeyID: "k1",
		AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, client, "k1")
	fake.SetDown(true)
	const n = 120
	recs, canaries := testkit.SampleRecords(21, n)
	h.produce(recs...)
	rec := &recorder{}
	stop := h.run(pipeline.Config{Observer: rec})
	defer stop()

	testkit.WaitFor(t, 20*time.Second, "keys reported down", func() bool { return rec.sawDown("keys") })
	time.Sleep(500 * time.Millisecond)
	if got := h.consume(0, 300*time.Millisecond, outputTopics()...); len(got) != 0 {
		t.Fatalf("%d records produced while the KMS was down", len(got))
	}
	if rec.committed != 0 {
		t.Fatalf("committed %d entries while the KMS was down", rec.committed)
	}
	fake.SetDown(false)
	t.Log("the KMS is back")
	assertOnce(t, h.outputs(n, 60*time.Second, canaries))
	if ok, _ := rec.last("keys"); !ok {
		t.Errorf("keys still reported down after recovery")
	}
}

// flakyStore fails every call while down is set; otherwise it is the real store underneath.
type flakyStore struct {
	store.Store
	down  atomic.Bool
	fails atomic.Int64
}

var errStoreDown = errors.New("store unavailable (injected)")

func (f *flakyStore) Put(ctx context.Context, items []store.Item) error {
	if f.down.Load() {
		f.fails.Add(1)
		return errStoreDown
	}
	return f.Store.Put(ctx, items)
}

// TestStoreDownHoldsAndResumes: a failing store write aborts the batch before anything is
// produced; when the store returns every entry comes out exactly once.
func TestStoreDownHoldsAndResumes(t *testing.T) {
	h := newHarness(t)
	fs := &flakyStore{Store: h.store}
	fs.down.Store(true)
	const n = 150
	recs, _ := testkit.SampleRecords(33, n)
	h.produce(recs...)
	rec := &recorder{}
	stop := h.run(pipeline.Config{Observer: rec, Store: fs})
	defer stop()
	testkit.WaitFor(t, 20*time.Second, "two failed store writes", func() bool { return fs.fails.Load() >= 2 })
	if got := h.consume(0, 300*time.Millisecond, outputTopics()...); len(got) != 0 {
		t.Fatalf("%d records produced while the store was down", len(got))
	}
	if ok, seen := rec.last("store"); !seen || ok {
		t.Fatalf("store readiness = %v (seen %v), want down", ok, seen)
	}
	fs.down.Store(false)
	out := h.consume(2*n, 60*time.Second, outputTopics()...)
	if len(out) != 2*n {
		t.Fatalf("after the store returned: %d outputs, want %d", len(out), 2*n)
	}
	assertOnce(t, out)
	if ok, _ := rec.last("store"); !ok {
		t.Errorf("store still reported down after recovery")
	}
}

func assertOnce(t *testing.T, out []*kgo.Record) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range out {
		seen[r.Topic+"|"+string(headerOf(r, pipeline.HeaderSource))]++
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s appears %d times, want once", k, c)
		}
	}
}
