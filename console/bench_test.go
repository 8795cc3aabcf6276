package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/sinks/store"
)

// BenchmarkLogsPage answers filtered Logs pages over 1,000,000 entries of encrypted.event (20
// apps, 2 partitions, record times spread over 24 h, each entry holding a real token whose
// sealed record is in the store), through the HTTP handler with a signed-in session: the cost
// of a page must follow the page, not the topic. Run with
//
//	go test -run '^$' -bench BenchmarkLogsPage -benchtime 20x ./console
//
// -short uses 100,000 entries.
func BenchmarkLogsPage(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	e := newEnv(b)
	ctx := context.Background()
	now := e.clock.Now()
	start := now.Add(-24 * time.Hour).Truncate(time.Second)

	// Real tokens: seal a few entries of app-a and reuse their tokens (tokens are copyable).
	var tokens []string
	for i := range 4 {
		en := say(fmt.Sprintf("seed-%d", i), "app-a", "t-seed", "u-seed", fmt.Sprintf("value %d", i), now.Add(-time.Minute))
		raw, _ := json.Marshal(en)
		out, err := e.tr.Transform(ctx, pipeline.Source{Topic: broker.RawTopic("event"), Offset: int64(i)}, []byte("t-seed"), raw)
		if err != nil || out.Item == nil {
			b.Fatalf("sealing seed: %v", err)
		}
		if err := e.store.Put(ctx, []store.Item{*out.Item}); err != nil {
			b.Fatal(err)
		}
		var enc struct {
			Data struct {
				Text string `json:"text"`
			} `json:"data"`
		}
		json.Unmarshal(out.Encrypted.Value, &enc)
		tokens = append(tokens, enc.Data.Text)
	}

	step := 24 * time.Hour / time.Duration(n)
	types := []string{"meya.text.event.say", "meya.button.event.click", "meya.form.event.submit", "meya.text.event.say"}
	recs := make([]*kgo.Record, 0, 20_000)
	flush := func() {
		if err := e.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	b.Logf("producing %d entries", n)
	t0 := time.Now()
	for i := range n {
		ts := start.Add(time.Duration(i) * step)
		app := fmt.Sprintf("app-%c", 'a'+i%20)
		thread := fmt.Sprintf("t-%d", i%5000)
		v := fmt.Sprintf(`{"id":"e-%d","app_id":%q,"ledger":"event","type":%q,"ts":%q,"thread":{"id":%q,"mode":"agent"},"user":{"id":"u-%d","type":"user"},"sensitive":true,"data":{"text":%q}}`,
			i, app, types[i%len(types)], ts.Format(time.RFC3339Nano), thread, i%1000, tokens[i%len(tokens)])
		recs = append(recs, &kgo.Record{Topic: broker.EncryptedTopic("event"), Key: []byte(thread), Value: []byte(v), Timestamp: ts,
			Headers: []kgo.RecordHeader{{Key: pipeline.HeaderExpiry, Value: []byte(ts.Add(24 * time.Hour).Format(time.RFC3339))}, {Key: pipeline.HeaderSensitive, Value: []byte("true")}}})
		if len(recs) == cap(recs) {
			flush()
		}
	}
	flush()
	b.Logf("produced in %v", time.Since(t0).Round(time.Millisecond))

	root, _ := e.signIn(b, "root")

	mid := start.Add(12 * time.Hour)
	summary := regexp.MustCompile(`id="summary">(\d+) entries · (\d+) records read`)
	for _, tc := range []struct{ name, query string }{
		{"app+type", "app=app-a&type=meya.text.event.say"},
		{"app+user", "app=app-c&user=u-2"},
		{"thread", "thread=t-4242"},
		{"window10m", "app=app-a&from=" + url.QueryEscape(mid.Format(time.RFC3339)) + "&to=" + url.QueryEscape(mid.Add(10*time.Minute).Format(time.RFC3339))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var entries, scanned string
			cpu0 := cpuTime()
			for b.Loop() {
				resp, err := root.Get(e.srv.URL + "/console/logs?" + tc.query)
				if err != nil {
					b.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || err != nil {
					b.Fatalf("GET = %d", resp.StatusCode)
				}
				m := summary.FindStringSubmatch(string(body))
				if m == nil {
					b.Fatal("no summary in page")
				}
				entries, scanned = m[1], m[2]
			}
			// CPU of the whole process (console and the in-process broker) per page: on a shared
			// machine wall time mostly measures the neighbours.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(atoi(entries)), "entries/page")
			b.ReportMetric(float64(atoi(scanned)), "records-read/page")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
