// Package replay rebuilds veil's outputs for a time window of one or more ledgers.
//
// Sources. The raw ledger.<name> topics are re-read by record timestamp ([From, To]) while they
// still hold the data, and every record runs through the same pipeline.Transformer as the live
// processor: expiry stays ts + TTL (from the entry's ts, never the replay time), so entries
// already past their TTL come out redacted only, with nothing sealed or stored. Records the raw
// topic no longer holds (retention) are rebuilt from encrypted.<name> instead, for the redacted
// target only: every token becomes ★★★★★, no key or plaintext is needed. Records of
// encrypted.<name> are selected by their own timestamp (when veil processed them).
//
// Targets. encrypted: encrypted.<name> and the encrypted store; redacted: redacted.<name>;
// analytics: redacted.<name>, then the analytics consumer group is moved back to From on the
// redacted topics (it names its Parquet files by offset range, so re-reading overwrites instead of
// duplicating); egress: encrypted.<name>, then each named egress group is moved back likewise.
// Groups are only ever moved back, and only while they have no members.
//
// Idempotence. Every output carries the veil-source header naming its raw record
// (topic/partition/offset). Before producing, replay reads the target topics (read committed)
// from From minus OutputSlack to their end and collects these headers; a record whose output is
// already present is not produced again, and its store row is left alone (re-sealing would
// change the DEK under tokens already published). A replay run twice, or resumed, therefore
// produces each missing output once. Outputs are produced in Kafka transactions of BatchSize
// records, the store write happening before the commit, as in the pipeline.
//
// Checkpoint. After every committed transaction the last processed offset of every source
// partition is written to the checkpoint file (temp file, fsync, rename). A replay started with
// the same checkpoint file and window resumes after those offsets; one stopped by cancelling ctx
// loses at most the transaction in flight, which the next run redoes.
package replay
