// Package analytics is the analytics sink: its own consumer-group stage over the redacted topics
// (redacted.<ledger>, read committed) that writes the redacted rows as Parquet files partitioned
// app=/ledger=/date=/hour= by event time (UTC), to a local directory (LocalDir) or an S3 bucket
// (S3).
//
// What it guarantees:
//   - Exactly once, without joining the pipeline's transaction: a partition's offset is committed
//     only after every file holding its rows up to that offset was durably written (locally: a
//     temporary name in the same directory, fsync, rename, fsync of the directory; on S3: one
//     completed PutObject).
//   - Files are named by source partition and offset range (p3-o1200-o1399.parquet), so
//     reprocessing after a crash or a rebalance overwrites instead of duplicating; a file left by an
//     earlier, uncommitted run whose range overlaps a newly written batch is removed. A file that
//     starts below the first offset read since the partition was assigned holds committed rows
//     and is never removed (should offsets move back, rows may repeat, never vanish). This rests on
//     offsets being stable, which Kafka and the embedded broker (across restarts) guarantee.
//   - Write errors (disk full, read-only directory) are retried with backoff and hold back the
//     commit: nothing is lost and nothing is skipped.
//   - Polling, fetch-error backoff, reconnecting after the topics were recreated and committing
//     are the consume engine's (internal/consume, manual commits); the sink supplies its
//     per-poll work (buffer, flush what is due, say which offsets are durable) and its final
//     flush. A group that never committed reads the topics from their start.
//   - No token reaches a file: a row whose data holds a string starting with "veil:" is refused,
//     counted and logged by position and field path only, never by value.
package analytics
