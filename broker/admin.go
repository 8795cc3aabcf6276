package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// LedgerTTL names a ledger and the TTL its raw topic must not outlive.
type LedgerTTL struct {
	Name string
	TTL  time.Duration
}

// TopicTTL is a topic that holds plaintext — a raw ledger topic, or the topic of an integration
// that receives decrypted entries — and the longest its records may be kept.
type TopicTTL struct {
	Topic  string
	Ledger string // the ledger whose TTL bounds the topic, for messages
	TTL    time.Duration
}

// RawTopicTTLs returns the raw topic of every ledger with the ledger's TTL.
func RawTopicTTLs(ledgers []LedgerTTL) []TopicTTL {
	out := make([]TopicTTL, len(ledgers))
	for i, l := range ledgers {
		out[i] = TopicTTL{Topic: RawTopic(l.Name), Ledger: l.Name, TTL: l.TTL}
	}
	return out
}

// IntegrationTopicTTL bounds the topic of an integration that receives decrypted entries of the
// given ledgers: its records may be kept as long as the longest TTL among them, and no longer.
// ttls holds every ledger's TTL; an unknown ledger is an error.
func IntegrationTopicTTL(topic string, ledgers []string, ttls []LedgerTTL) (TopicTTL, error) {
	out := TopicTTL{Topic: topic}
	for _, name := range ledgers {
		i := slices.IndexFunc(ttls, func(l LedgerTTL) bool { return l.Name == name })
		if i < 0 {
			return TopicTTL{}, fmt.Errorf("integration topic %s: unknown ledger %q", topic, name)
		}
		if ttls[i].TTL > out.TTL {
			out.Ledger, out.TTL = name, ttls[i].TTL
		}
	}
	if out.TTL <= 0 {
		return TopicTTL{}, fmt.Errorf("integration topic %s: no ledger with a positive TTL", topic)
	}
	return out, nil
}

// EnsureBoundedTopics creates each topic that is missing with RawTopicConfigs(TTL) and the given
// number of partitions (the broker default when partitions <= 0). Existing topics are left as
// they are: CheckTopicRetention reports those that keep records too long.
func EnsureBoundedTopics(ctx context.Context, adm *kadm.Client, topics []TopicTTL, partitions int) error {
	var errs []error
	for _, t := range topics {
		if t.Topic == "" || t.TTL <= 0 {
			return fmt.Errorf("ensuring topics: topic %q has no positive TTL", t.Topic)
		}
		errs = append(errs, createTopics(ctx, adm, partitions, RawTopicConfigs(t.TTL), t.Topic)...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	return nil
}

// createTopics creates those of topics that do not exist yet, with cfg, the given number of
// partitions (the broker default when partitions <= 0) and the broker's default replication
// factor. It returns every failure but a topic that already exists.
func createTopics(ctx context.Context, adm *kadm.Client, partitions int, cfg map[string]*string, topics ...string) []error {
	p := int32(-1)
	if partitions > 0 {
		p = int32(partitions)
	}
	resps, err := adm.CreateTopics(ctx, p, -1, cfg, topics...)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("topic %s: %w", r.Topic, r.Err))
		}
	}
	return errs
}

// RawTopicConfigs returns the topic configs a raw ledger topic (or any topic holding plaintext,
// see TopicTTL) is created with: retention.ms equal to the TTL, and segments rolled every TTL/4 (at least one second) so that a closed segment, the
// unit Kafka deletes, does not keep its oldest record long past the TTL. The broker still deletes
// on its own schedule (log.retention.check.interval.ms), so a record may outlive the TTL by up to
// TTL/4 plus that interval; the sealed data in the encrypted store expires exactly at the TTL.
func RawTopicConfigs(ttl time.Duration) map[string]*string {
	seg := max(ttl/4, time.Second)
	return map[string]*string{
		"retention.ms":   ptr(strconv.FormatInt(ttl.Milliseconds(), 10)),
		"segment.ms":     ptr(strconv.FormatInt(seg.Milliseconds(), 10)),
		"cleanup.policy": ptr("delete"),
	}
}

func ptr(s string) *string { return &s }

// Topics returns every topic veil uses for the given ledgers: raw, encrypted and redacted per
// ledger, then the dead-letter and audit topics.
func Topics(ledgers []LedgerTTL) []string {
	ts := make([]string, 0, 3*len(ledgers)+2)
	for _, l := range ledgers {
		ts = append(ts, RawTopic(l.Name), EncryptedTopic(l.Name), RedactedTopic(l.Name))
	}
	return append(ts, DeadLetterTopic, AuditTopic)
}

// EnsureTopics creates every topic veil uses (see Topics) with the given number of partitions
// (the broker default when partitions <= 0) and the broker's default replication factor. Raw
// topics get RawTopicConfigs(ttl). Topics that already exist are left as they are, even if their
// settings differ: CheckRetention reports raw topics that keep plaintext too long.
func EnsureTopics(ctx context.Context, adm *kadm.Client, ledgers []LedgerTTL, partitions int) error {
	for _, l := range ledgers {
		if l.Name == "" || l.TTL <= 0 {
			return fmt.Errorf("ensuring topics: ledger %q has no positive TTL", l.Name)
		}
	}
	var errs []error
	for _, l := range ledgers {
		errs = append(errs, createTopics(ctx, adm, partitions, RawTopicConfigs(l.TTL), RawTopic(l.Name))...)
	}
	others := []string{DeadLetterTopic, AuditTopic}
	for _, l := range ledgers {
		others = append(others, EncryptedTopic(l.Name), RedactedTopic(l.Name))
	}
	errs = append(errs, createTopics(ctx, adm, partitions, nil, others...)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	return nil
}

// Violation is a raw ledger topic that can keep plaintext records longer than its ledger's TTL.
type Violation struct {
	Topic   string
	Ledger  string
	TTL     time.Duration
	Setting string // the topic config at fault, or "" when the topic does not exist
	Value   string // its value as the broker reports it ("" when unset)
	Reason  string
}

func (v Violation) String() string {
	if v.Setting == "" {
		return fmt.Sprintf("%s: %s", v.Topic, v.Reason)
	}
	return fmt.Sprintf("%s: %s=%q %s (ledger TTL %s)", v.Topic, v.Setting, v.Value, v.Reason, v.TTL)
}

// CheckRetention describes the raw topic of every ledger and returns one Violation per way it can
// keep records longer than the ledger TTL: retention.ms unset, negative (infinite) or longer than
// the TTL; a cleanup.policy without "delete" (compaction alone never expires records); segment.ms
// longer than the TTL (Kafka deletes whole closed segments only); or the topic missing (a broker
// that auto-creates topics would create it with its default retention). The error is for failing
// to ask the broker, not for violations.
func CheckRetention(ctx context.Context, adm *kadm.Client, ledgers []LedgerTTL) ([]Violation, error) {
	return CheckTopicRetention(ctx, adm, RawTopicTTLs(ledgers))
}

// CheckTopicRetention is CheckRetention for any topics that hold plaintext (see TopicTTL): one
// Violation per way a topic can keep records longer than its TTL, by the same rules.
func CheckTopicRetention(ctx context.Context, adm *kadm.Client, topics []TopicTTL) ([]Violation, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Topic
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describing topic configs: %w", err)
	}
	byTopic := make(map[string]kadm.ResourceConfig, len(rcs))
	for _, rc := range rcs {
		byTopic[rc.Name] = rc
	}
	var vs []Violation
	for _, t := range topics {
		l := LedgerTTL{Name: t.Ledger, TTL: t.TTL}
		rc, ok := byTopic[t.Topic]
		if !ok || errors.Is(rc.Err, kerr.UnknownTopicOrPartition) {
			vs = append(vs, Violation{Topic: t.Topic, Ledger: l.Name, TTL: l.TTL, Reason: "topic does not exist"})
			continue
		}
		if rc.Err != nil {
			return nil, fmt.Errorf("describing topic %s: %w", t.Topic, rc.Err)
		}
		vs = append(vs, checkTopic(t.Topic, l, rc.Configs)...)
	}
	return vs, nil
}

func checkTopic(topic string, l LedgerTTL, cfgs []kadm.Config) []Violation {
	get := func(key string) (string, bool) {
		for _, c := range cfgs {
			if c.Key == key && c.Value != nil {
				return *c.Value, true
			}
		}
		return "", false
	}
	v := func(setting, value, reason string) Violation {
		return Violation{Topic: topic, Ledger: l.Name, TTL: l.TTL, Setting: setting, Value: value, Reason: reason}
	}
	var vs []Violation
	ret, ok := get("retention.ms")
	switch ms, err := strconv.ParseInt(ret, 10, 64); {
	case !ok:
		vs = append(vs, v("retention.ms", "", "is unset"))
	case err != nil:
		vs = append(vs, v("retention.ms", ret, "is not a number"))
	case ms < 0:
		vs = append(vs, v("retention.ms", ret, "keeps records forever"))
	case time.Duration(ms)*time.Millisecond > l.TTL:
		vs = append(vs, v("retention.ms", ret, "is longer than the ledger TTL"))
	}
	if pol, ok := get("cleanup.policy"); ok && !hasDelete(pol) {
		vs = append(vs, v("cleanup.policy", pol, "does not delete old records"))
	}
	if seg, ok := get("segment.ms"); ok {
		if ms, err := strconv.ParseInt(seg, 10, 64); err == nil && time.Duration(ms)*time.Millisecond > l.TTL {
			vs = append(vs, v("segment.ms", seg, "is longer than the ledger TTL: the open segment outlives it"))
		}
	}
	return vs
}

func hasDelete(policy string) bool {
	for _, p := range strings.Split(policy, ",") {
		if strings.TrimSpace(p) == "delete" {
			return true
		}
	}
	return false
}
