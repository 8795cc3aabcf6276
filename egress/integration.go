package egress

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/names"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/store"
)

// Integration is one consumer of entries outside veil.
type Integration struct {
	Name     string
	Kind     reveal.Kind // messaging, support or other; never admin
	Override bool        // lets an integration of kind other decrypt
	Apps     []string    // apps whose entries are delivered; empty: every app
	Ledgers  []string    // source ledgers (encrypted.<ledger>)
	Topic    string      // where entries are delivered (Delivery topic)
	// Delivery is how entries reach the integration: DeliveryTopic (default, "") to Topic, or
	// DeliveryWebhook: POSTed to URL over HTTPS, so decrypted entries never rest in Kafka (see
	// Config.Webhook).
	Delivery string
	URL      string // the webhook's https:// URL (Delivery webhook)
}

// Deliveries.
const (
	DeliveryTopic   = "topic"
	DeliveryWebhook = "webhook"
)

// ErrInvalidIntegration is wrapped by every error Validate returns.
var ErrInvalidIntegration = errors.New("invalid integration")

// reservedPrefixes are veil's own topics: an integration writing there could put plaintext where
// only sealed or redacted values belong.
var reservedPrefixes = []string{broker.RawPrefix, broker.EncryptedPrefix, broker.RedactedPrefix, "veil.", "__"}

// Validate checks in, naming the field at fault. Ledgers are checked against the default table.
func (in *Integration) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("integration %q: %s: %w", in.Name, fmt.Sprintf(format, args...), ErrInvalidIntegration)
	}
	if !validName(in.Name) {
		return bad("name must be 1-64 letters, digits, '-', '_' or '.'")
	}
	switch in.Kind {
	case reveal.KindMessaging, reveal.KindSupport, reveal.KindOther:
	default:
		return bad("kind must be messaging, support or other")
	}
	if in.Override && in.Kind != reveal.KindOther {
		return bad("override applies to kind other only")
	}
	for _, a := range in.Apps {
		if err := store.ValidateApp(a); err != nil {
			return bad("apps: %v", err)
		}
	}
	if len(in.Ledgers) == 0 {
		return bad("ledgers must list at least one ledger")
	}
	for _, l := range in.Ledgers {
		if _, ok := ledgers.Lookup(l); !ok {
			return bad("ledgers: unknown ledger %q", l)
		}
	}
	switch in.Delivery {
	case "", DeliveryTopic:
		if err := ValidateTopic(in.Topic); err != nil {
			return bad("topic: %v", err)
		}
		if in.URL != "" {
			return bad("url applies to delivery webhook only")
		}
	case DeliveryWebhook:
		if in.Topic != "" {
			return bad("topic applies to delivery topic only: a webhook integration has no topic")
		}
		if err := ValidateWebhookURL(in.URL); err != nil {
			return bad("url: %v", err)
		}
	default:
		return bad("delivery must be topic or webhook")
	}
	return nil
}

// ValidateWebhookURL checks that u is an absolute https:// URL with a host and no user info
// (credentials in a URL end up in logs and proxies; use the secret instead).
func ValidateWebhookURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case u == "":
		return errors.New("required")
	case err != nil:
		return errors.New("is not a URL")
	case p.Scheme != "https":
		return errors.New("must be https:// (TLS 1.2 or newer)")
	case p.Host == "" || p.Hostname() == "":
		return errors.New("has no host")
	case p.User != nil:
		return errors.New("must not carry user info; the signature authenticates veil")
	case p.Fragment != "":
		return errors.New("must not carry a fragment")
	}
	return nil
}

// Webhook reports whether entries are POSTed to the integration rather than produced to a topic.
func (in *Integration) Webhook() bool { return in.Delivery == DeliveryWebhook }

// ValidateTopic checks that topic is a legal Kafka topic name outside veil's own topics.
func ValidateTopic(topic string) error {
	if topic == "" || len(topic) > 249 || topic == "." || topic == ".." {
		return errors.New("must be 1-249 characters")
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("may hold only letters, digits, '-', '_' and '.'")
		}
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(topic, p) {
			return fmt.Errorf("%q topics are veil's own", p+"*")
		}
	}
	return nil
}

// Decrypts reports whether the integration may process sensitive data: reveal's one rule
// (Kind.Decrypts), messaging and support always, other only with Override. An integration is
// never admin (validate refuses it; one that skipped validation does not decrypt either).
func (in *Integration) Decrypts() bool {
	return in.Kind != reveal.KindAdmin && in.Kind.Decrypts(in.Override)
}

// Delivers reports whether entries of app pass the integration's app filter.
func (in *Integration) Delivers(app string) bool {
	return len(in.Apps) == 0 || slices.Contains(in.Apps, app)
}

// validName is the one name rule (package names), for integration names as for app ids.
func validName(s string) bool { return names.Valid(s) }
