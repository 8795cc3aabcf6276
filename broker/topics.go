package broker

import "strings"

// Topic name prefixes and the two service topics.
const (
	RawPrefix       = "ledger."
	EncryptedPrefix = "encrypted."
	RedactedPrefix  = "redacted."

	// DeadLetterTopic receives bad input, sealed, with a reason.
	DeadLetterTopic = "veil.deadletter"
	// AuditTopic receives one record per decrypt (never the value).
	AuditTopic = "veil.audit"
)

// RawTopic is the topic producers write a ledger's entries to: "ledger.<name>". It holds plaintext.
func RawTopic(ledger string) string { return RawPrefix + ledger }

// EncryptedTopic is the encrypted view of a ledger: "encrypted.<name>".
func EncryptedTopic(ledger string) string { return EncryptedPrefix + ledger }

// RedactedTopic is the redacted view of a ledger: "redacted.<name>".
func RedactedTopic(ledger string) string { return RedactedPrefix + ledger }

// IsRaw reports whether topic is a raw ledger topic, one that holds plaintext.
func IsRaw(topic string) bool { return strings.HasPrefix(topic, RawPrefix) }

// LedgerOf returns the ledger name of a raw, encrypted or redacted topic, and false for any other.
func LedgerOf(topic string) (string, bool) {
	for _, p := range []string{RawPrefix, EncryptedPrefix, RedactedPrefix} {
		if name, ok := strings.CutPrefix(topic, p); ok && name != "" {
			return name, true
		}
	}
	return "", false
}
