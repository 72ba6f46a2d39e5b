//! The request shapes `tarn load` sends.
//!
//! Every request is a pure function of (shape, signal, seed, request index, run), so
//! concurrent callers generate their share without coordination and two runs with one seed
//! send the same records (only "now" moves).
//!
//! - `uniform`: the OpenTelemetry performance-benchmark shape the Rotel anchor uses — one
//!   service, N string attributes of 20 random characters per record, random ids.
//! - `bench`: data shaped like the query anchor's (`shared/reference/query-anchor.md`):
//!   50 services `service-00`..`service-49`, 10 span names each, traces of 6–14 spans
//!   sharing a trace id, about 1% error spans, log-normal durations, 5 attributes per span
//!   (`user.id` of 2 million distinct values), start times uniform over the last `days`
//!   days; logs of the same services with levels, templated messages and trace ids; gauges
//!   per service every 10 s going back from now (`cpu.utilization`, `memory.usage`,
//!   `request.rate`).

use std::collections::BTreeMap;

use clap::ValueEnum;
use tarn_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use tarn_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use tarn_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use tarn_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use tarn_proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use tarn_proto::otlp::resource::v1::Resource;
use tarn_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// The signal to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadSignal {
    Traces,
    Logs,
    Metrics,
}

impl LoadSignal {
    /// The table the records land in.
    pub fn table(self) -> &'static str {
        match self {
            LoadSignal::Traces => "spans",
            LoadSignal::Logs => "log_entries",
            LoadSignal::Metrics => "measures",
        }
    }

    /// What one record is called in the report.
    pub fn records(self) -> &'static str {
        match self {
            LoadSignal::Traces => "spans",
            LoadSignal::Logs => "log records",
            LoadSignal::Metrics => "metric points",
        }
    }

    /// The OTLP/HTTP path.
    pub fn http_path(self) -> &'static str {
        match self {
            LoadSignal::Traces => "/v1/traces",
            LoadSignal::Logs => "/v1/logs",
            LoadSignal::Metrics => "/v1/metrics",
        }
    }
}

/// The shape of the generated records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    Uniform,
    Bench,
}

/// One generated request.
#[derive(Debug, Clone)]
pub enum Request {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

/// What every request of one run shares.
#[derive(Debug, Clone)]
pub struct Run {
    pub shape: Shape,
    pub signal: LoadSignal,
    pub seed: u64,
    /// Records per request.
    pub batch: usize,
    /// String attributes per record (uniform shape).
    pub attributes: usize,
    /// Days of history the bench shape spreads spans and logs over.
    pub days: f64,
    /// The end of the generated time range, Unix ns.
    pub now: u64,
    /// Written as `service.instance.id`, so the run's records can be counted.
    pub run_id: String,
}

/// A pseudo-random generator (xorshift64*), so requests differ without a dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator for one (seed, stream) pair; never the all-zero state.
    pub fn new(seed: u64, stream: u64) -> Rng {
        // splitmix64 of the pair spreads nearby indexes over the state space.
        let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }

    pub fn text(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}

const SERVICES: u64 = 50;
const NAMES_PER_SERVICE: u64 = 10;
const USERS: u64 = 2_000_000;
const GAUGES: [(&str, &str); 3] = [
    ("cpu.utilization", "1"),
    ("memory.usage", "By"),
    ("request.rate", "{request}/s"),
];
const GAUGE_INTERVAL_NS: u64 = 10_000_000_000;
const VERBS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "GET", "GET"];
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"];
const MESSAGES: [&str; 8] = [
    "request handled",
    "cache miss for key",
    "retrying upstream call",
    "connection pool exhausted",
    "user signed in",
    "payment authorized",
    "slow query detected",
    "configuration reloaded",
];

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn resource(service: &str, run: &Run) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", service),
            string("service.instance.id", run.run_id.clone()),
            string("host.name", "load-host"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "tarn-load".into(),
        ..Default::default()
    }
}

fn service_name(index: u64) -> String {
    format!("service-{index:02}")
}

/// The service all records of the uniform shape carry.
pub fn uniform_service(run: &Run) -> String {
    format!("tarn-load-{}", run.run_id)
}

/// Request `index` of the run, holding `records` records.
pub fn request(run: &Run, index: u64, records: usize) -> Request {
    let mut rng = Rng::new(run.seed, index);
    match (run.shape, run.signal) {
        (Shape::Uniform, LoadSignal::Traces) => uniform_traces(run, &mut rng, records),
        (Shape::Uniform, LoadSignal::Logs) => uniform_logs(run, &mut rng, records),
        (Shape::Uniform, LoadSignal::Metrics) => uniform_metrics(run, &mut rng, index, records),
        (Shape::Bench, LoadSignal::Traces) => bench_traces(run, &mut rng, records),
        (Shape::Bench, LoadSignal::Logs) => bench_logs(run, &mut rng, records),
        (Shape::Bench, LoadSignal::Metrics) => bench_metrics(run, index, records),
    }
}

fn traces_request(run: &Run, by_service: BTreeMap<String, Vec<Span>>) -> Request {
    Request::Traces(ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(resource(&service, run)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    })
}

fn logs_request(run: &Run, by_service: BTreeMap<String, Vec<LogRecord>>) -> Request {
    Request::Logs(ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(resource(&service, run)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    })
}

fn metrics_request(run: &Run, by_service: BTreeMap<String, Vec<Metric>>) -> Request {
    Request::Metrics(ExportMetricsServiceRequest {
        resource_metrics: by_service
            .into_iter()
            .map(|(service, metrics)| ResourceMetrics {
                resource: Some(resource(&service, run)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    })
}

fn uniform_attributes(run: &Run, rng: &mut Rng) -> Vec<KeyValue> {
    (0..run.attributes)
        .map(|a| string(&format!("attribute.{a}"), rng.text(20)))
        .collect()
}

fn uniform_traces(run: &Run, rng: &mut Rng, records: usize) -> Request {
    let spans = (0..records)
        .map(|i| {
            let start = run.now + i as u64 * 1_000;
            Span {
                trace_id: rng.bytes(16),
                span_id: rng.bytes(8),
                name: format!("operation-{}", rng.below(50)),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.below(10_000_000),
                attributes: uniform_attributes(run, rng),
                ..Default::default()
            }
        })
        .collect();
    traces_request(run, BTreeMap::from([(uniform_service(run), spans)]))
}

fn uniform_logs(run: &Run, rng: &mut Rng, records: usize) -> Request {
    let records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: run.now + i as u64 * 1_000,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!(
                    "request {} handled in {} ms",
                    rng.below(10_000),
                    rng.below(500)
                ))),
            }),
            attributes: uniform_attributes(run, rng),
            ..Default::default()
        })
        .collect();
    logs_request(run, BTreeMap::from([(uniform_service(run), records)]))
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn uniform_metrics(run: &Run, rng: &mut Rng, index: u64, records: usize) -> Request {
    let points = (0..records)
        .map(|i| NumberDataPoint {
            time_unix_nano: run.now + (index * run.batch as u64 + i as u64) * 1_000,
            value: Some(number_data_point::Value::AsDouble(rng.unit() * 100.0)),
            attributes: uniform_attributes(run, rng),
            ..Default::default()
        })
        .collect();
    metrics_request(
        run,
        BTreeMap::from([(
            uniform_service(run),
            vec![gauge("tarn.load.gauge", "1", points)],
        )]),
    )
}

/// Nanoseconds of the run's history window.
fn window_ns(run: &Run) -> u64 {
    (run.days * 86_400e9) as u64
}

fn bench_traces(run: &Run, rng: &mut Rng, records: usize) -> Request {
    let mut by_service: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    let window = window_ns(run).max(1);
    let mut left = records;
    while left > 0 {
        let trace_id = rng.bytes(16);
        let trace_start = run.now.saturating_sub(window) + rng.below(window);
        let size = (6 + rng.below(9) as usize).min(left);
        left -= size;
        let mut ids: Vec<Vec<u8>> = Vec::with_capacity(size);
        let mut offset = 0u64;
        let user = rng.below(USERS);
        let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        for position in 0..size {
            let service = rng.below(SERVICES);
            // One verb per route, so a service has exactly NAMES_PER_SERVICE span names.
            let route = rng.below(NAMES_PER_SERVICE);
            let name = format!(
                "{} /api/{}/{route}",
                VERBS[route as usize % VERBS.len()],
                service_name(service),
            );
            // Log-normal around 2 ms, with a long tail.
            let duration = ((2e6f64.ln() + 1.5 * rng.normal()).exp() as u64).max(1_000);
            let start = trace_start + offset;
            offset += rng.below(200_000);
            let span_id = rng.bytes(8);
            let parent = match position {
                0 => Vec::new(),
                _ => ids[rng.below(position as u64) as usize].clone(),
            };
            let error = rng.below(100) == 0;
            let status_code = if error { 500 } else { 200 };
            ids.push(span_id.clone());
            by_service
                .entry(service_name(service))
                .or_default()
                .push(Span {
                    trace_id: trace_id.clone(),
                    span_id,
                    parent_span_id: parent,
                    name,
                    kind: if position == 0 { 2 } else { 3 },
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + duration,
                    attributes: vec![
                        string("user.id", format!("user-{user}")),
                        string("cloud.region", region),
                        int("http.response.status_code", status_code),
                        int("net.peer.port", 1024 + rng.below(60_000) as i64),
                        string("deployment.environment", "production"),
                    ],
                    status: Some(Status {
                        code: if error { 2 } else { 0 },
                        message: if error {
                            "internal error".to_owned()
                        } else {
                            String::new()
                        },
                    }),
                    ..Default::default()
                });
        }
    }
    traces_request(run, by_service)
}

fn bench_logs(run: &Run, rng: &mut Rng, records: usize) -> Request {
    let mut by_service: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    let window = window_ns(run).max(1);
    for _ in 0..records {
        let service = rng.below(SERVICES);
        // 80% info, 10% warn, 5% error, 5% debug.
        let (severity_number, severity_text) = match rng.below(100) {
            0..80 => (9, "INFO"),
            80..90 => (13, "WARN"),
            90..95 => (17, "ERROR"),
            _ => (5, "DEBUG"),
        };
        let message = MESSAGES[rng.below(MESSAGES.len() as u64) as usize];
        let traced = rng.below(10) < 3;
        by_service
            .entry(service_name(service))
            .or_default()
            .push(LogRecord {
                time_unix_nano: run.now.saturating_sub(window) + rng.below(window),
                severity_number,
                severity_text: severity_text.to_owned(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(format!(
                        "{message} id={} in {} ms",
                        rng.below(1_000_000),
                        rng.below(500)
                    ))),
                }),
                attributes: vec![
                    string("user.id", format!("user-{}", rng.below(USERS))),
                    string(
                        "cloud.region",
                        REGIONS[rng.below(REGIONS.len() as u64) as usize],
                    ),
                    int("thread.id", rng.below(64) as i64),
                ],
                trace_id: if traced { rng.bytes(16) } else { Vec::new() },
                span_id: if traced { rng.bytes(8) } else { Vec::new() },
                ..Default::default()
            });
    }
    logs_request(run, by_service)
}

/// Point `n` of the run is gauge `n % 3` of service `n / 3 % 50`, at `n / 150` intervals of
/// 10 s before now: every request covers whole instants, and any total covers the most
/// recent history first.
fn bench_metrics(run: &Run, index: u64, records: usize) -> Request {
    let mut by_key: BTreeMap<(u64, usize), Vec<NumberDataPoint>> = BTreeMap::new();
    let first = index * run.batch as u64;
    let per_instant = SERVICES * GAUGES.len() as u64;
    for n in first..first + records as u64 {
        let gauge_index = (n % GAUGES.len() as u64) as usize;
        let service = n / GAUGES.len() as u64 % SERVICES;
        let slot = n / per_instant;
        let time = run.now.saturating_sub(slot * GAUGE_INTERVAL_NS);
        // A smooth daily curve per service plus deterministic noise.
        let mut noise = Rng::new(run.seed, n ^ 0x5eed);
        let phase = (time as f64 / 86_400e9) * 2.0 * std::f64::consts::PI + service as f64;
        let base = match gauge_index {
            0 => 0.5 + 0.3 * phase.sin(),
            1 => 2e9 + 5e8 * phase.cos(),
            _ => 200.0 + 150.0 * phase.sin(),
        };
        let value = base * (1.0 + 0.05 * noise.normal());
        by_key
            .entry((service, gauge_index))
            .or_default()
            .push(NumberDataPoint {
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(value)),
                attributes: vec![string("host.name", format!("host-{}", service % 7))],
                ..Default::default()
            });
    }
    let mut by_service: BTreeMap<String, Vec<Metric>> = BTreeMap::new();
    for ((service, gauge_index), points) in by_key {
        let (name, unit) = GAUGES[gauge_index];
        by_service
            .entry(service_name(service))
            .or_default()
            .push(gauge(name, unit, points));
    }
    metrics_request(run, by_service)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(shape: Shape, signal: LoadSignal) -> Run {
        Run {
            shape,
            signal,
            seed: 7,
            batch: 512,
            attributes: 10,
            days: 3.0,
            now: 1_800_000_000_000_000_000,
            run_id: "test".into(),
        }
    }

    fn count(request: &Request) -> usize {
        match request {
            Request::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
            Request::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
            Request::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    _ => 0,
                })
                .sum(),
        }
    }

    #[test]
    fn every_shape_sends_exactly_the_records_asked_for() {
        for shape in [Shape::Uniform, Shape::Bench] {
            for signal in [LoadSignal::Traces, LoadSignal::Logs, LoadSignal::Metrics] {
                for records in [1, 7, 512] {
                    let request = request(&run(shape, signal), 3, records);
                    assert_eq!(count(&request), records, "{shape:?} {signal:?}");
                }
            }
        }
    }

    #[test]
    fn requests_are_deterministic_per_seed_and_index() {
        let run = run(Shape::Bench, LoadSignal::Traces);
        let a = format!("{:?}", request(&run, 11, 100));
        let b = format!("{:?}", request(&run, 11, 100));
        let c = format!("{:?}", request(&run, 12, 100));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bench_spans_form_traces_within_the_window() {
        let run = run(Shape::Bench, LoadSignal::Traces);
        let Request::Traces(request) = request(&run, 0, 512) else {
            panic!("traces expected");
        };
        let spans: Vec<&Span> = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        // Traces of 6–14 spans: 512 spans make 37 to 86 traces.
        assert!((36..=86).contains(&roots), "{roots} roots");
        let errors = spans
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|s| s.code == 2));
        assert!(errors.count() < 30);
        let window = window_ns(&run);
        assert!(
            spans
                .iter()
                .all(|s| s.start_time_unix_nano >= run.now - window
                    && s.end_time_unix_nano > s.start_time_unix_nano)
        );
    }

    #[test]
    fn bench_metrics_cover_recent_instants_first() {
        let run = run(Shape::Bench, LoadSignal::Metrics);
        let Request::Metrics(request) = request(&run, 0, 150) else {
            panic!("metrics expected");
        };
        let times: Vec<u64> = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .flat_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.clone(),
                _ => Vec::new(),
            })
            .map(|p| p.time_unix_nano)
            .collect();
        // 150 points = 50 services x 3 gauges, all at "now".
        assert_eq!(times.len(), 150);
        assert!(times.iter().all(|&t| t == run.now));
        assert_eq!(request.resource_metrics.len(), 50);
    }
}
