package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/kmsaws"
	"github.com/veil-project/veil/crypto/kmslocal"
	"github.com/veil-project/veil/internal/atomicfile"
	"github.com/veil-project/veil/internal/periodic"
	"github.com/veil-project/veil/names"
	"github.com/veil-project/veil/sinks/blob"
)

// eraseBlobs deletes app's objects from the configured blob store (blob.s3.bucket, or the local
// blob.dir, default <data_dir>/blobs) through blob.Service.DeleteApp and reports how many it
// deleted. Media DEKs are sealed under the app's KEKs, so erasing the keys already makes the blobs
// unreadable; deleting them is the second step, like the store rows.
func eraseBlobs(ctx context.Context, cfg *config.Config, sealer *envelope.Sealer, app string) (int, error) {
	var objs blob.Objects
	if b := cfg.Blob.S3; b.Bucket != "" {
		c, err := blob.NewS3Client(ctx, s3ClientConfig(b))
		if err != nil {
			return 0, fmt.Errorf("creating S3 client: %w", err)
		}
		if objs, err = blob.NewS3(blob.S3Config{Client: c, Bucket: b.Bucket, Prefix: b.Prefix}); err != nil {
			return 0, err
		}
	} else {
		dir := cfg.BlobDir()
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return 0, nil // no blob was ever written here
		}
		d, err := blob.NewDir(dir)
		if err != nil {
			return 0, err
		}
		objs = d
	}
	svc, err := blob.New(blob.Config{Objects: objs, Sealer: sealer})
	if err != nil {
		return 0, err
	}
	return svc.DeleteApp(ctx, app)
}

var keysSubcommands = []struct{ name, summary string }{
	{"list", "list app KEKs: app, version, period, state, destroy time (--json)"},
	{"rotate", "seal new data under a fresh KEK now (--app A, default every app)"},
	{"rewrap", "re-wrap every app KEK under a new KMS key (--key-id) or local root key (--new-root-key)"},
	{"destroy-expired", "delete every KEK past its destroy time"},
	{"erase", "tenant erasure: destroy an app's KEKs, delete its store rows and blobs, audit it (--app A --yes)"},
}

func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return keysCmd{now: time.Now}.run(ctx, args, stdout, stderr)
}

// keysCmd runs the keys subcommands. now is their clock: it decides which keys are past their
// destroy time and stamps rewraps and erasure records (veil passes time.Now, tests a later clock).
type keysCmd struct{ now func() time.Time }

func (c keysCmd) run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		fmt.Fprintf(w, "Usage:\n  veil keys <subcommand> [flags]\n\nSubcommands:\n")
		for _, s := range keysSubcommands {
			fmt.Fprintf(w, "  %-16s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun 'veil keys <subcommand> --help' for its flags.\n\nExample:\n  veil keys list --json\n")
		if len(args) == 0 {
			return &usageError{errors.New("keys needs a subcommand")}
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "list":
		return c.list(ctx, rest, stdout, stderr)
	case "rotate":
		return c.rotate(ctx, rest, stdout, stderr)
	case "rewrap":
		return c.rewrap(ctx, rest, stdout, stderr)
	case "destroy-expired":
		return c.destroyExpired(ctx, rest, stdout, stderr)
	case "erase":
		return c.erase(ctx, rest, stdout, stderr)
	}
	return &usageError{fmt.Errorf("unknown keys subcommand %q (want list, rotate, rewrap, destroy-expired or erase)", sub)}
}

// keyEnv is the key side of a veil process: KMS, key store and keyring.
type keyEnv struct {
	kms   keyring.KMS
	keyID string
	ks    keyring.KeyStore
	kr    *keyring.Keyring
	shut  func(context.Context) error
}

// openKeyEnv opens the KMS, the key store and a keyring on them whose clock is now.
func openKeyEnv(ctx context.Context, cfg *config.Config, now func() time.Time) (*keyEnv, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	kms, keyID, err := openKMS(ctx, cfg, newLogger(os.Stderr, cfg.Log.Level))
	if err != nil {
		return nil, err
	}
	ks, shut, err := openKeyStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	kr, err := keyring.New(keyring.Config{KMS: kms, KeyID: keyID, Store: ks, Clock: now, Window: cfg.Keys.Window})
	if err != nil {
		_ = shut(ctx)
		return nil, fmt.Errorf("creating keyring: %w", err)
	}
	return &keyEnv{kms: kms, keyID: keyID, ks: ks, kr: kr, shut: shut}, nil
}

func (e *keyEnv) close() {
	_ = e.kr.Close(context.Background())
	_ = e.shut(context.Background())
}

// keyInfoJSON is one row of "veil keys list --json".
type keyInfoJSON struct {
	App         string    `json:"app"`
	Version     int64     `json:"version"`
	Period      int64     `json:"period"`
	Generation  int       `json:"generation"`
	PeriodStart time.Time `json:"period_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	State       string    `json:"state"`
	DestroyAt   time.Time `json:"destroy_at"`
	KMSKeyID    string    `json:"kms_key_id"`
}

func (c keysCmd) list(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	cfg, err := parseConfig("keys list", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	})
	if err != nil {
		return err
	}
	if cfg.KMS.Provider == "local" || cfg.KeyStoreKind() == "file" {
		if err := mustExist(cfg.DataDir, "data directory"); err != nil {
			return err // opening the keys would create a data dir and a new root key
		}
	}
	env, err := openKeyEnv(ctx, cfg, c.now)
	if err != nil {
		return err
	}
	defer env.close()
	infos, err := env.kr.Keys(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		rows := make([]keyInfoJSON, 0, len(infos))
		for _, k := range infos {
			rows = append(rows, keyInfoJSON{
				App: k.App, Version: k.Version, Period: k.Period, Generation: k.Generation,
				PeriodStart: k.PeriodStart, WindowEnd: k.WindowEnd, State: string(k.State), DestroyAt: k.DestroyAt, KMSKeyID: k.KMSKeyID,
			})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tVERSION\tPERIOD\tGEN\tPERIOD START (UTC)\tSTATE\tDESTROY AT (UTC)")
	for _, k := range infos {
		start := k.PeriodStart.Format(time.RFC3339)
		if !k.WindowEnd.IsZero() {
			start = "window to " + k.WindowEnd.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", k.App, k.Version, k.Period, k.Generation,
			start, k.State, k.DestroyAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func (c keysCmd) rotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var app string
	cfg, err := parseConfig("keys rotate", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&app, "app", "", "app to rotate (default: every configured app and every app with a key)")
	})
	if err != nil {
		return err
	}
	if app != "" {
		if err := keyring.ValidateApp(app); err != nil {
			return &usageError{fmt.Errorf("--app: %w", err)}
		}
	}
	env, err := openKeyEnv(ctx, cfg, c.now)
	if err != nil {
		return err
	}
	defer env.close()
	apps := []string{app}
	if app == "" {
		if apps, err = env.kr.Apps(ctx); err != nil {
			return err
		}
		apps = append(apps, appsOf(cfg)...)
		slices.Sort(apps)
		apps = slices.Compact(apps)
	}
	if len(apps) == 0 {
		fmt.Fprintln(stdout, "no apps to rotate")
		return nil
	}
	for _, a := range apps {
		v, err := env.kr.Rotate(ctx, a)
		if err != nil {
			return fmt.Errorf("rotating %s: %w", a, err)
		}
		p, g := keyring.SplitVersion(v)
		within := cmp.Or(cfg.Keys.PollInterval, keyring.DefaultPollInterval)
		if end, ok := keyring.IsWindowVersion(v); ok {
			fmt.Fprintf(stdout, "rotated %s: every open window with a key has a new one (latest: window to %s, version %d, generation %d); running processes switch within %s\n",
				a, end.Format(time.RFC3339), v, g, within)
			continue
		}
		if cfg.Keys.Window > 0 {
			fmt.Fprintf(stdout, "rotated %s: no open window had a key yet; new windows get fresh keys\n", a)
			continue
		}
		fmt.Fprintf(stdout, "rotated %s: version %d (period %d, generation %d); running processes switch within %s\n",
			a, v, p, g, within)
	}
	return nil
}

func (c keysCmd) rewrap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var newKeyID, newRoot string
	cfg, err := parseConfig("keys rewrap", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&newKeyID, "key-id", "", "KMS key id to wrap every app KEK under (aws: required; local: default kms.key_id)")
		fs.StringVar(&newRoot, "new-root-key", "", "local provider: new root key file (created if missing); installed as kms.local.root_key_path on success")
	})
	if err != nil {
		return err
	}
	ks, closeKS, err := openKeyStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeKS(context.Background())
	var (
		from keyring.KMS
		to   keyring.ReEncrypter
	)
	switch cfg.KMS.Provider {
	case "aws":
		if newKeyID == "" {
			return &usageError{errors.New("rewrap with kms.provider aws needs --key-id")}
		}
		if newRoot != "" {
			return &usageError{errors.New("--new-root-key is for kms.provider local")}
		}
		c, err := kmsaws.New(ctx, kmsConfig(cfg.KMS.AWS, newKeyID))
		if err != nil {
			return fmt.Errorf("creating AWS KMS client: %w", err)
		}
		from, to = c, c
	default:
		if newRoot == "" {
			return &usageError{errors.New("rewrap with the local KMS provider needs --new-root-key FILE")}
		}
		oldPath, err := localRootKey(cfg, newLogger(stderr, cfg.Log.Level))
		if err != nil {
			return err
		}
		if abs(newRoot) == abs(oldPath) {
			return &usageError{errors.New("--new-root-key must not be the current root key file")}
		}
		if err := refuseIfRunning(ctx, cfg); err != nil {
			return err
		}
		if from, err = kmslocal.Open(oldPath); err != nil {
			return fmt.Errorf("opening current root key: %w", err)
		}
		p, err := kmslocal.Open(newRoot)
		if err != nil {
			return fmt.Errorf("opening new root key: %w", err)
		}
		to = p
		if newKeyID == "" {
			newKeyID = cfg.KMS.KeyID
		}
		if newKeyID == "" {
			newKeyID = kmslocal.DefaultKeyID
		}
	}
	res, err := keyring.Rewrap(ctx, ks, from, to, newKeyID, c.now())
	if err != nil {
		return fmt.Errorf("%w (%d keys rewrapped so far; run again to finish)", err, res.Rewrapped)
	}
	fmt.Fprintf(stdout, "rewrapped %d keys under %s (%d already were; %d past their destroy time skipped)\n",
		res.Rewrapped, newKeyID, res.Already, res.Skipped)
	if cfg.KMS.Provider == "aws" {
		fmt.Fprintf(stdout, "set kms.key_id to %s so that new keys are wrapped under it; the old KMS key is no longer needed\n", newKeyID)
		return nil
	}
	oldPath := cfg.RootKeyPath()
	if err := os.Rename(newRoot, oldPath); err != nil {
		return fmt.Errorf("installing the new root key (move %s to %s by hand, then delete nothing else): %w", newRoot, oldPath, err)
	}
	_ = atomicfile.SyncDir(filepath.Dir(oldPath)) // best effort: the rename is done either way
	fmt.Fprintf(stdout, "installed the new root key as %s; the old root key is destroyed\n", oldPath)
	return nil
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// refuseIfRunning fails when a veil process holds the embedded store of cfg: with the local
// provider, a running process would keep wrapping new keys under the old root key.
func refuseIfRunning(ctx context.Context, cfg *config.Config) error {
	if cfg.Store.Kind != "" && cfg.Store.Kind != "badger" {
		return nil
	}
	st, err := openStore(ctx, cfg, newLogger(io.Discard, "error"))
	if err != nil {
		return &refusedError{fmt.Errorf("the embedded store is in use (stop veil first): %w", err)}
	}
	return st.Close(ctx)
}

func (c keysCmd) destroyExpired(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig("keys destroy-expired", args, stderr, nil)
	if err != nil {
		return err
	}
	env, err := openKeyEnv(ctx, cfg, c.now)
	if err != nil {
		return err
	}
	defer env.close()
	n, err := env.kr.DestroyExpired(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "destroyed %d keys past their destroy time\n", n)
	return nil
}

// EraseAudit is the record "veil keys erase" writes to veil.audit. It holds counts only.
type EraseAudit struct {
	Time      time.Time `json:"time"`
	Action    string    `json:"action"` // "erase"
	App       string    `json:"app"`
	Keys      int       `json:"keys"`       // app KEKs destroyed
	StoreRows int       `json:"store_rows"` // sealed records deleted
	Blobs     int       `json:"blobs"`      // blobs deleted
	Operator  string    `json:"operator"`
}

func (c keysCmd) erase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		app string
		yes bool
	)
	cfg, err := parseConfig("keys erase", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&app, "app", "", "app whose data is erased (required)")
		fs.BoolVar(&yes, "yes", false, "confirm: erasure cannot be undone")
	})
	if err != nil {
		return err
	}
	switch {
	case app == "":
		return &usageError{errors.New("erase needs --app")}
	case names.Check(app) != nil: // the one rule the keyring and the store hold app ids to
		return &usageError{errors.New("--app is not a valid app id")}
	case !yes:
		return &usageError{fmt.Errorf("erasing %s destroys all its data for good: pass --yes to confirm", app)}
	}
	// Open everything first, so that a dependency that is down stops us before anything is gone.
	env, err := openKeyEnv(ctx, cfg, c.now)
	if err != nil {
		return err
	}
	defer env.close()
	st, err := openStore(ctx, cfg, newLogger(stderr, cfg.Log.Level))
	if err != nil {
		return fmt.Errorf("%w (with the embedded store, stop veil before erasing)", err)
	}
	defer st.Close(context.Background())
	kc, err := connectKafka(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer kc.close()

	rec := EraseAudit{Action: "erase", App: app, Operator: operator()}
	// Crypto-shredding first: once the keys are gone nothing of app opens, whatever follows.
	if rec.Keys, err = env.kr.EraseApp(ctx, app); err != nil {
		return fmt.Errorf("destroying keys of %s: %w", app, err)
	}
	if rec.StoreRows, err = st.DeleteApp(ctx, app); err != nil {
		return fmt.Errorf("keys of %s destroyed, deleting its store rows: %w (run erase again)", app, err)
	}
	if rec.Blobs, err = eraseBlobs(ctx, cfg, envelope.NewSealer(env.kr), app); err != nil {
		return fmt.Errorf("keys and rows of %s deleted, deleting its blobs: %w (run erase again)", app, err)
	}
	rec.Time = c.now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding audit record: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kc.cl.ProduceSync(actx, &kgo.Record{Topic: broker.AuditTopic, Key: []byte(rec.Operator), Value: b}).FirstErr(); err != nil {
		fmt.Fprintf(stderr, "veil: erasure done but not audited; record it by hand: %s\n", b)
		return fmt.Errorf("writing audit record: %w", err)
	}
	fmt.Fprintf(stdout, "%s\n", b)
	fmt.Fprintf(stderr, "veil: remove %s from the configured apps, or new entries will be sealed under fresh keys\n", app)
	return nil
}

func operator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

// kafkaConn is a client to the configured brokers, or to the embedded broker: the one a running
// "veil run" serves, or one started here on the data directory when none is running.
type kafkaConn struct {
	brokers  []string
	opts     []kgo.Opt
	cl       *kgo.Client
	embedded *broker.Embedded
}

func connectKafka(ctx context.Context, cfg *config.Config, logOut io.Writer) (*kafkaConn, error) {
	kc := &kafkaConn{}
	if !cfg.EmbeddedBroker() {
		kc.brokers = cfg.Kafka.Brokers
		var err error
		if kc.opts, err = kafkaOpts(cfg.Kafka); err != nil {
			return nil, &configError{err}
		}
	} else if addr := cfg.Kafka.Embedded.Addr; reachable(addr) {
		kc.brokers = []string{addr}
	} else {
		ledgerTTLs, err := cfg.BrokerLedgers()
		if err != nil {
			return nil, &configError{err}
		}
		kms, keyID, err := openKMS(ctx, cfg, newLogger(logOut, "warn"))
		if err != nil {
			return nil, err
		}
		e, err := broker.StartEmbedded(ctx, broker.EmbeddedConfig{
			Addr: "127.0.0.1:0", DataDir: cfg.BrokerDir(),
			Partitions: cfg.Kafka.Embedded.Partitions, Logger: newLogger(logOut, "warn"), KMS: kms, KeyID: keyID, Ledgers: ledgerTTLs,
		})
		if err != nil {
			return nil, fmt.Errorf("starting embedded broker: %w", err)
		}
		kc.embedded, kc.brokers = e, e.Addrs()
		cl, err := kgo.NewClient(kgo.SeedBrokers(kc.brokers...))
		if err != nil {
			kc.close()
			return nil, fmt.Errorf("connecting to Kafka: %w", err)
		}
		err = broker.EnsureTopics(ctx, kadm.NewClient(cl), ledgerTTLs, cfg.Kafka.Embedded.Partitions)
		cl.Close()
		if err != nil {
			kc.close()
			return nil, fmt.Errorf("creating topics: %w", err)
		}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.brokers...)}, kc.opts...)...)
	if err != nil {
		kc.close()
		return nil, fmt.Errorf("connecting to Kafka: %w", err)
	}
	kc.cl = cl
	return kc, nil
}

func (kc *kafkaConn) close() {
	if kc.cl != nil {
		kc.cl.Close()
	}
	if kc.embedded != nil {
		_ = kc.embedded.Close(context.Background())
	}
}

func reachable(addr string) bool {
	if addr == "" || strings.HasSuffix(addr, ":0") {
		return false
	}
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// keyJanitorInterval is how often a running veil deletes keys past their destroy time: with key
// windows (keys.window) every minute, so a window key leaves the key store within a minute of its
// destroy time (Redis expires it by itself at that second).
func keyJanitorInterval(cfg *config.Config) time.Duration {
	if cfg.Keys.Window > 0 {
		return time.Minute
	}
	return 10 * time.Minute
}

// keyJanitor deletes every key past its destroy time at once and then every interval until ctx
// ends: the keyring already refuses such keys, and this makes them gone from the key store too.
func keyJanitor(ctx context.Context, kr *keyring.Keyring, log *slog.Logger, every time.Duration) {
	periodic.NowAndEvery(ctx, every, func(ctx context.Context) {
		if n, err := kr.DestroyExpired(ctx); err != nil && ctx.Err() == nil {
			log.Warn("destroying expired keys", "err", err)
		} else if n > 0 {
			log.Info("destroyed expired keys", "keys", n)
		}
	})
}
