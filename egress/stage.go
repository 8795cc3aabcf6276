package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/consume"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
)

// Config configures a Stage. Zero values are the documented defaults.
type Config struct {
	Brokers   []string
	KafkaOpts []kgo.Opt // extra client options (TLS, SASL, logger)
	// TransactionalID is the process's transactional id (kafka.transactional_id); the stage
	// uses TransactionalID + "-egress-" + name as its transactional and static instance id.
	// Default "veil".
	TransactionalID string
	Integration     Integration
	Opener          *reveal.Opener
	MaxPoll         int            // records per poll and transaction; default 500
	Workers         int            // goroutines opening tokens; default GOMAXPROCS
	Partitions      int            // partitions of the integration topic if veil creates it; 0: the cluster's default
	Limits          schemas.Limits // decoding bounds of encrypted entries; default 64 MiB and 32 levels
	Clock           func() time.Time
	Logger          *slog.Logger
	Observer        Observer // nil: none
	// Webhook configures delivery for an integration whose Delivery is webhook.
	Webhook WebhookConfig

	// TopicTTL bounds the integration topic of an integration that decrypts: created with
	// retention.ms = TopicTTL and segment.ms = TopicTTL/4 (broker.RawTopicConfigs), since it holds
	// plaintext. Default: the longest TTL of its ledgers in the default table. Unused (the topic is
	// created with the cluster's defaults, like redacted.*) when the integration only gets ★★★★★.
	TopicTTL time.Duration
}

// Observer receives what a stage does. Nil is fine.
type Observer interface {
	// Batch reports one committed or aborted transaction of integration.
	Batch(integration string, b BatchStats, committed bool)
	// Dependency reports whether a dependency ("store", "broker") works.
	Dependency(name string, ok bool)
}

// BatchStats counts one transaction's work.
type BatchStats struct {
	Delivered int // entries produced to the integration topic
	Skipped   int // entries not delivered (app filter, malformed)
	Opened    int // tokens delivered as their value
	Masked    int // tokens delivered as ★★★★★
	Audited   int // audit records produced
	Rejected  int // entries a webhook refused for good (dead-lettered)
}

type nopObserver struct{}

func (nopObserver) Batch(string, BatchStats, bool) {}
func (nopObserver) Dependency(string, bool)        {}

// Stage is the exactly-once delivery of entries to one integration. Its engine
// (internal/consume) polls, retries, rewinds, reconnects and commits: in transactional mode for
// topic delivery, in manual mode for a webhook (where its client also produces the audit and
// dead-letter records).
type Stage struct {
	cfg  Config
	eng  *consume.Engine
	http *http.Client // webhook delivery
	host string       // the webhook's host, for messages
	log  *slog.Logger
	obs  Observer
}

// Group returns the consumer group of the stage for integration name: "veil-egress-<name>".
func Group(name string) string { return "veil-egress-" + name }

// New validates cfg and creates the stage's Kafka session; Run starts delivering.
func New(cfg Config) (*Stage, error) {
	if cfg.Opener == nil {
		return nil, errors.New("egress: Opener is required")
	}
	if err := cfg.Integration.Validate(); err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	if cfg.TransactionalID == "" {
		cfg.TransactionalID = "veil"
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 500
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Limits.MaxBytes <= 0 {
		// Tokens are longer than most values they replace: allow well beyond the input limit.
		cfg.Limits.MaxBytes = 64 << 20
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Integration.Webhook() && len(cfg.Webhook.Secret) < MinWebhookSecret {
		return nil, fmt.Errorf("egress: integration %q: a webhook needs a secret of at least %d bytes", cfg.Integration.Name, MinWebhookSecret)
	}
	if cfg.Webhook.Timeout <= 0 {
		cfg.Webhook.Timeout = 30 * time.Second
	}
	if cfg.TopicTTL <= 0 && !cfg.Integration.Webhook() {
		var ttls []broker.LedgerTTL
		for _, l := range ledgers.All() {
			ttls = append(ttls, broker.LedgerTTL{Name: l.Name, TTL: l.TTL})
		}
		t, err := broker.IntegrationTopicTTL(cfg.Integration.Topic, cfg.Integration.Ledgers, ttls)
		if err != nil {
			return nil, fmt.Errorf("egress: %w", err)
		}
		cfg.TopicTTL = t.TTL
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	in := cfg.Integration
	topics := make([]string, len(in.Ledgers))
	for i, l := range in.Ledgers {
		topics[i] = broker.EncryptedTopic(l)
	}
	id := cfg.TransactionalID + "-egress-" + in.Name
	log := cfg.Logger.With("integration", in.Name)
	ecfg := consume.Config{
		Brokers: cfg.Brokers, Group: Group(in.Name), Topics: topics,
		// Static membership, as in the pipeline: a restarted process takes its partitions
		// back at once.
		InstanceID: id,
		MaxPoll:    cfg.MaxPoll,
		Opts:       append([]kgo.Opt{kgo.FetchMaxBytes(8 << 20), kgo.FetchMaxPartitionBytes(2 << 20)}, cfg.KafkaOpts...),
		Logger:     log,
	}
	st := &Stage{cfg: cfg, log: log, obs: obs}
	if in.Webhook() {
		// Manual commits: offsets are committed once every entry of a batch was delivered or
		// dead-lettered; the client also produces the audit and dead-letter records.
		u, _ := url.Parse(in.URL) // Validate parsed it
		st.http, st.host = newWebhookClient(cfg.Webhook), u.Host
	} else {
		ecfg.TransactionalID = id
		ecfg.Opts = append([]kgo.Opt{kgo.MaxBufferedRecords(8 * cfg.MaxPoll)}, ecfg.Opts...)
		ecfg.Connect = st.ensureTopic
	}
	eng, err := consume.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("creating Kafka client of integration %s: %w", in.Name, err)
	}
	st.eng = eng
	return st, nil
}

func (s *Stage) now() time.Time { return s.cfg.Clock() }

// Run creates the integration topic if it is missing (a webhook has none), then delivers until
// ctx is cancelled (returning nil) or the transactional session fails fatally. Cancelling ctx
// aborts the transaction (or the webhook batch) in flight; its records are delivered on restart,
// once (a webhook: again, under the same idempotency keys).
func (s *Stage) Run(ctx context.Context) error {
	h := s.batch
	if s.cfg.Integration.Webhook() {
		h = s.webhookBatch
	}
	if err := s.eng.Run(ctx, h); err != nil && !errors.Is(err, consume.ErrClosed) {
		return err
	}
	return nil
}

// ensureTopic creates the integration topic if it is missing; the engine retries it (Connect).
func (s *Stage) ensureTopic(ctx context.Context, cl *kgo.Client) error {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := int32(-1)
	if s.cfg.Partitions > 0 {
		p = int32(s.cfg.Partitions)
	}
	var configs map[string]*string
	if s.cfg.Integration.Decrypts() {
		configs = broker.RawTopicConfigs(s.cfg.TopicTTL) // it holds plaintext
	}
	resp, err := kadm.NewClient(cl).CreateTopic(tctx, p, -1, configs, s.cfg.Integration.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		s.obs.Dependency("broker", false)
		return fmt.Errorf("creating topic %s: %w", s.cfg.Integration.Topic, err)
	}
	return nil
}

// batch delivers a batch's records and their audit records in one transaction with the offset
// commit. A failure makes the engine rewind the session to its committed offsets so the same
// records come back on the next poll.
func (s *Stage) batch(ctx context.Context, b *consume.Batch) (bool, error) {
	recs := b.Records
	outs, err := s.entries(ctx, recs)
	if err != nil {
		if ctx.Err() == nil {
			s.obs.Dependency("store", false)
		}
		return false, err
	}
	if s.cfg.Integration.Decrypts() {
		s.obs.Dependency("store", true)
	}

	var st BatchStats
	if err := b.Begin(); err != nil {
		return false, err
	}
	promise := kgo.AbortingFirstErrPromise(b.Client())
	var encErr error
	for i := range outs {
		o := &outs[i]
		if o.rec != nil {
			b.Produce(ctx, o.rec, promise.Promise())
			st.Delivered++
		} else {
			st.Skipped++
		}
		st.Opened += o.opened
		st.Masked += o.masked
		for _, a := range o.audits {
			kr, err := a.KafkaRecord()
			if err != nil {
				encErr = err
				continue
			}
			b.Produce(ctx, kr, promise.Promise())
			st.Audited++
		}
	}
	perr := promise.Err()
	if perr == nil {
		perr = encErr
	}
	committed, err := b.End(ctx, perr == nil)
	s.obs.Batch(s.cfg.Integration.Name, st, committed)
	if err != nil {
		s.obs.Dependency("broker", false)
		return false, err
	}
	s.obs.Dependency("broker", perr == nil)
	if perr != nil {
		return false, fmt.Errorf("producing deliveries: %w", perr)
	}
	return committed, nil
}

// entries turns recs into outputs in parallel, keeping the input order so each partition's
// (and so each thread's) order holds on the integration topic.
func (s *Stage) entries(ctx context.Context, recs []*kgo.Record) ([]output, error) {
	workers := 1
	if s.cfg.Integration.Decrypts() {
		// Only opening waits on the store and the KMS; redacting is pure CPU.
		workers = min(s.cfg.Workers, (len(recs)+15)/16)
	}
	return pipeline.MapOrdered(len(recs), workers, func(i int) (output, error) { return s.entry(ctx, recs[i]) })
}

// Close stops Run if it runs (the transaction or webhook batch in flight is abandoned, to be
// delivered again), waits for it until ctx ends, then leaves the group and closes the client. It
// is idempotent.
func (s *Stage) Close(ctx context.Context) error {
	err := s.eng.Close(ctx)
	if s.http != nil {
		s.http.CloseIdleConnections()
	}
	return err
}
