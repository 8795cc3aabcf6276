// Package egress is the outgoing edge of integrations: one exactly-once stream stage per
// configured integration reads the encrypted.<ledger> topics of its ledgers and delivers every
// entry to the integration's own topic (or its webhook), its sensitive values decrypted where the
// integration may process sensitive data and redacted where it may not.
//
// Guarantees:
//   - Messaging and support integrations decrypt; other integrations decrypt only with an
//     explicit override. A non-decrypting integration never receives plaintext: every token is
//     replaced by ★★★★★ and nothing is opened.
//   - A decrypting integration never receives a token where a value belongs: a token opens to
//     its value, or, past its TTL, erased, of another app or forged, to ★★★★★. A transient store
//     or KMS failure aborts the batch and retries it with backoff; nothing is delivered until it
//     opens.
//   - Entries of apps outside the integration's app filter are not delivered, and a token is
//     opened only for the app of the entry that carries it.
//   - Every decrypt attempt writes one audit record to veil.audit (who, which app, ref and field,
//     the result and when; never the value or the token). The delivered entries, their audit
//     records and the consumer offsets commit in one Kafka transaction: each entry is delivered
//     and audited exactly once, across crashes and restarts, for read_committed consumers.
//   - Delivering only reads the store: it never extends a TTL.
//   - An integration of delivery webhook gets each entry POSTed to its HTTPS endpoint (TLS 1.2+,
//     signed with HMAC-SHA256, see webhook.go) instead of a topic, so decrypted entries never
//     rest in Kafka. Its audit records are written before any entry of the batch leaves; offsets
//     are committed after; a redelivery carries the same Idempotency-Key and body, so the
//     integration sees each entry exactly once by that key. Transient failures (network, 5xx,
//     408, 425, 429) are retried with backoff; any other answer dead-letters the entry (reason
//     webhook_rejected, never its content). Errors and logs name the webhook's host only.
//   - Polling, retries with backoff, rewinding a failed batch, reconnecting and committing are the
//     consume engine's (internal/consume); a stage supplies only its per-batch work. Close(ctx)
//     stops a running stage, waits for it and is idempotent.
//   - The topic of a decrypting integration holds plaintext: it is created with retention.ms =
//     Config.TopicTTL (the longest TTL of its ledgers).
package egress
