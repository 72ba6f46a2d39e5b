//! `tarn load`: drives OTLP load at a running gateway and accounts for every record.
//!
//! It sends pre-encoded requests (by default 512 spans or log records each, 10 string
//! attributes of 20 characters, like the OpenTelemetry performance-benchmark shape and the
//! Rotel anchor) from many concurrent callers, over gRPC or HTTP, counts what was
//! acknowledged, reads the gateway's CPU time from `/proc/<pid>/stat`, and finally asks
//! FlightSQL how many records of this run are in the tables: nothing acknowledged may be
//! missing.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use clap::{Args, ValueEnum};
use prost::Message;
use tarn_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use tarn_proto::otlp::collector::logs::v1::logs_service_client::LogsServiceClient;
use tarn_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use tarn_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use tarn_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use tarn_proto::otlp::resource::v1::Resource;
use tarn_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::cli::QueryArgs;

/// The transport to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Grpc,
    Http,
}

/// The signal to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadSignal {
    Traces,
    Logs,
}

/// Options of `tarn load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Gateway address: host:port of OTLP/gRPC or OTLP/HTTP.
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub target: String,

    #[arg(long, value_enum, default_value = "grpc")]
    pub transport: Transport,

    #[arg(long, value_enum, default_value = "traces")]
    pub signal: LoadSignal,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Records per request.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,

    /// String attributes per record (20 characters each).
    #[arg(long, default_value_t = 10)]
    pub attributes: usize,

    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,

    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration_secs: f64,

    /// Seconds to wait after the load for the gateway to commit (its CPU is read again).
    #[arg(long, default_value_t = 15.0)]
    pub drain_secs: f64,

    /// Gateway process id, for CPU accounting from /proc.
    #[arg(long)]
    pub pid: Option<u32>,

    /// FlightSQL endpoint to count the stored records (grpc://host:port).
    #[arg(long)]
    pub flightsql: Option<String>,
}

/// Clock ticks of user + system CPU of a process.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is parenthesized and may hold spaces: fields start after ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("bad /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Seconds per clock tick (Linux reports CPU in USER_HZ = 100 ticks per second).
const SECONDS_PER_TICK: f64 = 0.01;

fn attribute(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// A pseudo-random generator (xorshift), so requests differ without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() & 0xff) as u8).collect()
    }

    fn text(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'a' + (self.next() % 26) as u8))
            .collect()
    }
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            attribute("service.name".into(), service.into()),
            attribute("host.name".into(), "load-host".into()),
        ],
        ..Default::default()
    }
}

fn traces_request(
    service: &str,
    args: &LoadArgs,
    rng: &mut Rng,
    now: u64,
) -> ExportTraceServiceRequest {
    let spans = (0..args.batch)
        .map(|i| {
            let start = now + i as u64 * 1_000;
            Span {
                trace_id: rng.bytes(16),
                span_id: rng.bytes(8),
                name: format!("operation-{}", rng.next() % 50),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.next() % 10_000_000,
                attributes: (0..args.attributes)
                    .map(|a| attribute(format!("attribute.{a}"), rng.text(20)))
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tarn-load".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn logs_request(
    service: &str,
    args: &LoadArgs,
    rng: &mut Rng,
    now: u64,
) -> ExportLogsServiceRequest {
    let records = (0..args.batch)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64 * 1_000,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!(
                    "request {} handled in {} ms",
                    rng.next() % 10_000,
                    rng.next() % 500
                ))),
            }),
            attributes: (0..args.attributes)
                .map(|a| attribute(format!("attribute.{a}"), rng.text(20)))
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "tarn-load".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Counters shared by the callers.
#[derive(Debug, Default)]
struct Counters {
    acknowledged: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
}

/// Pre-encoded request bodies, and the typed requests for gRPC.
enum Requests {
    Traces(Vec<ExportTraceServiceRequest>, Vec<Vec<u8>>),
    Logs(Vec<ExportLogsServiceRequest>, Vec<Vec<u8>>),
}

async fn caller(
    args: LoadArgs,
    requests: Arc<Requests>,
    counters: Arc<Counters>,
    worker: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let endpoint = format!("http://{}", args.target);
    let mut traces = None;
    let mut logs = None;
    if args.transport == Transport::Grpc {
        match args.signal {
            LoadSignal::Traces => {
                traces = Some(TraceServiceClient::connect(endpoint.clone()).await?)
            }
            LoadSignal::Logs => logs = Some(LogsServiceClient::connect(endpoint.clone()).await?),
        }
    }
    let mut index = worker;
    while Instant::now() < deadline {
        let outcome: Result<(), bool> = match (&*requests, args.transport) {
            (Requests::Traces(typed, _), Transport::Grpc) => match &mut traces {
                Some(client) => client
                    .export(typed[index % typed.len()].clone())
                    .await
                    .map(|_| ())
                    .map_err(|status| status.code() == tonic::Code::Unavailable),
                None => Err(false),
            },
            (Requests::Logs(typed, _), Transport::Grpc) => match &mut logs {
                Some(client) => client
                    .export(typed[index % typed.len()].clone())
                    .await
                    .map(|_| ())
                    .map_err(|status| status.code() == tonic::Code::Unavailable),
                None => Err(false),
            },
            (Requests::Traces(_, bodies), Transport::Http)
            | (Requests::Logs(_, bodies), Transport::Http) => {
                let path = if matches!(&*requests, Requests::Traces(..)) {
                    "traces"
                } else {
                    "logs"
                };
                let response = http
                    .post(format!("{endpoint}/v1/{path}"))
                    .header("content-type", "application/x-protobuf")
                    .body(bodies[index % bodies.len()].clone())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => {
                        Err(response.status().as_u16() == 503 || response.status().as_u16() == 429)
                    }
                    Err(_) => Err(false),
                }
            }
        };
        match outcome {
            Ok(()) => {
                counters
                    .acknowledged
                    .fetch_add(args.batch as u64, Ordering::Relaxed);
            }
            Err(true) => {
                counters.busy.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(false) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        index += args.concurrency;
    }
    Ok(())
}

async fn stored(flightsql: &str, table: &str, service: &str) -> anyhow::Result<i64> {
    let args = QueryArgs {
        sql: format!("SELECT count(*) AS n FROM {table} WHERE service_name = '{service}'"),
        url: Some(flightsql.to_owned()),
        format: crate::cli::OutputFormat::Table,
        begin: None,
        end: None,
        api_key: None,
    };
    let batches = crate::query::query(&args).await?;
    let batch = batches.first().context("no result")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let service = format!("tarn-load-{}", uuid::Uuid::new_v4().simple());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = u64::try_from(crate::clock::now_nanos()).unwrap_or(0);
    let requests = match args.signal {
        LoadSignal::Traces => {
            let typed: Vec<_> = (0..64)
                .map(|_| traces_request(&service, &args, &mut rng, now))
                .collect();
            let bodies = typed.iter().map(Message::encode_to_vec).collect();
            Requests::Traces(typed, bodies)
        }
        LoadSignal::Logs => {
            let typed: Vec<_> = (0..64)
                .map(|_| logs_request(&service, &args, &mut rng, now))
                .collect();
            let bodies = typed.iter().map(Message::encode_to_vec).collect();
            Requests::Logs(typed, bodies)
        }
    };
    let request_bytes = match &requests {
        Requests::Traces(_, bodies) | Requests::Logs(_, bodies) => bodies[0].len(),
    };
    let requests = Arc::new(requests);
    let counters = Arc::new(Counters::default());
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let measured = Duration::from_secs_f64(args.duration_secs);
    let started = Instant::now();
    let deadline = started + warmup + measured;
    let mut callers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        callers.spawn(caller(
            args.clone(),
            Arc::clone(&requests),
            Arc::clone(&counters),
            worker,
            deadline,
        ));
    }
    tokio::time::sleep(warmup).await;
    let acked_at_start = counters.acknowledged.load(Ordering::Relaxed);
    let cpu_at_start = args.pid.map(cpu_ticks).transpose()?;
    let window_start = Instant::now();
    while let Some(result) = callers.join_next().await {
        result.context("caller task")??;
    }
    let window = window_start.elapsed().as_secs_f64();
    let acked = counters.acknowledged.load(Ordering::Relaxed);
    let acked_in_window = acked - acked_at_start;
    let cpu_at_end = args.pid.map(cpu_ticks).transpose()?;
    tokio::time::sleep(Duration::from_secs_f64(args.drain_secs)).await;
    let cpu_after_drain = args.pid.map(cpu_ticks).transpose()?;

    let records = match args.signal {
        LoadSignal::Traces => "spans",
        LoadSignal::Logs => "log records",
    };
    println!("service            {service}");
    println!(
        "request            {} {records}, {request_bytes} bytes encoded",
        args.batch
    );
    println!("acknowledged       {acked} {records} in total");
    println!(
        "busy refusals      {}",
        counters.busy.load(Ordering::Relaxed)
    );
    println!(
        "failed requests    {}",
        counters.failed.load(Ordering::Relaxed)
    );
    println!("window             {window:.1} s, {acked_in_window} {records}");
    println!(
        "wall throughput    {:.0} {records}/s",
        acked_in_window as f64 / window
    );
    if let (Some(start), Some(end), Some(drained)) = (cpu_at_start, cpu_at_end, cpu_after_drain) {
        let cpu = (end - start) as f64 * SECONDS_PER_TICK;
        let cpu_drained = (drained - start) as f64 * SECONDS_PER_TICK;
        println!(
            "gateway CPU        {cpu:.2} s in the window ({:.2} cores)",
            cpu / window
        );
        println!(
            "per gateway CPU-s  {:.0} {records}",
            acked_in_window as f64 / cpu
        );
        println!(
            "incl. drain        {cpu_drained:.2} CPU-s, {:.0} {records} per CPU-s",
            acked_in_window as f64 / cpu_drained
        );
    }
    if let Some(flightsql) = &args.flightsql {
        let table = match args.signal {
            LoadSignal::Traces => "spans",
            LoadSignal::Logs => "log_entries",
        };
        let found = stored(flightsql, table, &service).await?;
        let acked = i64::try_from(acked).unwrap_or(i64::MAX);
        println!("stored             {found} {records} (acknowledged {acked})");
        if found < acked {
            bail!("{} acknowledged {records} are missing", acked - found);
        }
    }
    Ok(())
}

/// Runs the load; the exit code says whether every acknowledged record was found.
pub fn run(args: LoadArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tarn load: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tarn load: {error:#}");
            ExitCode::FAILURE
        }
    }
}
