package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/console"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmsaws"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
	"github.com/veil-project/veil/sinks/store/badgerstore"
	"github.com/veil-project/veil/sinks/store/dynamostore"
	"github.com/veil-project/veil/sinks/store/redisstore"
)

// service is one veil process: broker connection (or the embedded broker), keys, store and the
// stream processor.
type service struct {
	cfg      *config.Config
	log      *slog.Logger
	embedded *broker.Embedded
	brokers  []string
	kopts    []kgo.Opt
	keys     *keyring.Keyring
	store    store.Store
	sealer   *envelope.Sealer
	opener   *reveal.Opener
	table    *ledgers.Table
	blobs    *blob.Service
	// setLinkAudit installs the audit hook of signed-link fetches (see openBlobs).
	setLinkAudit func(linkAuditor)
	proc         *pipeline.Processor
	ksID         string // identity of the key store, advertised in the processor's client id
	obs          *observer
	console      atomic.Pointer[console.Console] // the web console, once the reveal API serves it
	closers      []func(context.Context) error
}

// parseConfig parses the common flags of a subcommand and loads the configuration. Its help
// (usage, about, example, and which common flags it takes) is helps[name].
func parseConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, error) {
	h, ok := helps[name]
	if !ok {
		h = help{usage: "veil " + name + " [flags]"}
	}
	fs := newFlagSet(name)
	if extra != nil {
		extra(fs)
	}
	var flags config.Config
	flags.BindFlags(fs, h.common...)
	pos, err := parseFlags(fs, h, args)
	if err != nil {
		return nil, err
	}
	file := flags.File()
	if file == "" {
		file = os.Getenv(config.ConfigEnv)
	}
	cfg, err := config.Load(file, os.Environ())
	if err == nil {
		err = flags.ApplyFlags(cfg)
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, &configError{err}
	}
	if len(pos) > 0 {
		return nil, &usageError{fmt.Errorf("unexpected arguments: %s (see 'veil %s --help')", strings.Join(pos, " "), name)}
	}
	return cfg, nil
}

// start builds and starts every component; the processor is created but not yet running.
func start(ctx context.Context, cfg *config.Config, logOut io.Writer) (s *service, err error) {
	return startService(ctx, cfg, logOut, true)
}

// startService is start; without the processor (veil serve) it stops after the opener.
func startService(ctx context.Context, cfg *config.Config, logOut io.Writer, withProcessor bool) (s *service, err error) {
	s = &service{cfg: cfg, log: newLogger(logOut, cfg.Log.Level)}
	// The error returns below set s to nil: close what was started through a copy.
	started := s
	defer func() {
		if err != nil {
			started.close(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	s.obs = newObserver()

	// The KMS first: the embedded broker seals the raw records it keeps under a key it wraps.
	kms, keyID, err := openKMS(ctx, cfg, s.log)
	if err != nil {
		return nil, err
	}
	if l := cfg.NonLoopbackListeners(); cfg.KMS.Provider != "aws" && len(l) > 0 {
		s.log.Warn("the local KMS serves non-loopback listeners: its root key sits on this host's disk, so a copy of it and of the key store opens every live value; use kms.provider aws beyond one host", "listeners", strings.Join(l, ","), "root_key", abs(cfg.RootKeyPath()))
	}

	// Kafka.
	ledgerTTLs, err := cfg.BrokerLedgers()
	if err != nil {
		return nil, &configError{err}
	}
	if cfg.EmbeddedBroker() {
		s.embedded, err = broker.StartEmbedded(ctx, broker.EmbeddedConfig{
			Addr: cfg.Kafka.Embedded.Addr, DataDir: cfg.BrokerDir(),
			Partitions: cfg.Kafka.Embedded.Partitions, Logger: s.log, KMS: kms, KeyID: keyID, Ledgers: ledgerTTLs,
		})
		if err != nil {
			return nil, fmt.Errorf("starting embedded broker: %w", err)
		}
		s.closers = append(s.closers, s.embedded.Close)
		s.brokers = s.embedded.Addrs()
	} else {
		s.brokers = cfg.Kafka.Brokers
		if s.kopts, err = kafkaOpts(cfg.Kafka); err != nil {
			return nil, &configError{err}
		}
	}
	if err := s.prepareTopics(ctx, ledgerTTLs); err != nil {
		return nil, err
	}

	// Store.
	if s.store, err = openStore(ctx, cfg, s.log); err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			return nil, err
		}
		// Unreachable, or held by another process: the dependency refused (exit 4).
		return nil, &refusedError{err}
	}
	s.closers = append(s.closers, s.store.Close)

	// The key store after the store: with the same backend, the store's error names it first.
	ks, closeKS, err := openKeyStore(ctx, cfg)
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, &refusedError{err}
	}
	s.closers = append(s.closers, closeKS)
	s.keys, err = keyring.New(keyring.Config{KMS: kms, KeyID: keyID, Store: ks, OnKMSCall: s.obs.kmsCall, PollInterval: cfg.Keys.PollInterval, Window: cfg.Keys.Window, Prefetch: true})
	if err != nil {
		return nil, fmt.Errorf("creating keyring: %w", err)
	}
	// Closers capture the component, not s: the error returns below set s to nil before the
	// deferred close runs them.
	keys := s.keys
	s.closers = append(s.closers, keys.Close)

	s.sealer = envelope.NewSealer(s.keys)
	s.opener = &reveal.Opener{Store: s.store, Sealer: s.sealer}
	if err := s.openBlobs(ctx); err != nil {
		return nil, err
	}
	if !withProcessor {
		return s, nil
	}
	table, err := cfg.LedgerTable()
	if err != nil {
		return nil, &configError{err}
	}
	s.table = table
	if s.ksID, err = keyStoreID(ctx, s.keys); err != nil {
		return nil, &refusedError{err} // the KMS or the key store is down: exit 4, like the store
	}
	tr := &pipeline.Transformer{
		Registry: schemas.DefaultRegistry(), Ledgers: table, Apps: cfg.AppSettings, Sealer: s.sealer,
		Limits:     schemas.Limits{MaxBytes: cfg.Limits.MaxEntryBytes, MaxDepth: cfg.Limits.MaxDepth},
		FutureSkew: cfg.Limits.FutureSkew, Blobs: s.blobs, Logger: s.log, Store: s.store, MaxItemBytes: maxItemBytes(cfg),
	}
	var names []string
	for _, l := range table.All() {
		names = append(names, l.Name)
	}
	s.proc, err = pipeline.New(pipeline.Config{
		Brokers: s.brokers, Group: cfg.Kafka.Group, TransactionID: cfg.Kafka.TransactionalID,
		Ledgers: names, KafkaOpts: append(slices.Clone(s.kopts), kgo.ClientID(keyStoreClientPrefix+s.ksID), kgo.ProducerLinger(cfg.Kafka.Linger)), Transformer: tr, Store: s.store, Observer: s.obs, Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("creating processor: %w", err)
	}
	proc := s.proc
	s.closers = append(s.closers, proc.Close)
	return s, nil
}

// prepareTopics creates missing topics and checks that no raw topic keeps plaintext past its TTL.
func (s *service) prepareTopics(ctx context.Context, ledgerTTLs []broker.LedgerTTL) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.kopts...)...)
	if err != nil {
		return fmt.Errorf("connecting to Kafka: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	partitions := s.cfg.Kafka.Embedded.Partitions
	if !s.cfg.EmbeddedBroker() {
		partitions = -1 // the cluster's default
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(tctx, adm, ledgerTTLs, partitions); err != nil {
		return fmt.Errorf("creating topics: %w", err)
	}
	// Topics of decrypting integrations hold plaintext too: bounded and checked like raw ones.
	plain, err := integrationTopics(s.cfg, ledgerTTLs)
	if err != nil {
		return &configError{err}
	}
	if err := broker.EnsureBoundedTopics(tctx, adm, plain, partitions); err != nil {
		return fmt.Errorf("creating integration topics: %w", err)
	}
	violations, err := broker.CheckTopicRetention(tctx, adm, append(broker.RawTopicTTLs(ledgerTTLs), plain...))
	if err != nil {
		return fmt.Errorf("checking topic retention: %w", err)
	}
	for _, v := range violations {
		s.log.Warn("topic keeps plaintext longer than its ledger TTL", "violation", v.String())
	}
	if len(violations) > 0 && s.cfg.Kafka.RetentionCheck != "warn" {
		return &refusedError{fmt.Errorf("%d raw or integration topic(s) keep plaintext longer than their TTL (first: %s); fix retention.ms or set kafka.retention_check: warn", len(violations), violations[0])}
	}
	return nil
}

// kmsConfig is the AWS KMS of kms.aws with keyID (kms.key_id, or the new key of a rewrap):
// credentials from the SDK's chain.
func kmsConfig(a config.AWS, keyID string) kmsaws.Config {
	return kmsaws.Config{Region: a.Region, Endpoint: a.Endpoint, KeyID: keyID}
}

func openKMS(ctx context.Context, cfg *config.Config, log *slog.Logger) (keyring.KMS, string, error) {
	switch cfg.KMS.Provider {
	case "aws":
		c, err := kmsaws.New(ctx, kmsConfig(cfg.KMS.AWS, cfg.KMS.KeyID))
		if err != nil {
			return nil, "", fmt.Errorf("creating AWS KMS client: %w", err)
		}
		return c, cfg.KMS.KeyID, nil
	default:
		path, err := localRootKey(cfg, log)
		if err != nil {
			return nil, "", err
		}
		p, err := kmslocal.Open(path)
		if err != nil {
			return nil, "", fmt.Errorf("opening local root key %s (kms.local.root_key_path: a persistent path outside data_dir that veil may write): %w", path, err)
		}
		id := cfg.KMS.KeyID
		if id == "" {
			id = kmslocal.DefaultKeyID
		}
		return p, id, nil
	}
}

// localRootKey returns the local root key file (kms.local.root_key_path, by default outside the
// data directory) after moving there a root key that an earlier version kept in the data
// directory. Two different keys in both places refuse to start.
func localRootKey(cfg *config.Config, log *slog.Logger) (string, error) {
	path := cfg.RootKeyPath()
	legacy := cfg.LegacyRootKeyPath()
	if abs(legacy) != abs(path) {
		moved, err := kmslocal.Move(legacy, path)
		if err != nil {
			return "", &refusedError{fmt.Errorf("moving the local root key out of the data directory: %w", err)}
		}
		if moved {
			log.Warn("moved the local root key out of the data directory; back it up apart from the data directory", "from", abs(legacy), "to", abs(path))
		}
	}
	if rel, err := filepath.Rel(abs(cfg.DataDir), abs(path)); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		log.Warn("the local root key is inside the data directory: a copy of the directory opens every live value; set kms.local.root_key_path elsewhere", "root_key", abs(path))
	}
	return path, nil
}

// maxItemBytes is the largest sealed record the configured store takes (0: no bound of its own).
func maxItemBytes(cfg *config.Config) int {
	if cfg.Store.Kind == "dynamodb" {
		return dynamostore.MaxValueBytes
	}
	return 0
}

// redisServer is the Redis server of store.redis, which the Redis store and the Redis key store
// share: TLS 1.2 or later when store.redis.tls is set.
func redisServer(r config.Redis) redisconn.Server {
	s := redisconn.Server{Addr: r.Addr, Username: r.Username, Password: string(r.Password), DB: r.DB}
	if r.TLS {
		s.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return s
}

// dynamoConn is the DynamoDB of store.dynamodb, which the DynamoDB store and the DynamoDB key
// store share: the region and endpoint configured; credentials from the SDK's chain.
func dynamoConn(d config.DynamoDB) dynatable.Conn {
	return dynatable.Conn{Region: d.Region, Endpoint: d.Endpoint}
}

func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store.Kind {
	case "redis":
		st, err := redisstore.Open(ctx, redisstore.Options{Server: redisServer(cfg.Store.Redis)})
		if err != nil {
			return nil, fmt.Errorf("opening Redis store: %w", err)
		}
		return st, nil
	case "dynamodb":
		d := cfg.Store.DynamoDB
		st, err := dynamostore.Open(ctx, dynamostore.Options{Table: d.Table, Conn: dynamoConn(d), CreateTable: d.CreateTable, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("opening DynamoDB store: %w", err)
		}
		return st, nil
	case "badger", "":
		st, err := badgerstore.Open(cfg.StoreDir(), badgerstore.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("opening embedded store: %w", err)
		}
		return st, nil
	default:
		return nil, &configError{fmt.Errorf("store.kind %q is not available in this build", cfg.Store.Kind)}
	}
}

func kafkaOpts(k config.Kafka) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if k.TLS.Enabled {
		tc, err := kafkaTLS(k.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToLower(k.SASL.Mechanism) {
	case "":
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASL.Username, Pass: string(k.SASL.Password)}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: string(k.SASL.Password)}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: string(k.SASL.Password)}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q is not supported", k.SASL.Mechanism)
	}
	return opts, nil
}

// close closes the components in the reverse order of their creation (the embedded broker, then
// the stores last), after every actor using them returned (group.run). Closers that may wait (the
// embedded broker writing its last records) get at most shutdownTimeout. It is idempotent.
func (s *service) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](ctx); err != nil {
			s.log.Warn("closing component", "err", err)
		}
	}
	s.closers = nil
}

// apps returns the configured app ids, for messages.
func appsOf(cfg *config.Config) []string {
	var out []string
	for a := range cfg.Apps {
		out = append(out, a)
	}
	return out
}

func kafkaTLS(t config.KafkaTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading kafka.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("kafka.tls.ca_file holds no PEM certificate")
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading kafka.tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}
