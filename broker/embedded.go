package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures StartEmbedded. Zero values are the documented defaults.
type EmbeddedConfig struct {
	// Addr is the host:port the broker listens on and advertises; default "127.0.0.1:9092".
	// Use "127.0.0.1:0" for a free port (tests).
	Addr string
	// DataDir is where the broker keeps its state across restarts; empty keeps nothing.
	DataDir string
	// Partitions is the default partition count of created topics; default 3.
	Partitions int
	// Logger receives the broker's warnings and errors; default slog.Default().
	Logger *slog.Logger
	// SyncInterval is how often the topic list is written to DataDir; default 2s. Records of kept
	// topics are appended as soon as they are committed, and group offsets are saved every 100 ms
	// (or SyncInterval if shorter).
	SyncInterval time.Duration
	// KMS wraps the data keys that seal raw ledger records kept in DataDir, under KeyID. Nil
	// keeps raw topics in memory only (lost at a restart).
	KMS   KMS
	KeyID string
	// Ledgers are the ledgers configured now: a kept raw topic is recreated with the retention of
	// its ledger's TTL (RawTopicConfigs), not the one it was kept with, and its records older
	// than that TTL are dropped. Raw topics of ledgers not listed keep their kept configs.
	Ledgers []LedgerTTL
}

// Embedded is an in-process Kafka-protocol broker (franz-go's kfake, one node) with transactions,
// consumer groups and retention.
//
// The pinned kfake has a DataDir option, but it writes every topic's record batches to disk in
// plaintext, raw ledger topics included, and it cannot exclude topics or encrypt its files.
// Plaintext must never reach the disk, so Embedded runs kfake in memory and keeps its own state
// in DataDir instead:
//
//   - topics.json: every topic with its partition count and configs;
//   - records/: one CRC-framed file per partition (0600), appended as records arrive (read
//     uncommitted: a transaction's records are tagged with their producer, its markers kept).
//     Records of veil's own sealed or redacted topics (encrypted.*, redacted.*, veil.deadletter,
//     veil.audit) are kept whole. Every other offset is kept as a gap, without its record: the
//     records of any other topic (an integration topic holds decrypted deliveries: they never
//     reach the disk) and records deleted before the keeper read them;
//   - txns.log: a commit intent per transaction (producer, partitions, the group offsets it
//     committed), written before the broker commits it; see txnlog.go;
//   - raw/ and rawkeys/ (only with a KMS): the records of raw ledger topics, each sealed with
//     AES-256-GCM (bound to topic, partition and offset) under a data key per RawWindow that the
//     KMS wraps. A raw file is deleted once its window is older than its topic's retention.ms, a
//     key once its window is older than the longest raw retention: past the TTL nothing can open
//     them. Without the KMS the files reveal nothing;
//   - offsets.json: the committed offsets of every consumer group (on raw topics only with a
//     KMS), saved every 100 ms, never ahead of the kept records.
//
// On start the topics are recreated and written back so that every offset is what it was: kept
// records are produced back at their offsets with their keys, headers and timestamps, gaps become
// transaction markers (which take an offset and which no consumer sees), and offsets before the
// first record younger than the topic's retention.ms are deleted (the log start moves there, as
// Kafka's retention would). Group offsets are committed back unchanged. Consequences:
//
//   - Offsets are stable: a consumer that keeps its offsets outside Kafka (file names, a
//     database) resumes exactly after a restart; high watermarks and log start offsets are kept.
//   - With a KMS, raw input a producer had written survives a restart, sealed at rest; without
//     one, raw topics live in memory only and are recreated empty by EnsureTopics.
//   - Records of other topics (integration topics) are gone after a restart; their offsets are
//     not reused, so their consumers resume at the next new record.
//   - Transactions are restored whole: a transaction's records and the group offsets it
//     committed come back together (committed if a commit marker or its intent says so), so a
//     consume-transform-produce loop neither loses nor repeats output across a kill -9.
//   - A graceful Close writes everything. After a crash (kill -9) the files hold what was
//     written up to the crash (a torn tail is dropped): records acknowledged in the last
//     milliseconds, before the keeper read them, may be missing, and offsets committed outside
//     transactions may be up to 100 ms old (their consumers read a few records again). Files are
//     not fsynced per record: a power cut can lose what the operating system had not written.
type Embedded struct {
	cluster *kfake.Cluster
	addrs   []string
	log     *slog.Logger
	keep    *keeper

	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts the broker, restores what DataDir holds, and returns once the broker
// accepts connections and the restore is done. Cancelling ctx aborts the restore (the broker is
// then closed); it does not stop a running broker: use Close.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9092"
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 2 * time.Second
	}
	log := cfg.Logger.With("component", "embedded-broker")
	addr := cfg.Addr
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.ClusterID("veil-embedded"),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.WithLogger(kfakeLogger{log}),
		// Apply retention every 10s instead of kfake's hourly default, so raw topics do not hold
		// plaintext in memory much past their TTL.
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "10000"}),
	)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker on %s: %w", cfg.Addr, err)
	}
	e := &Embedded{cluster: c, addrs: c.ListenAddrs(), log: log}
	if cfg.DataDir != "" {
		var raw *rawKeys
		if cfg.KMS != nil {
			if raw, err = newRawKeys(cfg.KMS, cfg.KeyID, filepath.Join(cfg.DataDir, rawKeysDir)); err != nil {
				c.Close()
				return nil, err
			}
		}
		k, err := startKeeper(ctx, c, e.addrs, cfg.DataDir, cfg.SyncInterval, log, raw, cfg.Ledgers)
		if err != nil {
			c.Close()
			return nil, err
		}
		e.keep = k
	}
	return e, nil
}

// Addrs returns the broker's listen addresses (one), usable as seed brokers.
func (e *Embedded) Addrs() []string { return append([]string(nil), e.addrs...) }

// Cluster returns the underlying kfake cluster, for tests and tools that need its control hooks.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close writes the kept state (waiting, until ctx is done, for committed records not yet written)
// and stops the broker. It is idempotent: later calls return the first call's result.
func (e *Embedded) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		var errs []error
		if e.keep != nil {
			errs = append(errs, e.keep.close(ctx))
		}
		e.cluster.Close()
		e.closeErr = errors.Join(errs...)
		if e.closeErr != nil {
			e.closeErr = fmt.Errorf("closing embedded broker: %w", e.closeErr)
		}
	})
	return e.closeErr
}

type kfakeLogger struct{ l *slog.Logger }

// Logf forwards kfake's warnings and errors; its info and debug lines describe individual
// requests and are dropped.
func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	default:
		return
	}
	k.l.Log(context.Background(), l, fmt.Sprintf(msg, args...))
}
