package ops

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds veil's collectors, all registered on Registry (not the global registry), with
// the Go runtime and process collectors.
type Metrics struct {
	Registry *prometheus.Registry

	EntriesIn      *prometheus.CounterVec // {ledger}: records consumed from ledger.<ledger>
	EntriesOut     *prometheus.CounterVec // {ledger, view}: records produced; view is "encrypted" or "redacted"
	Sensitive      *prometheus.CounterVec // {ledger}: entries found sensitive (share = Sensitive / EntriesIn)
	DeadLettered   *prometheus.CounterVec // {reason}: records sent to veil.deadletter
	SealSeconds    prometheus.Histogram   // time to seal one sensitive entry
	TxnCommits     prometheus.Counter     // Kafka transactions committed
	TxnAborts      prometheus.Counter     // Kafka transactions aborted
	ConsumerLag    *prometheus.GaugeVec   // {topic, partition}: high watermark minus committed offset
	KMSCalls       *prometheus.CounterVec // {op}: calls to the KMS (generate_data_key, decrypt, …)
	KeyCacheHits   prometheus.Counter     // app-KEK cache hits
	KeyCacheMisses prometheus.Counter     // app-KEK cache misses
	StoreWrites    prometheus.Counter     // items written to the encrypted store
	StoreErrors    *prometheus.CounterVec // {op}: failed store calls (put, get, delete)

	SinkWrites       *prometheus.CounterVec   // {sink}: files or objects written (analytics, blob)
	SinkBytes        *prometheus.CounterVec   // {sink}: bytes written
	SinkErrors       *prometheus.CounterVec   // {sink}: failed writes (retried with backoff)
	SinkFlushSeconds *prometheus.HistogramVec // {sink}: time to write one flush

	EgressEntries *prometheus.CounterVec // {integration, outcome}: delivered or skipped entries
	EgressTokens  *prometheus.CounterVec // {integration, outcome}: tokens delivered opened or masked
}

// NewMetrics creates and registers every collector.
func NewMetrics() *Metrics {
	const ns = "veil"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		EntriesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "entries_in_total", Help: "Entries consumed from raw ledger topics.",
		}, []string{"ledger"}),
		EntriesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "entries_out_total", Help: "Entries produced to the encrypted and redacted topics.",
		}, []string{"ledger", "view"}),
		Sensitive: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "entries_sensitive_total", Help: "Entries flagged sensitive and sealed.",
		}, []string{"ledger"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "deadlettered_total", Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		SealSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "seal_seconds", Help: "Time to seal one sensitive entry.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2.5, 12), // 5µs … ~75ms
		}),
		TxnCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "transaction_commits_total", Help: "Kafka transactions committed.",
		}),
		TxnAborts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "transaction_aborts_total", Help: "Kafka transactions aborted.",
		}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "consumer_lag", Help: "Records behind the high watermark, per raw topic partition.",
		}, []string{"topic", "partition"}),
		KMSCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "kms_calls_total", Help: "Calls to the KMS, by operation.",
		}, []string{"op"}),
		KeyCacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "key_cache_hits_total", Help: "App key cache hits.",
		}),
		KeyCacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "key_cache_misses_total", Help: "App key cache misses.",
		}),
		StoreWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "store_writes_total", Help: "Items written to the encrypted store.",
		}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "store_errors_total", Help: "Failed encrypted-store calls, by operation.",
		}, []string{"op"}),
		SinkWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sink_writes_total", Help: "Files or objects written by a sink.",
		}, []string{"sink"}),
		SinkBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sink_bytes_total", Help: "Bytes written by a sink.",
		}, []string{"sink"}),
		SinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sink_errors_total", Help: "Failed sink writes (retried with backoff; the offset commit waits).",
		}, []string{"sink"}),
		SinkFlushSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "sink_flush_seconds", Help: "Time to write one flush of a sink.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2.5, 12),
		}, []string{"sink"}),
		EgressEntries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "egress_entries_total", Help: "Entries handled by an integration's egress stage, by outcome (delivered, skipped, rejected: refused for good by a webhook and dead-lettered).",
		}, []string{"integration", "outcome"}),
		EgressTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "egress_tokens_total", Help: "Tokens delivered to an integration, by outcome (opened, masked).",
		}, []string{"integration", "outcome"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.EntriesIn, m.EntriesOut, m.Sensitive, m.DeadLettered, m.SealSeconds, m.TxnCommits, m.TxnAborts,
		m.ConsumerLag, m.KMSCalls, m.KeyCacheHits, m.KeyCacheMisses, m.StoreWrites, m.StoreErrors,
		m.SinkWrites, m.SinkBytes, m.SinkErrors, m.SinkFlushSeconds, m.EgressEntries, m.EgressTokens,
	)
	return m
}

// SetLag sets the consumer lag of one partition.
func (m *Metrics) SetLag(topic string, partition int32, lag int64) {
	m.ConsumerLag.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(float64(lag))
}
