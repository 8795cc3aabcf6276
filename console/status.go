package console

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/ops"
)

// sample is one reading of veil's counters.
type sample struct {
	at        time.Time
	in, out   map[string]float64 // per ledger (out: the encrypted view)
	dead      map[string]float64 // per reason
	lag       float64            // sum over raw partitions
	sealSum   float64
	sealCount float64
}

// sampler keeps the last samples of veil's metrics for the Status page's charts.
type sampler struct {
	m   *ops.Metrics
	now func() time.Time

	mu   sync.Mutex
	ring []sample
}

// keepSamples is how many samples the charts show (15 minutes at the default 10s).
const keepSamples = 90

func newSampler(m *ops.Metrics, now func() time.Time) *sampler { return &sampler{m: m, now: now} }

func (s *sampler) sample() {
	mfs, err := s.m.Registry.Gather()
	if err != nil {
		return
	}
	sm := sample{at: s.now(), in: map[string]float64{}, out: map[string]float64{}, dead: map[string]float64{}}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "veil_entries_in_total":
				sm.in[label(m, "ledger")] += m.GetCounter().GetValue()
			case "veil_entries_out_total":
				if label(m, "view") == "encrypted" {
					sm.out[label(m, "ledger")] += m.GetCounter().GetValue()
				}
			case "veil_deadlettered_total":
				sm.dead[label(m, "reason")] += m.GetCounter().GetValue()
			case "veil_consumer_lag":
				sm.lag += m.GetGauge().GetValue()
			case "veil_seal_seconds":
				sm.sealSum += m.GetHistogram().GetSampleSum()
				sm.sealCount += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	s.mu.Lock()
	s.ring = append(s.ring, sm)
	if len(s.ring) > keepSamples {
		s.ring = slices.Delete(s.ring, 0, len(s.ring)-keepSamples)
	}
	s.mu.Unlock()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// Chart is one small server-side SVG time series.
type Chart struct {
	Title, Unit string
	Points      string // SVG polyline points in a 240×48 box
	Last, Max   string
}

const chartW, chartH = 240.0, 48.0

func chart(title, unit string, vals []float64) Chart {
	c := Chart{Title: title, Unit: unit}
	if len(vals) == 0 {
		c.Last, c.Max = "–", "–"
		return c
	}
	mx := slices.Max(vals)
	var b strings.Builder
	for i, v := range vals {
		x := chartW
		if len(vals) > 1 {
			x = chartW * float64(i) / float64(len(vals)-1)
		}
		y := chartH - 2
		if mx > 0 {
			y = chartH - 2 - (chartH-4)*v/mx
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	c.Points = strings.TrimSpace(b.String())
	c.Last, c.Max = num(vals[len(vals)-1]), num(mx)
	return c
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// count formats a counter's total.
func count(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// LedgerRate is the throughput of one ledger over the last interval.
type LedgerRate struct {
	Ledger         string
	In, Out        string // per second
	TotalIn, Total string
}

// statusBody is the Status page.
type statusBody struct {
	Charts   []Chart
	Ledgers  []LedgerRate
	Dead     []kv
	Deps     []ops.Condition
	Keys     []keyring.KeyInfo
	KeysErr  string
	Sampled  bool
	Interval string
}

type kv struct {
	K string
	V string
}

// series derives the chart values from consecutive samples.
func (s *sampler) series() (charts []Chart, ledgers []LedgerRate, dead []kv, interval time.Duration) {
	s.mu.Lock()
	ring := slices.Clone(s.ring)
	s.mu.Unlock()
	var in, out, dl, lag, seal []float64
	for i := 1; i < len(ring); i++ {
		a, b := ring[i-1], ring[i]
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 {
			continue
		}
		in = append(in, max(0, sum(b.in)-sum(a.in))/dt)
		out = append(out, max(0, sum(b.out)-sum(a.out))/dt)
		dl = append(dl, max(0, sum(b.dead)-sum(a.dead))/dt)
		lag = append(lag, b.lag)
		ms := 0.0
		if n := b.sealCount - a.sealCount; n > 0 {
			ms = (b.sealSum - a.sealSum) / n * 1e3
		}
		seal = append(seal, ms)
	}
	charts = []Chart{
		chart("Entries in", "/s", in), chart("Entries out (encrypted)", "/s", out),
		chart("Dead letters", "/s", dl), chart("Consumer lag", "records", lag),
		chart("Seal latency (mean)", "ms", seal),
	}
	if n := len(ring); n > 0 {
		last := ring[n-1]
		var prev *sample
		if n > 1 {
			prev = &ring[n-2]
			interval = last.at.Sub(prev.at)
		}
		names := map[string]bool{}
		for l := range last.in {
			names[l] = true
		}
		for l := range last.out {
			names[l] = true
		}
		for l := range names {
			r := LedgerRate{Ledger: l, TotalIn: count(last.in[l]), Total: count(last.out[l]), In: "–", Out: "–"}
			if prev != nil && interval > 0 {
				r.In = num(max(0, last.in[l]-prev.in[l]) / interval.Seconds())
				r.Out = num(max(0, last.out[l]-prev.out[l]) / interval.Seconds())
			}
			ledgers = append(ledgers, r)
		}
		slices.SortFunc(ledgers, func(a, b LedgerRate) int { return strings.Compare(a.Ledger, b.Ledger) })
		for r, v := range last.dead {
			dead = append(dead, kv{r, count(v)})
		}
		slices.SortFunc(dead, func(a, b kv) int { return strings.Compare(a.K, b.K) })
	}
	return charts, ledgers, dead, interval
}

func (c *Console) status(w http.ResponseWriter, r *http.Request, rq *request) {
	var body statusBody
	if c.sampler != nil {
		c.sampler.mu.Lock()
		empty := len(c.sampler.ring) == 0
		c.sampler.mu.Unlock()
		if empty {
			c.sampler.sample()
		}
		body.Charts, body.Ledgers, body.Dead, _ = c.sampler.series()
		body.Sampled = true
	}
	if c.cfg.Readiness != nil {
		body.Deps = c.cfg.Readiness.Conditions()
	}
	if c.cfg.Keys != nil {
		keys, err := c.cfg.Keys.Keys(r.Context())
		if err != nil {
			body.KeysErr = "the key store did not answer"
		}
		for _, k := range keys {
			if visible(&rq.p, k.App) {
				body.Keys = append(body.Keys, k)
			}
		}
	}
	c.render(w, http.StatusOK, "status", page{Title: "Status", Nav: "status", Principal: &rq.p, CSRF: rq.sess.csrf, Body: body})
}
