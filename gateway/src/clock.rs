//! Wall-clock time, in the units the tables use.

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i64 {
    let now = chrono::Utc::now();
    // Out of range only after the year 2262.
    now.timestamp_nanos_opt().unwrap_or(i64::MAX)
}
