// Package config loads veil's configuration: defaults, then one YAML file, then VEIL_…
// environment variables, then command-line flags, each overriding the one before. Every YAML key
// has an environment name derived by one rule (EnvName): upper-case the dotted path, replace dots
// by underscores and prefix VEIL_, so kafka.sasl.password is VEIL_KAFKA_SASL_PASSWORD.
//
// Guarantees: unknown YAML keys and unknown VEIL_ variables are errors (a typo never silently
// leaves a default in place); Validate names the offending key in every error; secrets are held in
// Secret, which never prints its contents, so a Config can be logged.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
)

// Config is the whole configuration. docs/config.md is its reference.
type Config struct {
	Kafka            Kafka                  `yaml:"kafka"`
	DataDir          string                 `yaml:"data_dir"`
	KMS              KMS                    `yaml:"kms"`
	Store            Store                  `yaml:"store"`
	Keys             KeyStore               `yaml:"keys"`
	AllowUnknownApps bool                   `yaml:"allow_unknown_apps"`
	Apps             map[string]App         `yaml:"apps"`
	Ledgers          map[string]Ledger      `yaml:"ledgers"`
	Limits           Limits                 `yaml:"limits"`
	Analytics        Analytics              `yaml:"analytics"`
	Blob             Blob                   `yaml:"blob"`
	Listen           Listen                 `yaml:"listen"`
	Reveal           Reveal                 `yaml:"reveal"`
	Integrations     map[string]Integration `yaml:"integrations"`
	TLS              TLS                    `yaml:"tls"`
	Dev              Dev                    `yaml:"dev"`
	Log              Log                    `yaml:"log"`

	flagFile string                // -config, recorded by BindFlags
	flagSets []func(*Config) error // other flags, recorded by BindFlags
}

// Kafka is the connection to the brokers. No brokers means the embedded broker.
type Kafka struct {
	Brokers         []string `yaml:"brokers"`
	TLS             KafkaTLS `yaml:"tls"`
	SASL            SASL     `yaml:"sasl"`
	Group           string   `yaml:"group"`
	TransactionalID string   `yaml:"transactional_id"`
	Embedded        Embedded `yaml:"embedded"`
	RetentionCheck  string   `yaml:"retention_check"`
	// Linger is how long the pipeline's producer waits to fill a batch before sending it; 0
	// (the default) sends at once. Each transaction waits for its records to be acknowledged
	// before it commits, so a linger is paid on every transaction (see docs/performance.md).
	Linger time.Duration `yaml:"linger"`
}

// KafkaTLS is TLS to the brokers.
type KafkaTLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL is SASL authentication to the brokers.
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  Secret `yaml:"password"`
}

// Embedded configures the embedded broker used when Kafka.Brokers is empty.
type Embedded struct {
	Addr       string `yaml:"addr"`
	Partitions int    `yaml:"partitions"`
}

// KMS selects the key-encryption provider.
type KMS struct {
	Provider string   `yaml:"provider"`
	KeyID    string   `yaml:"key_id"`
	AWS      AWS      `yaml:"aws"`
	Local    KMSLocal `yaml:"local"`
}

// KMSLocal configures the local root key provider.
type KMSLocal struct {
	// RootKeyPath is the root key file; empty means RootKeyPath's default, outside data_dir.
	RootKeyPath string `yaml:"root_key_path"`
}

// NonLoopbackListeners returns the listeners that accept connections from other hosts, as
// "key=address": the reveal API (when enabled), the metrics server and the embedded broker.
func (c *Config) NonLoopbackListeners() []string {
	var out []string
	check := func(key, addr string) {
		if host, _, err := net.SplitHostPort(addr); err != nil || !loopback(host) {
			out = append(out, key+"="+addr)
		}
	}
	if c.Dev.PlainHTTP || (c.TLS.CertFile != "" && c.TLS.KeyFile != "") {
		check("listen.api", c.Listen.API)
	}
	if c.Listen.Metrics != "" {
		check("listen.metrics", c.Listen.Metrics)
	}
	if c.EmbeddedBroker() {
		check("kafka.embedded.addr", c.Kafka.Embedded.Addr)
	}
	return out
}

// RootKeyPath returns the local root key file: kms.local.root_key_path, or by default
// <data_dir>.kms/root.key, a sibling of the data directory, so that a copy of the data directory
// alone (wrapped keys, store, kept topics) opens nothing.
func (c *Config) RootKeyPath() string {
	if c.KMS.Local.RootKeyPath != "" {
		return c.KMS.Local.RootKeyPath
	}
	d := filepath.Clean(c.DataDir)
	if a, err := filepath.Abs(d); err == nil {
		d = a
	}
	return filepath.Join(d+".kms", "root.key")
}

// AWS locates an AWS service (or a compatible one, such as LocalStack, through Endpoint).
type AWS struct {
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
}

// Store selects the encrypted store.
type Store struct {
	Kind     string   `yaml:"kind"`
	Redis    Redis    `yaml:"redis"`
	DynamoDB DynamoDB `yaml:"dynamodb"`
}

// KeyStore selects where wrapped app KEKs live; see KeyStoreKind.
type KeyStore struct {
	Store         string        `yaml:"store"`          // file, redis or dynamodb; empty: the backend of store.kind
	RedisPrefix   string        `yaml:"redis_prefix"`   // empty: veil:keys:
	DynamoDBTable string        `yaml:"dynamodb_table"` // empty: <store.dynamodb.table>-keys
	PollInterval  time.Duration `yaml:"poll_interval"`  // 0: 2s
	Window        time.Duration `yaml:"window"`         // default 15m; 0: one key per app per 24 h period
}

// KeyStoreKind returns the key store in use: keys.store, or else the backend of store.kind
// (badger → file, redis → redis, dynamodb → dynamodb).
func (c *Config) KeyStoreKind() string {
	if c.Keys.Store != "" {
		return c.Keys.Store
	}
	switch c.Store.Kind {
	case "redis", "dynamodb":
		return c.Store.Kind
	}
	return "file"
}

// KeyTable returns the DynamoDB table of the key store: keys.dynamodb_table, or else
// <store.dynamodb.table>-keys.
func (c *Config) KeyTable() string {
	if c.Keys.DynamoDBTable != "" {
		return c.Keys.DynamoDBTable
	}
	if c.Store.DynamoDB.Table == "" {
		return ""
	}
	return c.Store.DynamoDB.Table + "-keys"
}

// Redis is the Redis store.
type Redis struct {
	Addr     string `yaml:"addr"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	DB       int    `yaml:"db"`
	TLS      bool   `yaml:"tls"`
}

// DynamoDB is the DynamoDB store.
type DynamoDB struct {
	Table       string `yaml:"table"`
	Region      string `yaml:"region"`
	Endpoint    string `yaml:"endpoint"`
	CreateTable bool   `yaml:"create_table"`
}

// App holds one app's switches; nil means the default (true).
type App struct {
	Transcript *bool `yaml:"transcript"`
	Transport  *bool `yaml:"transport"`
}

// Settings returns the app's settings with defaults applied.
func (a App) Settings() ledgers.AppSettings {
	s := ledgers.DefaultAppSettings
	if a.Transcript != nil {
		s.Transcript = *a.Transcript
	}
	if a.Transport != nil {
		s.Transport = *a.Transport
	}
	return s
}

// Ledger overrides one ledger's TTL (shorter only).
type Ledger struct {
	TTL time.Duration `yaml:"ttl"`
}

// Limits bound the input veil accepts; entries beyond them are dead-lettered.
type Limits struct {
	MaxEntryBytes int           `yaml:"max_entry_bytes"`
	MaxDepth      int           `yaml:"max_depth"`
	FutureSkew    time.Duration `yaml:"future_skew"`
}

// Analytics is the Parquet sink of redacted rows: a local directory, or S3 when s3.bucket is set.
type Analytics struct {
	Enabled       bool          `yaml:"enabled"`
	Dir           string        `yaml:"dir"`
	S3            S3            `yaml:"s3"`
	Group         string        `yaml:"group"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	MaxRows       int           `yaml:"max_rows"`
}

// Blob is the store of encrypted media: a local directory, or S3 when s3.bucket is set.
type Blob struct {
	Dir        string        `yaml:"dir"`
	StagingDir string        `yaml:"staging_dir"`
	S3         S3            `yaml:"s3"`
	LinkTTL    time.Duration `yaml:"link_ttl"`
}

// S3 locates a bucket on S3 or an S3-compatible server.
type S3 struct {
	Bucket    string `yaml:"bucket"`
	Prefix    string `yaml:"prefix"`
	Region    string `yaml:"region"`
	Endpoint  string `yaml:"endpoint"`
	PathStyle bool   `yaml:"path_style"`
}

// Listen holds the listen addresses; an empty Metrics disables the operations server.
type Listen struct {
	API     string `yaml:"api"`
	Metrics string `yaml:"metrics"`
}

// Reveal configures the reveal API's callers: the principals file and per-principal rate limits.
type Reveal struct {
	PrincipalsFile string `yaml:"principals_file"` // empty: <data_dir>/principals.yaml
	RatePerSecond  int    `yaml:"rate_per_second"`
	Burst          int    `yaml:"burst"`
}

// Integration is one consumer of entries outside veil, keyed by its name: veil run delivers the
// entries of its ledgers to its topic, decrypted when it may process sensitive data (kind
// messaging or support, or other with override) and redacted otherwise.
type Integration struct {
	Kind     string   `yaml:"kind"`
	Override bool     `yaml:"override"`
	Apps     []string `yaml:"apps"`
	Ledgers  []string `yaml:"ledgers"`
	Topic    string   `yaml:"topic"`
	// Delivery webhook POSTs entries to URL (https) instead of producing them to Topic.
	Delivery string `yaml:"delivery"`
	URL      string `yaml:"url"`
	Secret   Secret `yaml:"secret"`  // HMAC-SHA256 key of the webhook signature
	CAFile   string `yaml:"ca_file"` // PEM roots that verify the webhook; empty: the system's
}

// TLS is the reveal API's certificate.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Dev holds development switches.
type Dev struct {
	PlainHTTP bool `yaml:"plain_http"`
}

// Log configures logging.
type Log struct {
	Level string `yaml:"level"`
}

// Secret is a string that never prints: String, LogValue, and YAML and JSON encodings show
// "[redacted]" (or "" when empty). Use string(s) where the value is needed.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText implements encoding.TextMarshaler (used by encoding/json).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Default returns the configuration with every default applied.
func Default() *Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "local"
	}
	return &Config{
		Kafka: Kafka{
			Group:           "veil",
			TransactionalID: "veil-" + host,
			Embedded:        Embedded{Addr: "127.0.0.1:9092", Partitions: 3},
			RetentionCheck:  "refuse",
		},
		DataDir:   "./veil-data",
		KMS:       KMS{Provider: "local"},
		Store:     Store{Kind: "badger"},
		Keys:      KeyStore{Window: 15 * time.Minute},
		Limits:    Limits{MaxEntryBytes: 1 << 20, MaxDepth: 32, FutureSkew: 5 * time.Minute},
		Analytics: Analytics{Enabled: true, Group: "veil-analytics", FlushInterval: 60 * time.Second, MaxRows: 50_000},
		Blob:      Blob{LinkTTL: 15 * time.Minute},
		Listen:    Listen{API: "127.0.0.1:8443", Metrics: "127.0.0.1:9090"},
		Reveal:    Reveal{RatePerSecond: 50, Burst: 100},
		Log:       Log{Level: "info"},
	}
}

// Load returns the defaults overridden by the YAML file at path (none when path is empty) and
// then by the VEIL_… variables in env (os.Environ() form; other variables are ignored). It does
// not validate: call Validate after applying flags.
func Load(path string, env []string) (*Config, error) {
	c := Default()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("loading config: %w", err)
		}
		defer f.Close()
		var doc yaml.Node
		if err := yaml.NewDecoder(f).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("loading config %s: %w", path, err)
		}
		// Unknown keys and mistyped values, named by key path (kafka.brokrs), not by Go type.
		if err := checkYAML(&doc); err != nil {
			return nil, fmt.Errorf("loading config %s: %w", path, err)
		}
		if doc.Kind != 0 {
			if err := doc.Decode(c); err != nil {
				return nil, fmt.Errorf("loading config %s: %w", path, err)
			}
		}
	}
	if err := c.applyEnv(env); err != nil {
		return nil, fmt.Errorf("loading config from environment: %w", err)
	}
	return c, nil
}

// String renders the configuration as YAML with secrets redacted.
func (c *Config) String() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return "config: " + err.Error()
	}
	return string(b)
}

// LogValue implements slog.LogValuer: the YAML rendering, secrets redacted.
func (c *Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// EmbeddedBroker reports whether veil runs its own broker (no kafka.brokers).
func (c *Config) EmbeddedBroker() bool { return len(c.Kafka.Brokers) == 0 }

// LedgerTable returns the ledger table with the configured TTL overrides.
func (c *Config) LedgerTable() (*ledgers.Table, error) {
	ov := make(map[string]time.Duration, len(c.Ledgers))
	for name, l := range c.Ledgers {
		ov[name] = l.TTL
	}
	return ledgers.NewTable(ov)
}

// BrokerLedgers returns each ledger with its effective TTL, for broker.EnsureTopics and
// broker.CheckRetention.
func (c *Config) BrokerLedgers() ([]broker.LedgerTTL, error) {
	t, err := c.LedgerTable()
	if err != nil {
		return nil, err
	}
	var out []broker.LedgerTTL
	for _, l := range t.All() {
		out = append(out, broker.LedgerTTL{Name: l.Name, TTL: l.TTL})
	}
	return out, nil
}

// AppSettings returns the settings of app and whether entries of app are accepted at all: a listed
// app always is, an unlisted one only with allow_unknown_apps (and then gets the defaults).
func (c *Config) AppSettings(app string) (ledgers.AppSettings, bool) {
	if a, ok := c.Apps[app]; ok {
		return a.Settings(), true
	}
	return ledgers.DefaultAppSettings, c.AllowUnknownApps
}

// SplitList splits a comma-separated list, trimming spaces and dropping empty items. It is how
// every list is read: in the configuration's VEIL_ variables and in veil's flags.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
