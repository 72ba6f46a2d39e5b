//! The gateway's Prometheus metrics (`GET /metrics` on the OTLP/HTTP and native ports),
//! recorded into the lakehouse's process-wide registry next to its WAL, commit and
//! catalog metrics. docs/operations.md says what each one means.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tarn_lakehouse::Lakehouse;
use tarn_lakehouse::metrics::METRICS;
use tarn_lakehouse::schema::TableKind;

use crate::ingest::Ingestor;

/// The signal a table's rows belong to (`None` for processes and streams).
pub fn signal_of(table: TableKind) -> Option<&'static str> {
    match table {
        TableKind::Spans => Some("traces"),
        TableKind::LogEntries => Some("logs"),
        TableKind::Measures | TableKind::Histograms => Some("metrics"),
        TableKind::Processes | TableKind::Streams => None,
    }
}

/// Records stored for a protocol and signal.
pub fn ingested(protocol: &str, signal: &str, records: usize) {
    METRICS.add(
        "tarn_ingested_records_total",
        "Records (spans, log records, metric points, native events) made durable, by protocol and signal.",
        &[("protocol", protocol), ("signal", signal)],
        records as u64,
    );
}

/// Bytes received in request bodies (as sent, before decompression).
pub fn received(protocol: &str, signal: &str, bytes: usize) {
    METRICS.add(
        "tarn_received_bytes_total",
        "Request body bytes received (as sent, before decompression), by protocol and signal.",
        &[("protocol", protocol), ("signal", signal)],
        bytes as u64,
    );
}

/// How an ingest request ended, from its HTTP status.
pub fn outcome_of_status(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 | 403 => "unauthorized",
        413 => "too_large",
        503 | 429 => "throttled",
        400..=499 => "rejected",
        _ => "failed",
    }
}

/// One ingest request ended.
pub fn request(protocol: &str, signal: &str, outcome: &str) {
    METRICS.add(
        "tarn_ingest_requests_total",
        "Ingest requests by protocol, signal and outcome: ok, rejected (bad data, 400/415, INVALID_ARGUMENT), too_large (413, RESOURCE_EXHAUSTED), throttled (503, UNAVAILABLE: retry), unauthorized, failed (500, INTERNAL).",
        &[("protocol", protocol), ("signal", signal), ("outcome", outcome)],
        1,
    );
}

/// Records the OTLP partial-success response reported as rejected.
pub fn rejected_records(protocol: &str, signal: &str, records: i64) {
    if records > 0 {
        METRICS.add(
            "tarn_rejected_records_total",
            "Records refused inside accepted requests (OTLP partial success).",
            &[("protocol", protocol), ("signal", signal)],
            records.unsigned_abs(),
        );
    }
}

/// A request without a valid key.
pub fn auth_failure(listener: &str) {
    METRICS.add(
        "tarn_auth_failures_total",
        "Requests refused for a missing, unknown or under-privileged API key, by listener.",
        &[("listener", listener)],
        1,
    );
}

/// A FlightSQL statement ended.
pub fn query(outcome: &str, elapsed: Duration) {
    METRICS.add(
        "tarn_queries_total",
        "SQL statements by outcome: ok, error (refused or failed), limit (time, memory or row budget), cancelled (the client went away).",
        &[("outcome", outcome)],
        1,
    );
    METRICS.observe(
        "tarn_query_seconds",
        "Latency of SQL statements from planning to the last batch sent, seconds.",
        &[("outcome", outcome)],
        elapsed,
    );
}

/// The exposition, with the gauges read now.
pub fn render(lake: &Lakehouse, ingestor: &Ingestor) -> String {
    METRICS.set(
        "tarn_wal_bytes",
        "Bytes in the write-ahead log: records not yet committed to Delta, and segments not yet released.",
        &[],
        lake.wal_bytes(),
    );
    for (kind, table) in lake.tables() {
        METRICS.set(
            "tarn_fresh_bytes",
            "Memory held by rows durable in the WAL but not yet committed to Delta, by table.",
            &[("table", kind.name())],
            table.fresh_bytes() as u64,
        );
    }
    METRICS
        .gauge(
            "tarn_inflight_bytes",
            "Bytes of requests being decoded and written right now (bounded by --max-inflight-bytes).",
            &[],
        )
        .store(ingestor.inflight_bytes() as u64, Ordering::Relaxed);
    METRICS.render()
}
