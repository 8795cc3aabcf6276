// Package broker names veil's Kafka topics, creates them with the retention the ledgers demand,
// checks that a real cluster does not keep raw plaintext longer than a ledger's TTL, and runs an
// embedded Kafka-protocol broker (franz-go's kfake) for single-process deployments.
//
// Guarantees:
//   - Raw ledger topics (ledger.<name>) are created with retention.ms equal to the ledger TTL, and
//     CheckRetention reports every raw topic that could keep records longer than that.
//     Topics of integrations that receive decrypted entries are bounded and checked the same way
//     (IntegrationTopicTTL, EnsureBoundedTopics, CheckTopicRetention).
//   - The embedded broker never writes plaintext to disk: raw ledger records are kept only sealed
//     under KMS-wrapped data keys (or, without a KMS, in memory only), integration topics
//     (decrypted deliveries) keep only their offsets, and only veil's own sealed or redacted
//     topics (encrypted.*, redacted.*, veil.deadletter, veil.audit) keep their records.
//   - Every kept record keeps its offset across restarts, and group offsets need no translation.
//     See Embedded for the details and for what a crash can cost.
package broker
