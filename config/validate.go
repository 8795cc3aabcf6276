package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
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

	for id := range c.Apps {
		if strings.TrimSpace(id) == "" {
			bad("apps", "app id must not be empty")
		}
	}
	if _, err := c.LedgerTable(); err != nil {
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

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
