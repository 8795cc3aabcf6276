// Package ops is veil's operations surface: Prometheus metrics on a registry of their own,
// readiness conditions, the HTTP server for /metrics, /healthz and /readyz, and the JSON logger.
//
// Guarantees: metric labels are ledger names, topics, partitions, reasons and operation names,
// never entry content; readiness reasons are supplied by callers and must be free of values; the
// logger writes JSON through log/slog, so secret types that implement slog.LogValuer stay redacted.
package ops
