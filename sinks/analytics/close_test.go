package analytics_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/analytics"
)

// Close on a running sink stops it as cancelling Run's context does: the rows it buffered (the
// flush interval is an hour away) are written and their offsets committed before Close returns,
// Run returns ErrClosed, and Close is idempotent. (Before, Close closed the client under Run: no
// final flush, the rows waited for the next run.)
func TestCloseFlushesRunningSink(t *testing.T) {
	c := newCluster(t)
	w := newLocal(t)
	want := make(map[string]*schemas.Entry)
	var recs []*kgo.Record
	perPartition := map[int32]int64{}
	for i := range 9 {
		p := int32(i % 3)
		r, e := entry(t, fmt.Sprintf("e-%03d", i), "app-1", "event", hour0.Add(time.Duration(i)*time.Minute), i%2 == 0, p)
		recs = append(recs, r)
		want[e.ID] = e
		perPartition[p]++
	}
	c.produce(recs...)
	s, err := analytics.New(analytics.Config{Brokers: c.addrs, Writer: w, FlushInterval: time.Hour,
		Ledgers: []string{"event"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := testkit.Start(s)
	waitFor(t, "the records to be read", func() bool { return s.Stats().Records == uint64(len(recs)) })
	testkit.CheckClose(t, s, done, analytics.ErrClosed) // Close is idempotent: CheckClose closes twice
	checkRows(t, readTree(t, w.Root()), want)
	for p, n := range perPartition {
		if got := c.committed(analytics.DefaultGroup, broker.RedactedTopic("event"), p); got != n {
			t.Errorf("committed offset of partition %d = %d, want %d", p, got, n)
		}
	}
}
