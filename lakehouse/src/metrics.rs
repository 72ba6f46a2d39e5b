//! Process-wide counters, gauges and latency histograms, rendered in the Prometheus text
//! exposition format on `/metrics`.
//!
//! Recording is an atomic add on a pre-registered cell (a map lookup under a read lock the
//! first time a label set is seen, then a clone of the cell's `Arc` by the caller when it
//! is hot). No dependency: the format is a few lines of text, and the registry has a
//! handful of families with small label sets. What each metric means is in
//! docs/operations.md.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// Histogram bucket bounds, seconds: 0.5 ms to 60 s.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Labels as (name, value) pairs, in a fixed order per family.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Family {
    Counter(BTreeMap<Labels, Arc<AtomicU64>>),
    Gauge(BTreeMap<Labels, Arc<AtomicU64>>),
    Histogram(BTreeMap<Labels, Arc<Histogram>>),
}

/// The registry: family name -> (help, cells by label set).
#[derive(Debug, Default)]
pub struct Registry {
    families: RwLock<BTreeMap<&'static str, (&'static str, Family)>>,
}

/// The process's registry.
pub static METRICS: LazyLock<Registry> = LazyLock::new(Registry::default);

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect()
}

impl Registry {
    /// The counter `name` with these labels (created at zero).
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
    ) -> Arc<AtomicU64> {
        self.cell(name, help, pairs, false)
    }

    /// The gauge `name` with these labels (created at zero); set it with `store`.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
    ) -> Arc<AtomicU64> {
        self.cell(name, help, pairs, true)
    }

    fn cell(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
        gauge: bool,
    ) -> Arc<AtomicU64> {
        let key = labels(pairs);
        if let Ok(families) = self.families.read()
            && let Some((_, Family::Counter(cells) | Family::Gauge(cells))) = families.get(name)
            && let Some(cell) = cells.get(&key)
        {
            return Arc::clone(cell);
        }
        let mut families = match self.families.write() {
            Ok(families) => families,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (_, family) = families.entry(name).or_insert_with(|| {
            let empty = BTreeMap::new();
            let family = if gauge {
                Family::Gauge(empty)
            } else {
                Family::Counter(empty)
            };
            (help, family)
        });
        match family {
            Family::Counter(cells) | Family::Gauge(cells) => {
                Arc::clone(cells.entry(key).or_default())
            }
            // A name registered as a histogram: hand out a detached cell rather than panic.
            Family::Histogram(_) => Arc::new(AtomicU64::new(0)),
        }
    }

    /// The histogram `name` with these labels.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
    ) -> Arc<Histogram> {
        let key = labels(pairs);
        if let Ok(families) = self.families.read()
            && let Some((_, Family::Histogram(cells))) = families.get(name)
            && let Some(cell) = cells.get(&key)
        {
            return Arc::clone(cell);
        }
        let mut families = match self.families.write() {
            Ok(families) => families,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (_, family) = families
            .entry(name)
            .or_insert_with(|| (help, Family::Histogram(BTreeMap::new())));
        match family {
            Family::Histogram(cells) => Arc::clone(cells.entry(key).or_default()),
            Family::Counter(_) | Family::Gauge(_) => Arc::new(Histogram::default()),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
        n: u64,
    ) {
        self.counter(name, help, pairs)
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
        value: u64,
    ) {
        self.gauge(name, help, pairs)
            .store(value, Ordering::Relaxed);
    }

    /// Records one latency.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
        elapsed: Duration,
    ) {
        self.histogram(name, help, pairs).observe(elapsed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let families = match self.families.read() {
            Ok(families) => families,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::new();
        for (name, (help, family)) in families.iter() {
            let kind = match family {
                Family::Counter(_) => "counter",
                Family::Gauge(_) => "gauge",
                Family::Histogram(_) => "histogram",
            };
            out.push_str(&format!("# HELP {name} {help}\n"));
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            match family {
                Family::Counter(cells) | Family::Gauge(cells) => {
                    for (labels, cell) in cells {
                        let value = cell.load(Ordering::Relaxed);
                        out.push_str(&format!("{name}{} {value}\n", format_labels(labels, None)));
                    }
                }
                Family::Histogram(cells) => {
                    for (labels, histogram) in cells {
                        let mut cumulative = 0;
                        for (bound, bucket) in BUCKETS.iter().zip(&histogram.buckets) {
                            cumulative += bucket.load(Ordering::Relaxed);
                            let le = bound.to_string();
                            out.push_str(&format!(
                                "{name}_bucket{} {cumulative}\n",
                                format_labels(labels, Some(&le))
                            ));
                        }
                        let count = histogram.count.load(Ordering::Relaxed);
                        out.push_str(&format!(
                            "{name}_bucket{} {count}\n",
                            format_labels(labels, Some("+Inf"))
                        ));
                        let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                        let plain = format_labels(labels, None);
                        out.push_str(&format!("{name}_sum{plain} {sum}\n"));
                        out.push_str(&format!("{name}_count{plain} {count}\n"));
                    }
                }
            }
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

// The families recorded by the lakehouse (the gateway records its own in its modules).

/// WAL group commits: write + fsync latency, records and bytes written.
pub fn wal_sync(elapsed: Duration, records: usize, bytes: u64) {
    METRICS.observe(
        "tarn_wal_sync_seconds",
        "Latency of a WAL group commit (write and fsync), seconds.",
        &[],
        elapsed,
    );
    METRICS.add(
        "tarn_wal_records_total",
        "Records made durable in the WAL.",
        &[],
        records as u64,
    );
    METRICS.add(
        "tarn_wal_written_bytes_total",
        "Bytes written to WAL segments (what the WAL disk must sustain).",
        &[],
        bytes,
    );
}

/// A Delta commit of fresh rows.
pub fn delta_commit(table: &str, elapsed: Duration, rows: usize, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    METRICS.observe(
        "tarn_delta_commit_seconds",
        "Latency of committing a table's fresh rows to Delta (Parquet writes and the log commit), seconds.",
        &[("table", table), ("outcome", outcome)],
        elapsed,
    );
    if ok {
        METRICS.add(
            "tarn_committed_rows_total",
            "Rows committed to the Delta tables.",
            &[("table", table)],
            rows as u64,
        );
    }
}

/// A catalog operation failed.
pub fn catalog_error() {
    METRICS.add(
        "tarn_catalog_errors_total",
        "Catalog (PostgreSQL or SQLite) operations that failed.",
        &[],
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format() {
        let registry = Registry::default();
        registry.add("t_total", "Things.", &[("kind", "a\"b")], 3);
        registry.add("t_total", "Things.", &[("kind", "a\"b")], 2);
        registry.set("t_bytes", "Bytes.", &[], 42);
        registry.observe("t_seconds", "Latency.", &[], Duration::from_millis(3));
        registry.observe("t_seconds", "Latency.", &[], Duration::from_secs(100));
        let text = registry.render();
        assert!(
            text.contains("# TYPE t_total counter\nt_total{kind=\"a\\\"b\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE t_bytes gauge\nt_bytes 42\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_bucket{le=\"60\"} 1\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("t_seconds_count 2\n"), "{text}");
        assert!(text.contains("t_seconds_sum 100.003\n"), "{text}");
    }
}
