package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/periodic"
	"github.com/veil-project/veil/ops"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/sinks/analytics"
)

// observer turns what the processor reports into Prometheus metrics and readiness.
type observer struct {
	m     *ops.Metrics
	ready *ops.Readiness
	last  keyring.Stats // cache statistics already counted
	dep   *deploymentGauges
}

func newObserver() *observer {
	o := &observer{m: ops.NewMetrics(), ready: ops.NewReadiness("broker", "keys", "store")}
	o.dep = newDeploymentGauges(o.m.Registry)
	return o
}

func (o *observer) Batch(outs []pipeline.Output, committed bool) {
	if !committed {
		o.m.TxnAborts.Inc()
		return
	}
	o.m.TxnCommits.Inc()
	for i := range outs {
		out := &outs[i]
		ledger := out.Ledger
		if ledger == "" {
			ledger = "unknown"
		}
		o.m.EntriesIn.WithLabelValues(ledger).Inc()
		if out.DeadLetter != nil {
			o.m.DeadLettered.WithLabelValues(string(out.Reason)).Inc()
			continue
		}
		o.m.EntriesOut.WithLabelValues(ledger, "encrypted").Inc()
		o.m.EntriesOut.WithLabelValues(ledger, "redacted").Inc()
		if out.Sensitive {
			o.m.Sensitive.WithLabelValues(ledger).Inc()
		}
		if out.Item != nil {
			o.m.StoreWrites.Inc()
			o.m.SealSeconds.Observe(out.SealTime.Seconds())
		}
	}
}

func (o *observer) Dependency(name string, ok bool) {
	reason := ""
	if !ok {
		reason = name + " unavailable; retrying with backoff"
		if name == "store" {
			o.m.StoreErrors.WithLabelValues("put").Inc()
		}
	}
	o.ready.Set(name, ok, reason)
}

func (o *observer) analyticsFlush(f analytics.FlushStats) {
	if f.Err != nil {
		o.m.SinkErrors.WithLabelValues("analytics").Inc()
		o.ready.Set("analytics", false, "analytics writes failing; retrying with backoff")
		return
	}
	o.ready.Set("analytics", true, "")
	o.m.SinkWrites.WithLabelValues("analytics").Add(float64(f.Files))
	o.m.SinkBytes.WithLabelValues("analytics").Add(float64(f.Bytes))
	o.m.SinkFlushSeconds.WithLabelValues("analytics").Observe(f.Latency.Seconds())
}

func (o *observer) kmsCall(op string) { o.m.KMSCalls.WithLabelValues(op).Inc() }

func (o *observer) server(addr string) *http.Server { return ops.NewServer(addr, o.m, o.ready) }

// watch refreshes consumer lag and key-cache counters every interval until ctx ends, and sets the
// broker's readiness from whether the lag request succeeded.
func (o *observer) watch(ctx context.Context, adm *kadm.Client, group string, keys *keyring.Keyring, every time.Duration) {
	periodic.NowAndEvery(ctx, every, func(ctx context.Context) {
		st := keys.Stats()
		o.m.KeyCacheHits.Add(float64(st.CacheHits - o.last.CacheHits))
		o.m.KeyCacheMisses.Add(float64(st.CacheMisses - o.last.CacheMisses))
		o.last = st
		lctx, cancel := context.WithTimeout(ctx, every)
		lags, err := adm.Lag(lctx, group)
		cancel()
		// With no records flowing the processor has nothing to fail on, so this is what notices
		// a broker that went away (and came back).
		if ctx.Err() == nil {
			o.Dependency("broker", err == nil)
		}
		if err == nil {
			for _, g := range lags {
				for topic, parts := range g.Lag {
					if !broker.IsRaw(topic) {
						continue
					}
					for p, l := range parts {
						o.m.SetLag(topic, p, l.Lag)
					}
				}
			}
		}
	})
}

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
