package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// SyncInterval is how often the topic list and the group offsets are written to DataDir;
	// default 2s. Records of kept topics are appended as soon as they are committed.
	SyncInterval time.Duration
}

// Embedded is an in-process Kafka-protocol broker (franz-go's kfake, one node) with transactions,
// consumer groups and retention.
//
// The pinned kfake has a DataDir option, but it writes every topic's record batches to disk,
// raw ledger topics included, and it cannot exclude topics or encrypt its files. Raw topics hold
// plaintext, and plaintext must never reach the disk, so Embedded runs kfake in memory and keeps
// its own state in DataDir instead:
//
//   - topics.json: every topic with its partition count and configs;
//   - records/: one CRC-framed file per partition (0600), appended as records are committed
//     (read_committed). Records of veil's own sealed or redacted topics (encrypted.*, redacted.*,
//     veil.deadletter, veil.audit) are kept whole. Every other offset is kept as a gap, without
//     its record: transaction markers, aborted records, and the records of any other topic (an
//     integration topic holds decrypted deliveries: they never reach the disk);
//   - offsets.json: the committed offsets of every consumer group on non-raw topics, every
//     SyncInterval and at Close.
//
// On start the non-raw topics are recreated and written back so that every offset is what it
// was: kept records are produced back at their offsets with their keys, headers and timestamps,
// gaps become transaction markers (which take an offset and which no consumer sees), and offsets
// before the first record younger than the topic's retention.ms are deleted (the log start moves
// there, as Kafka's retention would). Group offsets are committed back unchanged. Consequences:
//
//   - Offsets are stable: a consumer that keeps its offsets outside Kafka (file names, a
//     database) resumes exactly after a restart; high watermarks and log start offsets are kept.
//   - Records of other topics (integration topics) are gone after a restart; their offsets are
//     not reused, so their consumers resume at the next new record.
//   - Raw ledger topics are not restored: run EnsureTopics after StartEmbedded, which creates them
//     (empty) with the TTLs configured now. Records a producer wrote that veil had not consumed and
//     committed before the broker stopped are lost; groups restart on raw topics at their reset
//     offset. Use a real Kafka cluster where producers need durability across restarts.
//   - After a crash (kill -9) the files hold what was written up to the crash; a torn tail is
//     dropped, and group offsets may be up to SyncInterval old, so consumers of kept topics may
//     read a few records again.
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
		k, err := startKeeper(ctx, c, e.addrs, cfg.DataDir, cfg.SyncInterval, log)
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
