package reveal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/reveal"
)

// auditorOn starts kfake with the audit topic and a KafkaAuditor on it, both closed when t ends.
func auditorOn(t *testing.T) (*kfake.Cluster, *reveal.KafkaAuditor) {
	t.Helper()
	c := testkit.Kafka(t, kfake.SeedTopics(1, broker.AuditTopic))
	aud, err := reveal.DialKafkaAuditor(c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aud.Close(context.Background()) })
	return c, aud
}

// TestKafkaAuditorGroupCommit: concurrent Audit calls share produces, and each returns only after
// its own records are on the audit topic, every record exactly once.
func TestKafkaAuditorGroupCommit(t *testing.T) {
	c, aud := auditorOn(t)
	const callers, perCall = 64, 3
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			recs := make([]reveal.AuditRecord, perCall)
			for j := range recs {
				recs[j] = reveal.AuditRecord{RequestID: fmt.Sprintf("r%d-%d", i, j), Principal: "p", Status: "ok"}
			}
			errs <- aud.Audit(context.Background(), recs)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Audit() = %v, want nil", err)
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(broker.AuditTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < callers*perCall; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d audit records, want %d", n, callers*perCall)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var a reveal.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Fatalf("audit record does not decode: %v", err)
			}
			seen[a.RequestID]++
			n++
		})
	}
	if len(seen) != callers*perCall {
		t.Errorf("distinct audit records = %d, want %d", len(seen), callers*perCall)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("audit record %s written %d times, want once", id, k)
		}
	}
}

// TestKafkaAuditorFailsEveryWaiter: while the broker refuses the audit records, every concurrent
// caller gets an error by its deadline (none is told its record was written).
func TestKafkaAuditorFailsEveryWaiter(t *testing.T) {
	c, aud := auditorOn(t)
	audit := func(id string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return aud.Audit(ctx, []reveal.AuditRecord{{RequestID: id, Status: "ok"}})
	}
	if err := audit("warm", 10*time.Second); err != nil {
		t.Fatalf("Audit() with the broker up = %v, want nil", err)
	}
	var refuse atomic.Bool
	refuse.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	const callers = 16
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() { errs <- audit(fmt.Sprint(i), 500*time.Millisecond) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatalf("Audit() with the broker refusing = nil, want an error")
		}
	}
}
