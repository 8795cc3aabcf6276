package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/names"
)

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid config")

// Validate checks the whole configuration and returns every problem found, each naming its key,
// joined; each wraps ErrInvalid. Messages never contain secret values.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), ErrInvalid))
	}
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	hostPort := func(key, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "%q is not host:port", v)
		}
	}

	k := c.Kafka
	for i, b := range k.Brokers {
		hostPort(fmt.Sprintf("kafka.brokers[%d]", i), b, false)
	}
	if k.TLS.CertFile != "" || k.TLS.KeyFile != "" || k.TLS.CAFile != "" || k.TLS.InsecureSkipVerify {
		if !k.TLS.Enabled {
			bad("kafka.tls.enabled", "must be true when other kafka.tls keys are set")
		}
	}
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		bad("kafka.tls.cert_file", "cert_file and key_file go together")
	}
	if k.SASL.Mechanism != "" {
		oneOf("kafka.sasl.mechanism", k.SASL.Mechanism, "plain", "scram-sha-256", "scram-sha-512")
		if k.SASL.Username == "" {
			bad("kafka.sasl.username", "required with kafka.sasl.mechanism")
		}
		if k.SASL.Password == "" {
			bad("kafka.sasl.password", "required with kafka.sasl.mechanism")
		}
	} else if k.SASL.Username != "" || k.SASL.Password != "" {
		bad("kafka.sasl.mechanism", "required with kafka.sasl.username or password")
	}
	if k.Group == "" {
		bad("kafka.group", "must not be empty")
	}
	if k.TransactionalID == "" {
		bad("kafka.transactional_id", "must not be empty")
	}
	hostPort("kafka.embedded.addr", k.Embedded.Addr, false)
	if k.Embedded.Partitions < 1 {
		bad("kafka.embedded.partitions", "must be at least 1")
	}
	oneOf("kafka.retention_check", k.RetentionCheck, "refuse", "warn")
	if k.Linger < 0 || k.Linger > time.Second {
		bad("kafka.linger", "must be between 0 and 1s")
	}

	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}

	oneOf("kms.provider", c.KMS.Provider, "local", "aws")
	if c.KMS.Provider == "aws" && c.KMS.KeyID == "" {
		bad("kms.key_id", "required with kms.provider aws")
	}

	if c.Analytics.FlushInterval <= 0 {
		bad("analytics.flush_interval", "must be positive")
	}
	if c.Analytics.MaxRows <= 0 {
		bad("analytics.max_rows", "must be positive")
	}
	if c.Blob.LinkTTL <= 0 || c.Blob.LinkTTL > time.Hour {
		bad("blob.link_ttl", "must be between 1s and 60m")
	}
	oneOf("store.kind", c.Store.Kind, "badger", "redis", "dynamodb")
	switch c.Store.Kind {
	case "redis":
		hostPort("store.redis.addr", c.Store.Redis.Addr, false)
		if c.Store.Redis.DB < 0 {
			bad("store.redis.db", "must not be negative")
		}
	case "dynamodb":
		if c.Store.DynamoDB.Table == "" {
			bad("store.dynamodb.table", "required with store.kind dynamodb")
		}
	}

	oneOf("keys.store", c.Keys.Store, "", "file", "redis", "dynamodb")
	switch c.KeyStoreKind() {
	case "redis":
		if c.Store.Kind != "redis" {
			hostPort("store.redis.addr", c.Store.Redis.Addr, false)
		}
	case "dynamodb":
		if c.KeyTable() == "" {
			bad("keys.dynamodb_table", "required with keys.store dynamodb unless store.dynamodb.table is set")
		}
		if c.KeyTable() == c.Store.DynamoDB.Table {
			// Erasing an app deletes its store rows by partition: it would delete the key tombstones.
			bad("keys.dynamodb_table", "must not be the store's table (store.dynamodb.table)")
		}
	}
	if w := c.Keys.Window; w != 0 && (w < time.Minute || w > 24*time.Hour || w%time.Minute != 0) {
		bad("keys.window", "must be 0 (one key per 24 h period) or whole minutes between 1m and 24h")
	}
	if c.Keys.PollInterval < 0 || c.Keys.PollInterval > 10*time.Second {
		bad("keys.poll_interval", "must be between 0 (default 2s) and 10s")
	}

	for _, id := range slices.Sorted(maps.Keys(c.Apps)) {
		if err := names.Check(id); err != nil {
			bad("apps", "app id %q: %v", id, err)
		}
	}
	unknownLedgers := false
	for _, name := range slices.Sorted(maps.Keys(c.Ledgers)) {
		if _, ok := ledgers.Lookup(name); !ok {
			bad("ledgers."+name, "unknown ledger; the ledgers are %s", ledgerNames())
			unknownLedgers = true
		}
	}
	if _, err := c.LedgerTable(); err != nil && !unknownLedgers {
		errs = append(errs, fmt.Errorf("ledgers: %w: %w", err, ErrInvalid))
	}

	if c.Limits.MaxEntryBytes < 1 || c.Limits.MaxEntryBytes > 64<<20 {
		bad("limits.max_entry_bytes", "must be between 1 and 67108864")
	}
	if c.Limits.MaxDepth < 1 || c.Limits.MaxDepth > 1000 {
		bad("limits.max_depth", "must be between 1 and 1000")
	}
	if c.Limits.FutureSkew < 0 {
		bad("limits.future_skew", "must not be negative")
	}

	hostPort("listen.api", c.Listen.API, false)
	if c.Reveal.RatePerSecond < 1 {
		bad("reveal.rate_per_second", "must be at least 1")
	}
	if c.Reveal.Burst < 1 {
		bad("reveal.burst", "must be at least 1")
	}
	errs = append(errs, c.validateIntegrations()...)
	hostPort("listen.metrics", c.Listen.Metrics, true)
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.cert_file", "cert_file and key_file go together")
	}
	if c.Dev.PlainHTTP {
		if c.TLS.CertFile != "" {
			bad("dev.plain_http", "conflicts with tls.cert_file")
		}
		if host, _, err := net.SplitHostPort(c.Listen.API); err == nil && !loopback(host) {
			bad("dev.plain_http", "plain HTTP is allowed only on a loopback listen.api, not %q", c.Listen.API)
		}
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	return errors.Join(errs...)
}

// ledgerNames lists the ledgers, for error messages.
func ledgerNames() string {
	var out []string
	for _, l := range ledgers.All() {
		out = append(out, l.Name)
	}
	return strings.Join(out, ", ")
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateIntegrations checks integrations.<name>.*: the same rules egress.New applies, here with
// the key at fault named.
func (c *Config) validateIntegrations() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), ErrInvalid))
	}
	topics := make(map[string]string, len(c.Integrations))
	for _, name := range slices.Sorted(maps.Keys(c.Integrations)) {
		in, key := c.Integrations[name], "integrations."+name
		if err := names.Check(name); err != nil {
			bad("integrations", "name %q: %v", name, err)
		}
		if !slices.Contains([]string{"messaging", "support", "other"}, in.Kind) {
			bad(key+".kind", "%q is not one of messaging, support, other", in.Kind)
		}
		if in.Override && in.Kind != "other" {
			bad(key+".override", "applies to kind other only")
		}
		for _, a := range in.Apps {
			if err := names.Check(a); err != nil {
				bad(key+".apps", "app id %q: %v", a, err)
			}
		}
		if len(in.Ledgers) == 0 {
			bad(key+".ledgers", "must list at least one ledger")
		}
		for _, l := range in.Ledgers {
			if _, ok := ledgers.Lookup(l); !ok {
				bad(key+".ledgers", "unknown ledger %q; the ledgers are %s", l, ledgerNames())
			}
		}
		if in.Delivery == "webhook" {
			errs = append(errs, in.webhookProblems(key)...)
			continue
		}
		if in.Delivery != "" && in.Delivery != "topic" {
			bad(key+".delivery", "%q is not one of topic, webhook", in.Delivery)
		}
		if in.URL != "" || in.Secret != "" || in.CAFile != "" {
			bad(key+".url", "url, secret and ca_file apply to delivery: webhook only")
		}
		switch msg := topicProblem(in.Topic); {
		case msg != "":
			bad(key+".topic", "%s", msg)
		case topics[in.Topic] != "":
			bad(key+".topic", "%q is also the topic of integration %q", in.Topic, topics[in.Topic])
		default:
			topics[in.Topic] = name
		}
	}
	return errs
}

// webhookProblems checks a webhook integration (the rules of egress.Integration.Validate and
// egress.New, with the key named): an https URL with a host and no credentials, a secret of at
// least 16 bytes, no topic.
func (in Integration) webhookProblems(key string) []error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", k, fmt.Sprintf(format, args...), ErrInvalid))
	}
	u, err := url.Parse(in.URL)
	switch {
	case in.URL == "":
		bad(key+".url", "required with delivery: webhook")
	case err != nil || u.Scheme != "https" || u.Hostname() == "":
		bad(key+".url", "must be an https:// URL with a host (TLS 1.2 or newer)")
	case u.User != nil || u.Fragment != "":
		bad(key+".url", "must carry no user info or fragment; the signature authenticates veil")
	}
	if len(in.Secret) < 16 {
		bad(key+".secret", "required with delivery: webhook, at least 16 bytes (set it with %s)", EnvName(key+".secret"))
	}
	if in.Topic != "" {
		bad(key+".topic", "a webhook integration has no topic")
	}
	return errs
}

const topicChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."

// topicProblem describes what is wrong with an integration topic, or returns "". veil's own
// topics are refused: an integration writing there could put plaintext where only sealed or
// redacted values belong.
func topicProblem(t string) string {
	if t == "" {
		return "required"
	}
	if len(t) > 249 || t == "." || t == ".." || strings.Trim(t, topicChars) != "" {
		return "must be 1-249 letters, digits, '-', '_' or '.'"
	}
	for _, p := range []string{broker.RawPrefix, broker.EncryptedPrefix, broker.RedactedPrefix, "veil.", "__"} {
		if strings.HasPrefix(t, p) {
			return fmt.Sprintf("%q topics are veil's own", p+"*")
		}
	}
	return ""
}
