// Package consume is veil's one Kafka consume loop: the pipeline, the egress stages and the
// analytics sink each supply only their per-batch work (a Handler); the Engine owns everything
// around it, once.
//
// What the Engine guarantees:
//
//   - Connecting: what a handler needs before the first poll (Config.Connect: an output topic)
//     is retried with backoff until it succeeds, ctx ends or Close is called.
//   - Reading: a group consumer that reads committed records only (read_committed), from the start
//     of a partition the group never committed.
//   - Committing: in transactional mode (Config.TransactionalID set) a franz-go
//     GroupTransactSession; the handler produces its outputs through the Batch and ends the
//     transaction with Batch.End, which commits the batch's offsets with its outputs or aborts them
//     together (exactly once). In manual mode auto-commit is off, rebalances wait while a batch is
//     handled (BlockRebalanceOnPoll), and the handler commits through Engine.Commit or
//     Engine.CommitRecords once its work is durable (at least once).
//   - Rewind: a batch the handler fails (an error, or not committed) comes back on the next poll:
//     the engine aborts the open transaction, or begins and aborts an empty one, which resets the
//     session to the committed offsets; in manual mode it seeks the batch's partitions back to the
//     batch's first records. Failures are retried after a jittered backoff (Backoff); an aborted
//     transaction is retried at once.
//   - Fatal errors: an error marked Fatal (the session cannot go on: beginning, ending or rewinding
//     a transaction failed, or a handler said so) stops Run and is returned. One classification.
//   - Fetch errors: a poll that returns only errors is retried after a jittered backoff, never at
//     once; the first three errors of an outage and then every hundredth are logged, and
//     Config.Dependency hears that the broker is down, then up again.
//   - Reconnect: when fetches fail with an unknown topic id for longer than StaleTopicWait (the
//     topics were deleted and created again, as after a restart of a broker that keeps no topics),
//     the engine replaces its client by a new one, which resumes from the committed offsets.
//   - Shutdown: cancelling Run's context ends Run with nil once the batch in flight returns (a
//     transaction in flight is not committed; its records come again after a restart), after
//     Config.Drain, whose error is Run's. Close(ctx) stops Run the same way, waits for it, then
//     leaves the group and closes the client; it is idempotent, and Run returns ErrClosed after it.
package consume
