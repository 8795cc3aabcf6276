package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/egress"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
)

// integrationTopics returns the topic of every integration that receives decrypted entries,
// bounded by the longest TTL of its ledgers (ledgerTTLs: the effective TTLs).
func integrationTopics(cfg *config.Config, ledgerTTLs []broker.LedgerTTL) ([]broker.TopicTTL, error) {
	var out []broker.TopicTTL
	for _, name := range slices.Sorted(maps.Keys(cfg.Integrations)) {
		in := cfg.Integrations[name]
		if in.Delivery == egress.DeliveryWebhook {
			continue // no topic: entries go straight to the integration
		}
		if !(&egress.Integration{Kind: reveal.Kind(in.Kind), Override: in.Override}).Decrypts() {
			continue
		}
		t, err := broker.IntegrationTopicTTL(in.Topic, in.Ledgers, ledgerTTLs)
		if err != nil {
			return nil, fmt.Errorf("integrations.%s: %w", name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// webhookConfig returns the webhook settings of integration name (none unless its delivery is
// webhook).
func webhookConfig(name string, in config.Integration) (egress.WebhookConfig, error) {
	if in.Delivery != egress.DeliveryWebhook {
		return egress.WebhookConfig{}, nil
	}
	w := egress.WebhookConfig{Secret: []byte(in.Secret)}
	if in.CAFile != "" {
		pem, err := os.ReadFile(in.CAFile)
		if err != nil {
			return w, &configError{fmt.Errorf("integrations.%s.ca_file: %w", name, err)}
		}
		w.RootCAs = x509.NewCertPool()
		if !w.RootCAs.AppendCertsFromPEM(pem) {
			return w, &configError{fmt.Errorf("integrations.%s.ca_file holds no PEM certificate", name)}
		}
	}
	return w, nil
}

// egressStage is the stage of one integration.
type egressStage struct {
	name string
	*egress.Stage
}

// newEgress builds one egress stage per configured integration, in name order.
func (s *service) newEgress() ([]egressStage, error) {
	var stages []egressStage
	partitions := 0 // the cluster's default
	if s.cfg.EmbeddedBroker() {
		partitions = s.cfg.Kafka.Embedded.Partitions
	}
	ledgerTTLs, err := s.cfg.BrokerLedgers()
	if err != nil {
		return nil, &configError{err}
	}
	for _, name := range slices.Sorted(maps.Keys(s.cfg.Integrations)) {
		in := s.cfg.Integrations[name]
		bound, err := broker.IntegrationTopicTTL(in.Topic, in.Ledgers, ledgerTTLs)
		if err != nil {
			return nil, &configError{fmt.Errorf("integrations.%s: %w", name, err)}
		}
		hook, err := webhookConfig(name, in)
		if err != nil {
			return nil, err
		}
		st, err := egress.New(egress.Config{
			Brokers: s.brokers, KafkaOpts: s.kopts, TransactionalID: s.cfg.Kafka.TransactionalID,
			Integration: egress.Integration{
				Name: name, Kind: reveal.Kind(in.Kind), Override: in.Override,
				Apps: in.Apps, Ledgers: in.Ledgers, Topic: in.Topic,
				Delivery: in.Delivery, URL: in.URL,
			},
			Webhook: hook,
			Opener:  s.opener, Partitions: partitions, TopicTTL: bound.TTL,
			Limits: schemas.Limits{MaxDepth: s.cfg.Limits.MaxDepth},
			Logger: s.log.With("component", "egress"), Observer: egressObserver{s.obs},
		})
		if err != nil {
			for _, st := range stages {
				st.Close(context.Background())
			}
			return nil, fmt.Errorf("creating egress stage of integration %s: %w", name, err)
		}
		stages = append(stages, egressStage{name, st})
	}
	return stages, nil
}

// egressObserver feeds the stages' batches into metrics and their dependency reports into
// readiness.
type egressObserver struct{ o *observer }

func (e egressObserver) Batch(name string, st egress.BatchStats, committed bool) {
	if !committed {
		e.o.m.TxnAborts.Inc()
		return
	}
	m := e.o.m
	m.EgressEntries.WithLabelValues(name, "delivered").Add(float64(st.Delivered))
	m.EgressEntries.WithLabelValues(name, "skipped").Add(float64(st.Skipped))
	if st.Rejected > 0 {
		m.EgressEntries.WithLabelValues(name, "rejected").Add(float64(st.Rejected))
	}
	m.EgressTokens.WithLabelValues(name, "opened").Add(float64(st.Opened))
	m.EgressTokens.WithLabelValues(name, "masked").Add(float64(st.Masked))
}

func (e egressObserver) Dependency(name string, ok bool) { e.o.Dependency(name, ok) }
