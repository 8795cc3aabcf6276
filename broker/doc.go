// Package broker names veil's Kafka topics, creates them with the retention the ledgers demand,
// checks that a real cluster does not keep raw plaintext longer than a ledger's TTL, and runs an
// embedded Kafka-protocol broker (franz-go's kfake) for single-process deployments.
//
// Guarantees:
//   - Raw ledger topics (ledger.<name>) are created with retention.ms equal to the ledger TTL, and
//     CheckRetention reports every raw topic that could keep records longer than that.
//   - The embedded broker never writes a raw ledger record, nor any record that is not veil's own
//     sealed or redacted output, to disk: raw topics live in memory only, and integration topics
//     (decrypted deliveries) keep only their offsets. What it keeps in its data directory across
//     restarts is the topic list, the records of encrypted.*, redacted.*, veil.deadletter and
//     veil.audit, and the committed offsets of consumer groups on non-raw topics.
//   - Every kept record keeps its offset across restarts, and group offsets need no translation.
//     See Embedded for the details.
package broker
