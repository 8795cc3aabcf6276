// Package broker names veil's Kafka topics, creates them with the retention the ledgers demand,
// checks that a real cluster does not keep raw plaintext longer than a ledger's TTL, and runs an
// embedded Kafka-protocol broker (franz-go's kfake) for single-process deployments.
//
// Guarantees:
//   - Raw ledger topics (ledger.<name>) are created with retention.ms equal to the ledger TTL, and
//     CheckRetention reports every raw topic that could keep records longer than that.
//   - The embedded broker never writes a raw ledger record to disk: raw topics live in memory only.
//     What it keeps in its data directory across restarts is the topic list, the records of the
//     non-raw topics (encrypted.*, redacted.*, veil.deadletter, veil.audit and any other topic) and
//     the committed offsets of consumer groups on those topics. See Embedded for the details.
package broker
