package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/periodic"
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
	periodic.NowAndEvery(ctx, every, func(context.Context) {
		pf.Current()
		if err := pf.Status(); err != nil {
			s.obs.dep.principalsDegraded.Set(1)
			s.obs.ready.Set("principals", false, "principals file invalid: failing closed, only unchanged principals work")
		} else {
			s.obs.dep.principalsDegraded.Set(0)
			s.obs.ready.Set("principals", true, "")
		}
	})
}

// keyStoreClientPrefix starts the Kafka client id of every stream processor: veil/ks-<id>, where
// id names the key store the process seals with (keyStoreID). Members of one consumer group
// that show different ids would seal under keys the others cannot read.
const keyStoreClientPrefix = "veil/ks-"

// keyStoreID identifies the key store of kr (keyring.StoreID): every process sharing the store
// computes the same id, processes with different stores different ones. It needs no KMS.
func keyStoreID(ctx context.Context, kr *keyring.Keyring) (string, error) { return kr.StoreID(ctx) }

// foreignKeyStores returns the client ids of the members that advertise a key store other than
// mine. Members that advertise none (not veil processors) are ignored.
func foreignKeyStores(members []kadm.DescribedGroupMember, mine string) []string {
	var out []string
	for _, m := range members {
		id, ok := strings.CutPrefix(m.ClientID, keyStoreClientPrefix)
		if ok && id != mine {
			out = append(out, m.ClientID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// watchKeyStores looks at the members of the consumer group every interval until ctx ends, and
// refuses to seal while any of them uses another key store than this process: data sealed here
// could not be opened there, and the other way round. Refusing holds this process's partitions
// (sealing is retried with backoff, nothing is skipped or dead-lettered) and is reported through
// readiness ("keystore"), the log and veil_sealing_refused; it lifts by itself once the group
// agrees again.
func (s *service) watchKeyStores(ctx context.Context, adm *kadm.Client, group, mine string, every time.Duration) {
	refused := ""
	periodic.NowAndEvery(ctx, every, func(ctx context.Context) {
		dctx, cancel := context.WithTimeout(ctx, every)
		groups, err := adm.DescribeGroups(dctx, group)
		cancel()
		if err == nil {
			var foreign []string
			if g, ok := groups[group]; ok && g.Err == nil {
				foreign = foreignKeyStores(g.Members, mine)
			}
			switch {
			case len(foreign) > 0:
				reason := fmt.Sprintf("consumer group %s has members with another key store (%s; this process: %s%s): refusing to seal; give every process the same keys.store",
					group, strings.Join(foreign, ", "), keyStoreClientPrefix, mine)
				if reason != refused {
					s.log.Error("refusing to seal: key store differs within the consumer group", "group", group,
						"others", foreign, "mine", keyStoreClientPrefix+mine, "key_store", s.cfg.KeyStoreKind())
				}
				refused = reason
				s.keys.RefuseSealing(reason)
				s.obs.dep.sealingRefused.Set(1)
				s.obs.ready.Set("keystore", false, "another member of the consumer group uses another key store; sealing refused")
			default:
				if refused != "" {
					s.log.Info("sealing allowed again: every member of the consumer group uses this key store", "group", group)
				}
				refused = ""
				s.keys.AllowSealing()
				s.obs.dep.sealingRefused.Set(0)
				s.obs.ready.Set("keystore", true, "")
			}
		}
	})
}

// keyStoreWatchInterval is how often a running veil compares its key store with the group's.
const keyStoreWatchInterval = 2 * time.Second
