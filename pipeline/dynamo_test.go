package pipeline_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/store/dynamostore"
)

// TestValueTooLargeForStoreDoesNotStall: a DynamoDB item is at most 400 KB, so an entry within the
// decoder's 1 MiB whose sensitive text is ~500 KiB made every Put of its batch fail the same way,
// which the processor retried as a store outage, forever, on every partition. Bounded by the
// store's MaxValueBytes, the entry is dead-lettered too_large (without its bytes, which would not
// fit either) and everything behind it flows. Real kfake and a real dynalite.
func TestValueTooLargeForStoreDoesNotStall(t *testing.T) {
	h := newHarness(t)
	st, err := dynamostore.Open(context.Background(), dynamostore.Options{
		Table:       "veil-pipeline-test",
		Conn:        dynatable.Conn{Region: "us-east-1", Endpoint: testsvc.Dynalite(t), AccessKeyID: "AKIDVEILTEST", SecretAccessKey: "veil-test-secret"},
		CreateTable: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	tr := *h.tr
	tr.Store, tr.MaxItemBytes = st, dynamostore.MaxValueBytes

	adm := kadm.NewClient(mustClient(t, kgo.SeedBrokers(h.addrs...)))
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("2097152")}}, broker.RawTopic("event")); err != nil {
		t.Fatal(err)
	}
	big := sayOn("big", "SECRET-BIG"+strings.Repeat("b", 500<<10))
	h.produceManual([]kgo.Opt{kgo.ProducerBatchMaxBytes(2 << 20)},
		&kgo.Record{Topic: broker.RawTopic("event"), Partition: 1, Key: []byte("t"), Value: big})
	good := goodOnEveryPartition("g", 2)
	h.produceManual(nil, good...)

	stop := h.run(pipeline.Config{Transformer: &tr, Store: st})
	defer stop()
	outs := h.consume(2*len(good), 60*time.Second, goodTopics...)
	if len(outs) != 2*len(good) {
		t.Fatalf("good entries out = %d views, want %d: the oversized value stalls the pipeline", len(outs), 2*len(good))
	}
	dlRecs := h.consume(1, 10*time.Second, broker.DeadLetterTopic)
	for _, r := range append(dlRecs, outs...) {
		if bytes.Contains(r.Value, []byte("SECRET-BIG")) {
			t.Fatalf("the big text reached %s", r.Topic)
		}
	}
	dl := parseDeadLetters(t, dlRecs)
	if len(dl) != 1 || dl[0].Reason != schemas.ReasonTooLarge || !dl[0].PayloadOmitted || dl[0].Size != len(big) {
		t.Fatalf("dead letters = %+v; want one too_large, payload omitted, size %d", dl, len(big))
	}
}
