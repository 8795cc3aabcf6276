// Package storetest is the conformance suite every store.Store backend runs: the same cases, the
// same expectations, so the pipeline can treat Badger, Redis and any later backend alike.
//
// The suite owns the clock it hands to the store, so expiry enforced on read is tested by moving
// the clock past an item's expiry while the backend's native TTL (on the real clock) is still far
// away. One case runs on real time to check that the native TTL also removes items.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/testclock"
	"github.com/veil-project/veil/sinks/store"
)

// Opener opens a store reading time from clock. It is called once per case; the store may share
// its backend with earlier cases (every case uses its own app ids) and the suite closes it.
type Opener func(t *testing.T, clock func() time.Time) store.Store

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open func(t *testing.T, clock func() time.Time) store.Store) {
	s := &suite{open: open, run: randHex(4)}
	cases := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"RoundTrip", s.roundTrip},
		{"ExpiryEnforcedOnRead", s.expiryOnRead},
		{"PutKeepsFirst", s.putKeepsFirst},
		{"PutKeepsFirstInOneCall", s.putKeepsFirstInOneCall},
		{"PutKeepsDeadRecord", s.putKeepsDeadRecord},
		{"OneWriterPerRef", s.oneWriterPerRef},
		{"AppsAreDistinct", s.appsDistinct},
		{"PutSkipsExpired", s.putSkipsExpired},
		{"GetMissing", s.getMissing},
		{"Delete", s.delete},
		{"DeleteApp", s.deleteApp},
		{"LargeBatch", s.largeBatch},
		{"Concurrent", s.concurrent},
		{"InvalidApp", s.invalidApp},
		{"CancelledContext", s.cancelledContext},
		{"Close", s.close},
		{"NativeTTL", s.nativeTTL},
	}
	for _, c := range cases {
		t.Run(c.name, c.fn)
	}
}

type suite struct {
	open Opener
	run  string // distinguishes app ids of this run from any earlier run on a shared backend
}

// start opens a store on a fresh clock reading the current second and closes it when t ends.
func (s *suite) start(t *testing.T) (store.Store, *testclock.Clock) {
	t.Helper()
	clock := testclock.New(time.Now().Truncate(time.Second))
	st := s.open(t, clock.Now)
	t.Cleanup(func() {
		if err := st.Close(context.Background()); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	})
	return st, clock
}

// app returns an app id unique to this run and case.
func (s *suite) app(t *testing.T, name string) string {
	return fmt.Sprintf("%s-%s-%s", name, s.run, randHex(4))
}

func (s *suite) roundTrip(t *testing.T) {
	st, clock := s.start(t)
	ctx := t.Context()
	app := s.app(t, "rt")
	sizes := []int{1, 300, 64 << 10}
	items := make([]store.Item, len(sizes))
	for i, n := range sizes {
		items[i] = newItem(app, clock.Now().Add(time.Hour+time.Duration(i)*time.Second), n)
	}
	put(t, st, items...)
	for _, want := range items {
		mustGet(t, st, want)
	}
	// Values are returned as copies: changing one must not change what the store holds.
	got, err := st.Get(ctx, app, items[1].Ref)
	if err != nil {
		t.Fatalf("Get() = %v, want nil", err)
	}
	clear(got.Value)
	mustGet(t, st, items[1])
}

func (s *suite) expiryOnRead(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "exp")
	it := newItem(app, clock.Now().Add(10*time.Minute), 300)
	put(t, st, it)

	clock.Set(it.Expiry.Add(-time.Second))
	mustGet(t, st, it)
	clock.Set(it.Expiry.Add(-time.Millisecond))
	mustGet(t, st, it)
	// The native TTL is minutes away on the real clock: only the check on read can hide it now.
	clock.Set(it.Expiry)
	mustMiss(t, st, app, it.Ref)
	clock.Advance(time.Hour)
	mustMiss(t, st, app, it.Ref)
}

// putKeepsFirst: a ref is sealed once. A second record for a ref is not written and is reported;
// the items beside it in the same call are written; the same write again is not a conflict.
func (s *suite) putKeepsFirst(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "first")
	first := newItem(app, clock.Now().Add(time.Hour), 300)
	second := newItem(app, clock.Now().Add(2*time.Hour), 200)
	second.Ref = first.Ref
	put(t, st, first)
	put(t, st, first) // replaying the same write changes nothing and is no conflict
	mustGet(t, st, first)
	before, after := newItem(app, clock.Now().Add(time.Hour), 50), newItem(app, clock.Now().Add(time.Hour), 50)
	mustExist(t, st, []store.Item{before, second, after}, 1)
	mustGet(t, st, first)
	mustGet(t, st, before)
	mustGet(t, st, after)
	// The second record's later expiry did not replace the first's either.
	clock.Set(first.Expiry)
	mustMiss(t, st, app, first.Ref)
	// The same ref under another app is another record.
	other := first
	other.App = s.app(t, "first-other")
	put(t, st, other)
}

// putKeepsFirstInOneCall: of two items with one ref in one call, the first is written.
func (s *suite) putKeepsFirstInOneCall(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "first1")
	a := newItem(app, clock.Now().Add(time.Hour), 100)
	b := newItem(app, clock.Now().Add(time.Hour), 100)
	b.Ref = a.Ref
	mustExist(t, st, []store.Item{a, a, b}, 2)
	mustGet(t, st, a)
}

// putKeepsDeadRecord: a record past its expiry that the backend still holds (its native TTL, on
// the real clock, is far away) keeps its ref: a later Put neither revives nor replaces it.
func (s *suite) putKeepsDeadRecord(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "dead")
	it := newItem(app, clock.Now().Add(10*time.Minute), 100)
	put(t, st, it)
	clock.Advance(20 * time.Minute)
	again := newItem(app, clock.Now().Add(time.Hour), 100)
	again.Ref = it.Ref
	mustExist(t, st, []store.Item{again}, 0)
	mustMiss(t, st, app, it.Ref)
}

// oneWriterPerRef races writers for the same refs: for every ref exactly one writer's Put
// succeeds for it, every other writer is told ErrExists for it, and Get returns the winner's
// value.
func (s *suite) oneWriterPerRef(t *testing.T) {
	st, clock := s.start(t)
	ctx := t.Context()
	app := s.app(t, "race")
	const writers, refs = 6, 60
	base := make([]store.Item, refs)
	for i := range base {
		base[i] = newItem(app, clock.Now().Add(time.Hour), 64)
	}
	mine := make([][]store.Item, writers)
	lost := make([][]int, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		mine[w] = make([]store.Item, refs)
		for i := range base {
			it := newItem(app, base[i].Expiry, 64)
			it.Ref = base[i].Ref
			mine[w][i] = it
		}
		wg.Go(func() {
			<-start
			// Several calls of a few items each, so the writers interleave within a batch.
			for from := 0; from < refs; from += 7 {
				to := min(from+7, refs)
				err := st.Put(ctx, mine[w][from:to])
				if idx, ok := store.Existing(err); ok {
					for _, i := range idx {
						lost[w] = append(lost[w], from+i)
					}
				} else if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: Put() = %v, want nil or ErrExists", w, err)
		}
	}
	for i := range base {
		var winners []int
		for w := range writers {
			if !slices.Contains(lost[w], i) {
				winners = append(winners, w)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("ref %d: writers %v were not told ErrExists, want exactly one", i, winners)
		}
		mustGet(t, st, mine[winners[0]][i])
	}
}

func (s *suite) appsDistinct(t *testing.T) {
	st, clock := s.start(t)
	a, b := newItem(s.app(t, "a"), clock.Now().Add(time.Hour), 300), newItem(s.app(t, "b"), clock.Now().Add(time.Hour), 300)
	b.Ref = a.Ref
	put(t, st, a, b)
	mustGet(t, st, a)
	mustGet(t, st, b)
	if err := st.Delete(t.Context(), a.App, a.Ref); err != nil {
		t.Fatalf("Delete() = %v, want nil", err)
	}
	mustMiss(t, st, a.App, a.Ref)
	mustGet(t, st, b)
	if n, err := st.DeleteApp(t.Context(), a.App); err != nil || n != 0 {
		t.Fatalf("DeleteApp(a) = %d, %v, want 0, nil", n, err)
	}
	mustGet(t, st, b)
}

func (s *suite) putSkipsExpired(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "skip")
	wall := clock.Now()
	// Run the store's clock an hour ahead of real time: the items below are dead to the store,
	// yet their native TTL, on the real clock, is still in the future.
	clock.Set(wall.Add(time.Hour))
	dead := newItem(app, wall.Add(30*time.Minute), 300)
	atNow := newItem(app, clock.Now(), 300)
	live := newItem(app, clock.Now().Add(time.Hour), 300)
	put(t, st, dead, atNow, live)
	mustGet(t, st, live)
	// Wind the clock back: had Put written the dead items, they would read as live now.
	clock.Set(wall)
	mustMiss(t, st, app, dead.Ref)
	mustMiss(t, st, app, atNow.Ref)
	mustGet(t, st, live)
	// An expired overwrite is skipped too: it leaves the live item in place.
	clock.Set(wall.Add(time.Hour))
	stale := live
	stale.Expiry, stale.Value = wall.Add(time.Minute), []byte("stale")
	put(t, st, stale)
	clock.Set(wall)
	mustGet(t, st, live)
	// A Put of only dead items is not an error.
	clock.Set(wall.Add(time.Hour))
	put(t, st, newItem(app, wall, 10))
	put(t, st)
}

func (s *suite) getMissing(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "miss")
	mustMiss(t, st, app, randRef())
	it := newItem(app, clock.Now().Add(time.Hour), 30)
	put(t, st, it)
	other := it.Ref
	other[15] ^= 1
	mustMiss(t, st, app, other)
}

func (s *suite) delete(t *testing.T) {
	st, clock := s.start(t)
	ctx := t.Context()
	app := s.app(t, "del")
	keep, gone := newItem(app, clock.Now().Add(time.Hour), 300), newItem(app, clock.Now().Add(time.Hour), 300)
	put(t, st, keep, gone)
	if err := st.Delete(ctx, app, gone.Ref); err != nil {
		t.Fatalf("Delete() = %v, want nil", err)
	}
	mustMiss(t, st, app, gone.Ref)
	mustGet(t, st, keep)
	if err := st.Delete(ctx, app, gone.Ref); err != nil {
		t.Fatalf("Delete(deleted) = %v, want nil", err)
	}
	if err := st.Delete(ctx, s.app(t, "never"), randRef()); err != nil {
		t.Fatalf("Delete(never written) = %v, want nil", err)
	}
	// A deleted ref can be written again.
	put(t, st, gone)
	mustGet(t, st, gone)
}

func (s *suite) deleteApp(t *testing.T) {
	st, clock := s.start(t)
	ctx := t.Context()
	doomed, other := s.app(t, "doomed"), s.app(t, "other")
	// A prefix of the doomed app id must not be taken for it, nor it for a prefix.
	longer := doomed + "x"
	const n = 700
	var dItems, oItems []store.Item
	for range n {
		dItems = append(dItems, newItem(doomed, clock.Now().Add(time.Hour), 64))
	}
	for range 40 {
		oItems = append(oItems, newItem(other, clock.Now().Add(time.Hour), 64))
		oItems = append(oItems, newItem(longer, clock.Now().Add(time.Hour), 64))
	}
	put(t, st, dItems...)
	put(t, st, oItems...)

	got, err := st.DeleteApp(ctx, doomed)
	if err != nil || got != n {
		t.Fatalf("DeleteApp(%s) = %d, %v, want %d, nil", doomed, got, err, n)
	}
	for _, it := range dItems {
		mustMiss(t, st, doomed, it.Ref)
	}
	for _, it := range oItems {
		mustGet(t, st, it)
	}
	if got, err := st.DeleteApp(ctx, doomed); err != nil || got != 0 {
		t.Fatalf("DeleteApp(%s) again = %d, %v, want 0, nil", doomed, got, err)
	}
	if got, err := st.DeleteApp(ctx, s.app(t, "never")); err != nil || got != 0 {
		t.Fatalf("DeleteApp(never written) = %d, %v, want 0, nil", got, err)
	}
	if got, err := st.DeleteApp(ctx, longer); err != nil || got != 40 {
		t.Fatalf("DeleteApp(%s) = %d, %v, want 40, nil", longer, got, err)
	}
	for _, it := range oItems {
		if it.App == other {
			mustGet(t, st, it)
		}
	}
}

func (s *suite) largeBatch(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "big")
	items := make([]store.Item, 1000)
	for i := range items {
		items[i] = newItem(app, clock.Now().Add(time.Hour), 300)
	}
	put(t, st, items...)
	for _, it := range items {
		mustGet(t, st, it)
	}
	if got, err := st.DeleteApp(t.Context(), app); err != nil || got != len(items) {
		t.Fatalf("DeleteApp() = %d, %v, want %d, nil", got, err, len(items))
	}
}

func (s *suite) concurrent(t *testing.T) {
	st, clock := s.start(t)
	ctx := t.Context()
	apps := []string{s.app(t, "c1"), s.app(t, "c2")}
	const workers, batches, perBatch = 8, 5, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			app := apps[w%len(apps)]
			for range batches {
				items := make([]store.Item, perBatch)
				for i := range items {
					items[i] = newItem(app, clock.Now().Add(time.Hour), 100)
				}
				if err := st.Put(ctx, items); err != nil {
					errs <- fmt.Errorf("Put() = %w", err)
					return
				}
				for _, want := range items {
					got, err := st.Get(ctx, want.App, want.Ref)
					if err != nil {
						errs <- fmt.Errorf("Get() = %w", err)
						return
					}
					if !bytes.Equal(got.Value, want.Value) {
						errs <- errors.New("Get() returned another item's value")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for _, app := range apps {
		n, err := st.DeleteApp(ctx, app)
		if err != nil {
			t.Fatalf("DeleteApp() = %v, want nil", err)
		}
		total += n
	}
	if want := workers * batches * perBatch; total != want {
		t.Fatalf("DeleteApp() over both apps = %d, want %d", total, want)
	}
}

func (s *suite) invalidApp(t *testing.T) {
	st, clock := s.start(t)
	ctx := t.Context()
	for _, app := range []string{"", "a{b}", "a*", "a\x00b", "a/b"} {
		it := newItem(app, clock.Now().Add(time.Hour), 10)
		if err := st.Put(ctx, []store.Item{it}); !errors.Is(err, store.ErrInvalidApp) {
			t.Errorf("Put(app %q) = %v, want ErrInvalidApp", app, err)
		}
		if _, err := st.Get(ctx, app, it.Ref); !errors.Is(err, store.ErrInvalidApp) {
			t.Errorf("Get(app %q) = %v, want ErrInvalidApp", app, err)
		}
		if err := st.Delete(ctx, app, it.Ref); !errors.Is(err, store.ErrInvalidApp) {
			t.Errorf("Delete(app %q) = %v, want ErrInvalidApp", app, err)
		}
		if _, err := st.DeleteApp(ctx, app); !errors.Is(err, store.ErrInvalidApp) {
			t.Errorf("DeleteApp(app %q) = %v, want ErrInvalidApp", app, err)
		}
	}
	// One bad item fails the whole Put before anything is written.
	good := newItem(s.app(t, "good"), clock.Now().Add(time.Hour), 10)
	bad := newItem("a}", clock.Now().Add(time.Hour), 10)
	if err := st.Put(ctx, []store.Item{good, bad}); !errors.Is(err, store.ErrInvalidApp) {
		t.Fatalf("Put(good, bad) = %v, want ErrInvalidApp", err)
	}
	mustMiss(t, st, good.App, good.Ref)
}

func (s *suite) cancelledContext(t *testing.T) {
	st, clock := s.start(t)
	app := s.app(t, "ctx")
	it := newItem(app, clock.Now().Add(time.Hour), 10)
	put(t, st, it)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := st.Put(ctx, []store.Item{newItem(app, clock.Now().Add(time.Hour), 10)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Put(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := st.Get(ctx, app, it.Ref); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(cancelled) = %v, want context.Canceled", err)
	}
	if err := st.Delete(ctx, app, it.Ref); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := st.DeleteApp(ctx, app); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteApp(cancelled) = %v, want context.Canceled", err)
	}
	// Nothing was removed by the cancelled calls.
	mustGet(t, st, it)
}

func (s *suite) close(t *testing.T) {
	clock := testclock.New(time.Now())
	st := s.open(t, clock.Now)
	ctx := t.Context()
	app := s.app(t, "close")
	put(t, st, newItem(app, clock.Now().Add(time.Hour), 10))
	for i := range 3 {
		if err := st.Close(ctx); err != nil {
			t.Fatalf("Close() #%d = %v, want nil", i+1, err)
		}
	}
	it := newItem(app, clock.Now().Add(time.Hour), 10)
	if err := st.Put(ctx, []store.Item{it}); err == nil {
		t.Errorf("Put() after Close = nil, want an error")
	}
	if _, err := st.Get(ctx, app, it.Ref); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get() after Close = %v, want an error other than ErrNotFound", err)
	}
	if err := st.Delete(ctx, app, it.Ref); err == nil {
		t.Errorf("Delete() after Close = nil, want an error")
	}
	if _, err := st.DeleteApp(ctx, app); err == nil {
		t.Errorf("DeleteApp() after Close = nil, want an error")
	}
}

// nativeTTL checks on real time that the backend removes an item by itself. The store's clock is
// frozen before the expiry, so the check on read cannot be what hides the item. The expiry is a
// whole second one to two seconds ahead, which a store with second-grained TTL can honour.
func (s *suite) nativeTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a real expiry")
	}
	st, clock := s.start(t)
	app := s.app(t, "ttl")
	clock.Set(time.Now())
	it := newItem(app, time.Now().Truncate(time.Second).Add(2*time.Second), 100)
	put(t, st, it)
	mustGet(t, st, it)
	clock.Set(it.Expiry.Add(-time.Second)) // frozen: the item stays live for the read check
	deadline := it.Expiry.Add(3 * time.Second)
	for {
		_, err := st.Get(t.Context(), app, it.Ref)
		if errors.Is(err, store.ErrNotFound) {
			if now := time.Now(); now.Before(it.Expiry) {
				t.Fatalf("item gone at %v, before its expiry %v", now, it.Expiry)
			}
			return
		}
		if err != nil {
			t.Fatalf("Get() = %v, want the item or ErrNotFound", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get() still finds the item 3s after its native expiry %v", it.Expiry)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Bench measures Put throughput: batches of 256 items of 300 bytes, about the size of one sealed
// field, and reports items/s.
func Bench(b *testing.B, s store.Store) {
	const batch, size = 256, 300
	ctx := b.Context()
	app := "bench-" + randHex(4)
	items := make([]store.Item, batch)
	for i := range items {
		items[i] = newItem(app, time.Now().Add(time.Hour), size)
	}
	var seq uint64
	b.SetBytes(batch * size)
	b.ReportAllocs()
	for b.Loop() {
		for i := range items {
			seq++
			binary.BigEndian.PutUint64(items[i].Ref[8:], seq)
		}
		if err := s.Put(ctx, items); err != nil {
			b.Fatalf("Put() = %v", err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "items/s")
}

func newItem(app string, expiry time.Time, size int) store.Item {
	v := make([]byte, size)
	rand.Read(v)
	return store.Item{App: app, Ref: randRef(), Expiry: expiry, Value: v}
}

func randRef() (r [16]byte) {
	rand.Read(r[:])
	return r
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func put(t *testing.T, st store.Store, items ...store.Item) {
	t.Helper()
	if err := st.Put(t.Context(), items); err != nil {
		t.Fatalf("Put(%d items) = %v, want nil", len(items), err)
	}
}

// mustExist puts items and wants an *ExistsError naming exactly the indexes want.
func mustExist(t *testing.T, st store.Store, items []store.Item, want ...int) {
	t.Helper()
	err := st.Put(t.Context(), items)
	got, ok := store.Existing(err)
	if !ok || !errors.Is(err, store.ErrExists) || !slices.Equal(got, want) {
		t.Fatalf("Put(%d items) = %v, want an ExistsError naming %v", len(items), err, want)
	}
}

func mustGet(t *testing.T, st store.Store, want store.Item) {
	t.Helper()
	got, err := st.Get(t.Context(), want.App, want.Ref)
	if err != nil {
		t.Fatalf("Get(%s, %x) = %v, want the item", want.App, want.Ref, err)
	}
	if got.App != want.App || got.Ref != want.Ref {
		t.Fatalf("Get(%s, %x) = item (%s, %x), want the same app and ref", want.App, want.Ref, got.App, got.Ref)
	}
	if got.Expiry.Unix() != want.Expiry.Unix() {
		t.Fatalf("Get(%s, %x).Expiry = %v, want %v to the second", want.App, want.Ref, got.Expiry, want.Expiry)
	}
	if !bytes.Equal(got.Value, want.Value) {
		t.Fatalf("Get(%s, %x).Value = %d bytes, want the %d bytes written", want.App, want.Ref, len(got.Value), len(want.Value))
	}
}

func mustMiss(t *testing.T, st store.Store, app string, ref [16]byte) {
	t.Helper()
	if got, err := st.Get(t.Context(), app, ref); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%s, %x) = (expiry %v), %v, want ErrNotFound", app, ref, got.Expiry, err)
	}
}
