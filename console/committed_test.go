package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline"
)

// TestReadCommitted: the Logs page shows only committed entries — not those of an aborted
// transaction, nor of one still open — as a read_committed consumer would.
func TestReadCommitted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	encrypted := func(id string) *kgo.Record {
		raw, _ := json.Marshal(say(id, "app-a", "t-1", "u-1", "text of "+id, e.clock.Now()))
		out, err := e.tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: e.offset.Add(1)}, []byte("t-1"), raw)
		if err != nil || out.Encrypted == nil {
			t.Fatalf("transforming %s: %v", id, err)
		}
		out.Encrypted.Partition = 0
		return out.Encrypted
	}
	txn, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.ListenAddrs()...), kgo.TransactionalID("console-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	produce := func(id string, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := txn.ProduceSync(ctx, encrypted(id)).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	produce("e-committed", kgo.TryCommit)
	produce("e-aborted", kgo.TryAbort)
	produce("e-after", kgo.TryCommit)
	// One left open: it must stay invisible, and hold back nothing committed before it.
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, encrypted("e-open")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	alice, _ := e.signIn(t, "alice")
	code, body, _ := get(t, alice, e.srv.URL, "/console/logs")
	if code != http.StatusOK {
		t.Fatalf("logs = %d", code)
	}
	for id, want := range map[string]bool{"e-committed": true, "e-after": true, "e-aborted": false, "e-open": false} {
		if got := strings.Contains(body, ">#"+id+"<"); got != want {
			t.Errorf("%s shown = %v, want %v", id, got, want)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if _, body, _ = get(t, alice, e.srv.URL, "/console/logs"); !strings.Contains(body, ">#e-open<") {
		t.Error("e-open not shown once committed")
	}
}

// TestTimeRangeBounds: an entry whose ts is slightly in the future (within FutureSkew) was written
// before its ts, and one processed late (within Slack) after the range's end: both are found.
func TestTimeRangeBounds(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	e.publish(say("e-future", "app-a", "t-1", "u-1", "x", now.Add(3*time.Minute)),
		say("e-late", "app-a", "t-1", "u-1", "x", now.Add(-40*time.Minute)),
		say("e-outside", "app-a", "t-1", "u-1", "x", now.Add(-2*time.Hour)))
	alice, _ := e.signIn(t, "alice")
	for _, tc := range []struct {
		from, to time.Time
		want     string
	}{
		{now.Add(2 * time.Minute), now.Add(4 * time.Minute), "e-future"},
		{now.Add(-45 * time.Minute), now.Add(-35 * time.Minute), "e-late"},
	} {
		q := url.Values{"from": {tc.from.Format(time.RFC3339)}, "to": {tc.to.Format(time.RFC3339)}}
		_, body, _ := get(t, alice, e.srv.URL, "/console/logs?"+q.Encode())
		for _, id := range []string{"e-future", "e-late", "e-outside"} {
			if got := strings.Contains(body, ">#"+id+"<"); got != (id == tc.want) {
				t.Errorf("window %s..%s: %s shown = %v", tc.from.Format(time.TimeOnly), tc.to.Format(time.TimeOnly), id, got)
			}
		}
	}
}
