package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veil-project/veil/reveal"
)

// deploymentGauges are the metrics of what several processes of one deployment must agree on.
type deploymentGauges struct {
	principalsDegraded prometheus.Gauge // 1 while the principals file is broken (failing closed)
	sealingRefused     prometheus.Gauge // 1 while this process refuses to seal (key store mismatch)
}

func newDeploymentGauges(reg prometheus.Registerer) *deploymentGauges {
	g := &deploymentGauges{
		principalsDegraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "veil", Name: "principals_file_invalid",
			Help: "1 while the principals file does not parse or validate: only principals it lists unchanged still work (fail closed).",
		}),
		sealingRefused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "veil", Name: "sealing_refused",
			Help: "1 while this process refuses to seal because another member of its consumer group uses another key store.",
		}),
	}
	reg.MustRegister(g.principalsDegraded, g.sealingRefused)
	return g
}

// watchPrincipals re-reads the principals file every interval until ctx ends, and reports a
// broken file (failing closed, see reveal.PrincipalsFile) through readiness and the
// veil_principals_file_invalid gauge; the log line comes from the file's error callback.
func (s *service) watchPrincipals(ctx context.Context, pf *reveal.PrincipalsFile, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		pf.Current()
		if err := pf.Status(); err != nil {
			s.obs.dep.principalsDegraded.Set(1)
			s.obs.ready.Set("principals", false, "principals file invalid: failing closed, only unchanged principals work")
		} else {
			s.obs.dep.principalsDegraded.Set(0)
			s.obs.ready.Set("principals", true, "")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
