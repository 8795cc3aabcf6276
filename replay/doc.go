// Package replay rebuilds veil's outputs for a time window of one or more ledgers: outputs that
// were lost (a topic recreated, a consumer that needs them again), never new ones.
//
// One writer per source record. The pipeline is the only writer of a raw record's first outputs;
// replay only repairs outputs of records the pipeline has finished with. Each raw partition is
// replayed up to the offset the pipeline's consumer group (Config.PipelineGroup, kafka.group) has
// committed, read when the replay starts; the records after it are left to the pipeline and
// counted in Result.Pending. This holds whether veil runs or not: a running pipeline produces
// those records itself, a stopped one does when it starts again, and a committed offset only
// grows, so no record is ever produced by both. The alternatives were weighed and rejected:
// committing the group's offsets from replay works only while the group has no member (veil
// stopped), and races a veil starting meanwhile; taking the group's partitions stops the
// pipeline for the length of the replay; checking each output's veil-source inside a transaction
// is not something Kafka can do. The cost of the rule: replay cannot process a backlog veil has
// not reached — it says so, and veil itself does that work.
//
// A ref is sealed once. The store keeps the first record of a ref (sinks/store), and every
// sensitive raw record the pipeline processed holds the ref pipeline.RefFor derives from it. The
// tokens of that first seal carry a ref KEK that exists nowhere else, so they cannot be made
// again: when a record's encrypted output is missing but its ref is already in the store, replay
// does not produce a second, different token for it (Result.Sealed); its redacted output, which
// holds no token, is rebuilt as usual. The encrypted target therefore rebuilds the encrypted
// outputs of records that sealed nothing (not sensitive, or past their TTL: ★★★★★) or whose
// store row is gone; it never reseals a ref and never extends a TTL.
//
// Erasure. An erased app gets a fresh key for new data (crypto/keyring), so replaying its old
// records would seal erased data again: records of an app listed in Config.Erased, timestamped
// before the end of its latest erased key period, are skipped for every target.
//
// Sources. The raw ledger.<name> topics are re-read by record timestamp ([From, To]) while they
// still hold the data, and every record runs through the same pipeline.Transformer as the live
// processor: expiry stays ts + TTL (from the entry's ts, never the replay time), so entries
// already past their TTL come out redacted only, with nothing sealed or stored. What each raw
// partition still holds is read from its offsets and from the timestamp of its oldest record:
// when some partition holds nothing, or nothing as old as From (retention, or a broker that lost
// its raw records), the redacted outputs of the records it no longer holds are rebuilt from
// encrypted.<name> instead: every token becomes ★★★★★, no key or plaintext is needed. An
// encrypted record's raw record counts as gone when its veil-source offset is outside what the
// partition holds, or when the partition's oldest record was written after the encrypted one.
// Records of encrypted.<name> are selected by their own timestamp (when veil processed them).
// Which topics were read, and why, is in Result.Sources and on the progress output.
//
// Targets. encrypted: encrypted.<name> and the encrypted store; redacted: redacted.<name>;
// analytics: redacted.<name>, then the analytics consumer group is moved back to From on the
// redacted topics (it names its Parquet files by offset range, so re-reading overwrites instead of
// duplicating); egress: encrypted.<name>, then each named egress group is moved back likewise.
// Groups are only ever moved back, and only while they have no members.
//
// Idempotence. Every output carries the veil-source header naming its raw record
// (topic/partition/offset). Before producing, replay reads the target topics (read committed)
// from From minus OutputSlack up to the end they had then, once every transaction open then has
// ended, and collects these headers; a record whose output is already present is not produced
// again. A replay run twice, or resumed, therefore produces each missing output once. Outputs are
// produced in Kafka transactions of BatchSize records, the store write happening before the
// commit, as in the pipeline.
//
// Checkpoint. After every committed transaction the last processed offset of every source
// partition is written to the checkpoint file (temp file, fsync, rename), with the window, the
// ledgers, the targets and the app. The same command run again resumes after those offsets: To
// may be left out (the checkpoint's is used) or given as printed. One stopped by cancelling ctx
// loses at most the transaction in flight, which the next run redoes.
package replay
