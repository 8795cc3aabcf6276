package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/ledgers"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "veil.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadValid loads the config at path with env and fails t unless it loads and validates.
func loadValid(t *testing.T, path string, env []string) *Config {
	t.Helper()
	c, err := Load(path, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return c
}

// field is one row of a table over a loaded config: its key, what the config holds, what it
// should hold.
type field struct {
	key       string
	got, want any
}

// checkFields runs one subtest per field; a failure names the field as prefix+key.
func checkFields(t *testing.T, prefix string, fields []field) {
	t.Helper()
	for _, f := range fields {
		t.Run(f.key, func(t *testing.T) {
			if !reflect.DeepEqual(f.got, f.want) {
				t.Errorf("%s%s = %v, want %v", prefix, f.key, f.got, f.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	checkFields(t, "default ", []field{
		{"kafka.brokers", len(c.Kafka.Brokers), 0},
		{"kafka.group", c.Kafka.Group, "veil"},
		{"keys.window", c.Keys.Window, 15 * time.Minute},
		{"kafka.transactional_id", c.Kafka.TransactionalID, "veil-" + host},
		{"kafka.embedded.addr", c.Kafka.Embedded.Addr, "127.0.0.1:9092"},
		{"kafka.embedded.partitions", c.Kafka.Embedded.Partitions, 3},
		{"kafka.retention_check", c.Kafka.RetentionCheck, "refuse"},
		{"kafka.linger", c.Kafka.Linger, time.Duration(0)},
		{"data_dir", c.DataDir, "./veil-data"},
		{"kms.provider", c.KMS.Provider, "local"},
		{"store.kind", c.Store.Kind, "badger"},
		{"limits.max_entry_bytes", c.Limits.MaxEntryBytes, 1 << 20},
		{"limits.max_depth", c.Limits.MaxDepth, 32},
		{"limits.future_skew", c.Limits.FutureSkew, 5 * time.Minute},
		{"listen.api", c.Listen.API, "127.0.0.1:8443"},
		{"listen.metrics", c.Listen.Metrics, "127.0.0.1:9090"},
		{"log.level", c.Log.Level, "info"},
		{"embedded broker", c.EmbeddedBroker(), true},
	})
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if s, ok := c.AppSettings("anything"); ok || s != ledgers.DefaultAppSettings {
		t.Errorf("AppSettings(unlisted) = %v, %v; want defaults, not accepted", s, ok)
	}
	ls, err := c.BrokerLedgers()
	if err != nil || len(ls) != 9 {
		t.Errorf("BrokerLedgers() = %d ledgers, %v; want 9", len(ls), err)
	}
}

const sampleYAML = `
kafka:
  brokers: [kafka-1:9092, kafka-2:9092]
  tls: {enabled: true, ca_file: /etc/ca.pem}
  sasl: {mechanism: scram-sha-512, username: veil, password: hunter2-secret}
  group: g1
  retention_check: warn
data_dir: /var/lib/veil
kms: {provider: aws, key_id: alias/veil, aws: {region: eu-west-1, endpoint: "http://localstack:4566"}}
store:
  kind: redis
  redis: {addr: "redis:6379", password: redis-secret, db: 2}
allow_unknown_apps: false
apps:
  app-42: {transcript: false}
  app-7: {}
ledgers:
  event: {ttl: 30s}
  http: {ttl: 10m}
limits: {max_entry_bytes: 2048, max_depth: 8, future_skew: 1m}
listen: {api: "0.0.0.0:8443", metrics: ""}
tls: {cert_file: /etc/veil/tls.crt, key_file: /etc/veil/tls.key}
log: {level: debug}
`

func TestLoadYAML(t *testing.T) {
	c := loadValid(t, writeFile(t, sampleYAML), nil)
	checkFields(t, "", []field{
		{"kafka.brokers", strings.Join(c.Kafka.Brokers, ","), "kafka-1:9092,kafka-2:9092"},
		{"kafka.tls.enabled", c.Kafka.TLS.Enabled, true},
		{"kafka.sasl.password", string(c.Kafka.SASL.Password), "hunter2-secret"},
		{"kafka.group", c.Kafka.Group, "g1"},
		{"kafka.transactional_id (default kept)", strings.HasPrefix(c.Kafka.TransactionalID, "veil-"), true},
		{"kms.aws.endpoint", c.KMS.AWS.Endpoint, "http://localstack:4566"},
		{"store.redis.db", c.Store.Redis.DB, 2},
		{"ledgers.event.ttl", c.Ledgers["event"].TTL, 30 * time.Second},
		{"limits.future_skew", c.Limits.FutureSkew, time.Minute},
		{"listen.metrics", c.Listen.Metrics, ""},
		{"app-42 settings", c.Apps["app-42"].Settings(), ledgers.AppSettings{Transcript: false, Transport: true}},
		{"app-7 settings", c.Apps["app-7"].Settings(), ledgers.DefaultAppSettings},
	})
	tab, err := c.LedgerTable()
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := tab.Lookup("http"); l.TTL != 10*time.Minute {
		t.Errorf("http TTL = %v, want 10m", l.TTL)
	}
	if _, ok := c.AppSettings("app-9"); ok {
		t.Error("AppSettings(unlisted app) accepted without allow_unknown_apps")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"unknown yaml key", "kafka: {brokerz: [a:1]}\n", nil, "brokerz"},
		{"bad yaml type", "limits: {max_depth: deep}\n", nil, "line 1"},
		{"unknown env", "", []string{"VEIL_KAFKA_BROKERZ=a:1"}, "VEIL_KAFKA_BROKERZ"},
		{"bad env duration", "", []string{"VEIL_LIMITS_FUTURE_SKEW=soon"}, "VEIL_LIMITS_FUTURE_SKEW"},
		{"bad env bool", "", []string{"VEIL_DEV_PLAIN_HTTP=maybe"}, "VEIL_DEV_PLAIN_HTTP"},
		{"bad env int", "", []string{"VEIL_STORE_REDIS_DB=two"}, "VEIL_STORE_REDIS_DB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = writeFile(t, tt.yaml)
			}
			_, err := Load(path, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("Load(missing file) succeeded")
	}
	// A secret in a malformed env value is never echoed.
	_, err := Load("", []string{"VEIL_STORE_REDIS_DB=s3cret-value"})
	if err == nil || strings.Contains(err.Error(), "s3cret-value") {
		t.Errorf("Load error %v leaks the value", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeFile(t, sampleYAML)
	env := []string{
		"PATH=/bin", // ignored
		"VEIL_KAFKA_BROKERS= a:9092 , b:9092 ",
		"VEIL_DATA_DIR=/data",
		"VEIL_KMS_PROVIDER=local",
		"VEIL_STORE_KIND=dynamodb",
		"VEIL_STORE_DYNAMODB_TABLE=veil-items",
		"VEIL_STORE_DYNAMODB_CREATE_TABLE=true",
		"VEIL_STORE_REDIS_ADDR=r:6380",
		"VEIL_KAFKA_SASL_PASSWORD=from-env",
		"VEIL_LEDGERS_BOT_TTL=5s",
		"VEIL_LEDGERS_EVENT_TTL=20s",
		"VEIL_APPS_APP7_TRANSPORT=false",
		"VEIL_ALLOW_UNKNOWN_APPS=true",
		"VEIL_LIMITS_FUTURE_SKEW=2m",
		"VEIL_CONFIG=/ignored/by/load",
	}
	c := loadValid(t, path, env)
	checkFields(t, "", []field{
		{"kafka.brokers", strings.Join(c.Kafka.Brokers, ","), "a:9092,b:9092"},
		{"data_dir", c.DataDir, "/data"},
		{"kms.provider", c.KMS.Provider, "local"},
		{"kms.key_id (from yaml)", c.KMS.KeyID, "alias/veil"},
		{"store.kind", c.Store.Kind, "dynamodb"},
		{"store.dynamodb.table", c.Store.DynamoDB.Table, "veil-items"},
		{"store.dynamodb.create_table", c.Store.DynamoDB.CreateTable, true},
		{"store.redis.addr", c.Store.Redis.Addr, "r:6380"},
		{"store.redis.db (from yaml)", c.Store.Redis.DB, 2},
		{"kafka.sasl.password", string(c.Kafka.SASL.Password), "from-env"},
		{"ledgers.bot.ttl", c.Ledgers["bot"].TTL, 5 * time.Second},
		{"ledgers.event.ttl", c.Ledgers["event"].TTL, 20 * time.Second},
		{"ledgers.http.ttl (from yaml)", c.Ledgers["http"].TTL, 10 * time.Minute},
		{"apps.app7.transport", c.Apps["app7"].Settings().Transport, false},
		{"apps.app-42 (from yaml)", c.Apps["app-42"].Settings().Transcript, false},
		{"allow_unknown_apps", c.AllowUnknownApps, true},
		{"limits.future_skew", c.Limits.FutureSkew, 2 * time.Minute},
	})
	if _, ok := c.AppSettings("unlisted"); !ok {
		t.Error("AppSettings(unlisted) refused with allow_unknown_apps")
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	path := writeFile(t, "data_dir: /from-file\nlog: {level: warn}\n")
	fs := flag.NewFlagSet("veil", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := Parse(fs, []string{"-data-dir", "/from-flag", "-brokers", "k1:9092,k2:9092", "-listen-api", "127.0.0.1:1"},
		[]string{"VEIL_CONFIG=" + path, "VEIL_DATA_DIR=/from-env", "VEIL_LOG_LEVEL=error"})
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, "", []field{
		{"data_dir (flag beats env and file)", c.DataDir, "/from-flag"},
		{"log.level (env beats file)", c.Log.Level, "error"},
		{"kafka.brokers", strings.Join(c.Kafka.Brokers, ","), "k1:9092,k2:9092"},
		{"listen.api", c.Listen.API, "127.0.0.1:1"},
	})
	// -config beats VEIL_CONFIG.
	other := writeFile(t, "data_dir: /other\n")
	fs = flag.NewFlagSet("veil", flag.ContinueOnError)
	c, err = Parse(fs, []string{"-config", other}, []string{"VEIL_CONFIG=" + path})
	if err != nil || c.DataDir != "/other" {
		t.Errorf("Parse(-config) data_dir = %v, %v; want /other", c, err)
	}
	fs = flag.NewFlagSet("veil", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := Parse(fs, []string{"-log-level", "loud"}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse(-log-level loud) = %v, want ErrInvalid", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		key  string // the key the error must name
	}{
		{"broker not host:port", func(c *Config) { c.Kafka.Brokers = []string{"kafka"} }, "kafka.brokers[0]"},
		{"tls files without enabled", func(c *Config) { c.Kafka.TLS.CAFile = "/ca" }, "kafka.tls.enabled"},
		{"tls cert without key", func(c *Config) { c.Kafka.TLS = KafkaTLS{Enabled: true, CertFile: "/c"} }, "kafka.tls.cert_file"},
		{"sasl bad mechanism", func(c *Config) { c.Kafka.SASL = SASL{Mechanism: "gssapi", Username: "u", Password: "p"} }, "kafka.sasl.mechanism"},
		{"sasl no password", func(c *Config) { c.Kafka.SASL = SASL{Mechanism: "plain", Username: "u"} }, "kafka.sasl.password"},
		{"sasl user without mechanism", func(c *Config) { c.Kafka.SASL.Username = "u" }, "kafka.sasl.mechanism"},
		{"empty group", func(c *Config) { c.Kafka.Group = "" }, "kafka.group"},
		{"empty transactional id", func(c *Config) { c.Kafka.TransactionalID = "" }, "kafka.transactional_id"},
		{"embedded addr", func(c *Config) { c.Kafka.Embedded.Addr = "9092" }, "kafka.embedded.addr"},
		{"embedded partitions", func(c *Config) { c.Kafka.Embedded.Partitions = 0 }, "kafka.embedded.partitions"},
		{"retention check", func(c *Config) { c.Kafka.RetentionCheck = "ignore" }, "kafka.retention_check"},
		{"negative linger", func(c *Config) { c.Kafka.Linger = -time.Millisecond }, "kafka.linger"},
		{"linger over a second", func(c *Config) { c.Kafka.Linger = 2 * time.Second }, "kafka.linger"},
		{"data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"kms provider", func(c *Config) { c.KMS.Provider = "vault" }, "kms.provider"},
		{"aws without key", func(c *Config) { c.KMS.Provider = "aws" }, "kms.key_id"},
		{"store kind", func(c *Config) { c.Store.Kind = "postgres" }, "store.kind"},
		{"redis without addr", func(c *Config) { c.Store.Kind = "redis" }, "store.redis.addr"},
		{"dynamodb without table", func(c *Config) { c.Store.Kind = "dynamodb" }, "store.dynamodb.table"},
		{"key table is the store's", func(c *Config) {
			c.Store.Kind, c.Store.DynamoDB.Table, c.Keys.DynamoDBTable = "dynamodb", "veil", "veil"
		}, "keys.dynamodb_table"},
		{"keys.store unknown", func(c *Config) { c.Keys.Store = "etcd" }, "keys.store"},
		{"keys on redis without addr", func(c *Config) { c.Keys.Store = "redis" }, "store.redis.addr"},
		{"keys.poll_interval too long", func(c *Config) { c.Keys.PollInterval = time.Minute }, "keys.poll_interval"},
		{"keys.window not whole minutes", func(c *Config) { c.Keys.Window = 90 * time.Second }, "keys.window"},
		{"keys.window too short", func(c *Config) { c.Keys.Window = 30 * time.Second }, "keys.window"},
		{"ledger ttl longer", func(c *Config) { c.Ledgers = map[string]Ledger{"bot": {TTL: 2 * time.Hour}} }, "ledgers"},
		{"unknown ledger", func(c *Config) { c.Ledgers = map[string]Ledger{"evnt": {TTL: time.Second}} }, "ledgers.evnt"},
		{"sub-second ttl", func(c *Config) { c.Ledgers = map[string]Ledger{"bot": {TTL: time.Millisecond}} }, "ledgers"},
		{"max entry bytes", func(c *Config) { c.Limits.MaxEntryBytes = 0 }, "limits.max_entry_bytes"},
		{"max depth", func(c *Config) { c.Limits.MaxDepth = 0 }, "limits.max_depth"},
		{"future skew", func(c *Config) { c.Limits.FutureSkew = -time.Second }, "limits.future_skew"},
		{"listen api", func(c *Config) { c.Listen.API = "" }, "listen.api"},
		{"listen metrics", func(c *Config) { c.Listen.Metrics = "nope" }, "listen.metrics"},
		{"tls half", func(c *Config) { c.TLS.KeyFile = "/k" }, "tls.cert_file"},
		{"plain http off loopback", func(c *Config) { c.Dev.PlainHTTP = true; c.Listen.API = "0.0.0.0:8080" }, "dev.plain_http"},
		{"log level", func(c *Config) { c.Log.Level = "trace" }, "log.level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mod(c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.key+":") {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.key)
			}
		})
	}
	c := Default()
	c.Dev.PlainHTTP = true
	c.Listen.API = "localhost:8080"
	if err := c.Validate(); err != nil {
		t.Errorf("plain HTTP on localhost: Validate() = %v, want nil", err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	c, err := Load(writeFile(t, sampleYAML), []string{"VEIL_STORE_REDIS_PASSWORD=redis-secret"})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("config", "config", c, "pw", c.Kafka.SASL.Password)
	outputs := map[string]string{
		"String":  c.String(),
		"%v":      fmt.Sprintf("%v", c),
		"%+v":     fmt.Sprintf("%+v", *c),
		"%#v":     fmt.Sprintf("%#v", c.Kafka.SASL),
		"slog":    logBuf.String(),
		"secret":  c.Store.Redis.Password.String(),
		"err":     fmt.Sprint(c.Validate()),
		"sprintf": fmt.Sprintf("%s %v", c.Kafka.SASL.Password, c.Store.Redis.Password),
	}
	for name, out := range outputs {
		for _, secret := range []string{"hunter2-secret", "redis-secret"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output contains a secret: %s", name, out)
			}
		}
	}
	if !strings.Contains(c.String(), redacted) || !strings.Contains(c.String(), "scram-sha-512") {
		t.Errorf("String() = %s, want the config with secrets redacted", c.String())
	}
	if Secret("").String() != "" {
		t.Error(`Secret("").String() != ""`)
	}
}

func TestEnvNames(t *testing.T) {
	tests := []struct{ path, want string }{
		{"kafka.brokers", "VEIL_KAFKA_BROKERS"},
		{"data_dir", "VEIL_DATA_DIR"},
		{"kafka.sasl.password", "VEIL_KAFKA_SASL_PASSWORD"},
		{"store.redis.addr", "VEIL_STORE_REDIS_ADDR"},
	}
	for _, tt := range tests {
		if got := EnvName(tt.path); got != tt.want {
			t.Errorf("EnvName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	seen := make(map[string]string)
	for _, k := range Keys() {
		if prev, dup := seen[k.Env]; dup {
			t.Errorf("keys %s and %s share env name %s", prev, k.Path, k.Env)
		}
		seen[k.Env] = k.Path
		if !strings.Contains(k.Path, "<") && !KnownEnv(k.Env) {
			t.Errorf("KnownEnv(%s) = false for key %s", k.Env, k.Path)
		}
	}
	if len(seen) < 40 {
		t.Errorf("Keys() = %d keys, want every key (>= 40)", len(seen))
	}
}

// TestDocsCoverEveryKey keeps docs/config.md complete: every key and env name appears in it.
func TestDocsCoverEveryKey(t *testing.T) {
	b, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, k := range Keys() {
		if !strings.Contains(doc, "`"+k.Path+"`") {
			t.Errorf("docs/config.md does not document key `%s`", k.Path)
		}
		if !strings.Contains(doc, "`"+k.Env+"`") {
			t.Errorf("docs/config.md does not name env `%s`", k.Env)
		}
	}
}

func TestKeyStoreKind(t *testing.T) {
	tests := []struct {
		name, store, keys, want, table string
	}{
		{"badger defaults to file", "badger", "", "file", ""},
		{"redis defaults to redis", "redis", "", "redis", ""},
		{"dynamodb defaults to dynamodb", "dynamodb", "", "dynamodb", "veil-keys"},
		{"explicit file with redis", "redis", "file", "file", ""},
		{"explicit redis with badger", "badger", "redis", "redis", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Store.Kind, c.Keys.Store = tt.store, tt.keys
			if tt.store == "dynamodb" {
				c.Store.DynamoDB.Table = "veil"
			}
			if got := c.KeyStoreKind(); got != tt.want {
				t.Errorf("KeyStoreKind() = %q, want %q", got, tt.want)
			}
			if got := c.KeyTable(); got != tt.table {
				t.Errorf("KeyTable() = %q, want %q", got, tt.table)
			}
		})
	}
}
