//! `tarn load`: drives OTLP or native load at a running gateway and accounts for every
//! record.
//!
//! With `--protocol native` it sends Micromegas native blocks instead ([`native`]).
//!
//! Two modes. With `--duration-secs` (the default) it cycles 64 pre-encoded requests from
//! many concurrent callers for a fixed time and measures throughput per gateway CPU-second
//! (by default 512 spans or log records each with 10 string attributes of 20 characters,
//! like the OpenTelemetry performance-benchmark shape and the Rotel anchor). With
//! `--total N` it generates exactly N records (see [`shapes`], e.g. `--shape bench` for the
//! query benchmark's data), retries what the gateway refuses as busy, and exits when all are
//! acknowledged. Either way it reads the gateway's CPU time from `/proc/<pid>/stat` and
//! finally asks FlightSQL how many records of this run are in the tables: nothing
//! acknowledged may be missing.

pub mod native;
pub mod shapes;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use clap::{Args, ValueEnum};
use prost::Message;
use tarn_proto::otlp::collector::logs::v1::logs_service_client::LogsServiceClient;
use tarn_proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use tarn_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::transport::Channel;

pub use shapes::{LoadSignal, Shape};
use shapes::{Request, Run};

use crate::cli::QueryArgs;

/// The transport to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Grpc,
    Http,
}

/// The protocol to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// OTLP over `--transport`, one `--signal`.
    Otlp,
    /// Micromegas native blocks of mixed events to the native port (`/ingestion/*`).
    Native,
}

/// Options of `tarn load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Gateway address: host:port of OTLP/gRPC or OTLP/HTTP (default 127.0.0.1:4317), or of
    /// the native port (default 127.0.0.1:9000).
    #[arg(long)]
    pub target: Option<String>,

    #[arg(long, value_enum, default_value = "otlp")]
    pub protocol: Protocol,

    #[arg(long, value_enum, default_value = "grpc")]
    pub transport: Transport,

    #[arg(long, value_enum, default_value = "traces")]
    pub signal: LoadSignal,

    /// The records' shape: `uniform` (benchmark-style random attributes) or `bench` (the
    /// query benchmark's services, traces, logs and gauges).
    #[arg(long, value_enum, default_value = "uniform")]
    pub shape: Shape,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Records per request.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,

    /// String attributes per record (20 characters each; uniform shape).
    #[arg(long, default_value_t = 10)]
    pub attributes: usize,

    /// Events per native block (even: a thread span is two events).
    #[arg(long, default_value_t = 10_000)]
    pub block_events: usize,

    /// Send exactly this many records (native: events), then stop (instead of a timed run).
    #[arg(long)]
    pub total: Option<u64>,

    /// Seed of the generated data: one seed, the same records (up to "now").
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Days of history the bench shape spreads spans and logs over, ending now.
    #[arg(long, default_value_t = 3.0)]
    pub days: f64,

    /// API key sent as `Authorization: Bearer`.
    #[arg(long, env = "TARN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Seconds of load before measuring (timed runs).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,

    /// Seconds measured (timed runs).
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

    /// After the load, send this many one-record requests one at a time and time, for each,
    /// how long after its acknowledgement a query first returns it (needs `--flightsql`).
    #[arg(long, default_value_t = 0)]
    pub visibility_probes: usize,
}

impl LoadArgs {
    /// The gateway address, defaulted by protocol.
    pub fn target(&self) -> String {
        match (&self.target, self.protocol) {
            (Some(target), _) => target.clone(),
            (None, Protocol::Otlp) => "127.0.0.1:4317".to_owned(),
            (None, Protocol::Native) => "127.0.0.1:9000".to_owned(),
        }
    }
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

/// Counters shared by the callers.
#[derive(Debug, Default)]
struct Counters {
    acknowledged: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
}

/// How one export ended.
enum Outcome {
    Acknowledged,
    /// Refused as busy or unavailable: retry later.
    Busy,
    Failed(String),
}

/// One caller's connection: a gRPC client per signal, or HTTP.
struct Sender {
    transport: Transport,
    endpoint: String,
    api_key: Option<String>,
    http: reqwest::Client,
    traces: Option<TraceServiceClient<Channel>>,
    logs: Option<LogsServiceClient<Channel>>,
    metrics: Option<MetricsServiceClient<Channel>>,
}

impl Sender {
    async fn connect(args: &LoadArgs) -> anyhow::Result<Sender> {
        let endpoint = format!("http://{}", args.target());
        let mut sender = Sender {
            transport: args.transport,
            endpoint: endpoint.clone(),
            api_key: args.api_key.clone(),
            http: reqwest::Client::new(),
            traces: None,
            logs: None,
            metrics: None,
        };
        if args.transport == Transport::Grpc {
            let channel = Channel::from_shared(endpoint)?.connect().await?;
            match args.signal {
                LoadSignal::Traces => sender.traces = Some(TraceServiceClient::new(channel)),
                LoadSignal::Logs => sender.logs = Some(LogsServiceClient::new(channel)),
                LoadSignal::Metrics => sender.metrics = Some(MetricsServiceClient::new(channel)),
            }
        }
        Ok(sender)
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(key) = &self.api_key
            && let Ok(value) = format!("Bearer {key}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// Sends one request; `body` is its protobuf encoding (for HTTP).
    async fn send(&mut self, signal: LoadSignal, request: &Request, body: &[u8]) -> Outcome {
        let result = match (self.transport, request) {
            (Transport::Grpc, Request::Traces(message)) => {
                let grpc = self.grpc_request(message.clone());
                match &mut self.traces {
                    Some(client) => client.export(grpc).await.map(|_| ()),
                    None => return Outcome::Failed("no traces client".into()),
                }
            }
            (Transport::Grpc, Request::Logs(message)) => {
                let grpc = self.grpc_request(message.clone());
                match &mut self.logs {
                    Some(client) => client.export(grpc).await.map(|_| ()),
                    None => return Outcome::Failed("no logs client".into()),
                }
            }
            (Transport::Grpc, Request::Metrics(message)) => {
                let grpc = self.grpc_request(message.clone());
                match &mut self.metrics {
                    Some(client) => client.export(grpc).await.map(|_| ()),
                    None => return Outcome::Failed("no metrics client".into()),
                }
            }
            (Transport::Http, _) => {
                let mut post = self
                    .http
                    .post(format!("{}{}", self.endpoint, signal.http_path()))
                    .header("content-type", "application/x-protobuf")
                    .body(body.to_vec());
                if let Some(key) = &self.api_key {
                    post = post.bearer_auth(key);
                }
                return match post.send().await {
                    Ok(response) if response.status().is_success() => Outcome::Acknowledged,
                    Ok(response) if matches!(response.status().as_u16(), 429 | 503) => {
                        Outcome::Busy
                    }
                    Ok(response) => Outcome::Failed(format!("HTTP {}", response.status())),
                    Err(error) => Outcome::Failed(error.to_string()),
                };
            }
        };
        match result {
            Ok(()) => Outcome::Acknowledged,
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                ) =>
            {
                Outcome::Busy
            }
            Err(status) => Outcome::Failed(status.to_string()),
        }
    }
}

fn encode(request: &Request) -> Vec<u8> {
    match request {
        Request::Traces(message) => message.encode_to_vec(),
        Request::Logs(message) => message.encode_to_vec(),
        Request::Metrics(message) => message.encode_to_vec(),
    }
}

/// A timed caller: cycles the pre-generated requests until the deadline.
async fn timed_caller(
    args: LoadArgs,
    requests: Arc<Vec<(Request, Vec<u8>)>>,
    counters: Arc<Counters>,
    worker: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut sender = Sender::connect(&args).await?;
    let mut index = worker;
    while Instant::now() < deadline {
        let (request, body) = &requests[index % requests.len()];
        match sender.send(args.signal, request, body).await {
            Outcome::Acknowledged => {
                counters
                    .acknowledged
                    .fetch_add(args.batch as u64, Ordering::Relaxed);
            }
            Outcome::Busy => {
                counters.busy.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Outcome::Failed(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        index += args.concurrency;
    }
    Ok(())
}

/// Failures in a row after which a request is given up (busy refusals do not count).
const MAX_FAILURES: u32 = 10;

/// The retry policy of one request of a counted run: a busy refusal is waited out (100 ms),
/// a failure retried after 200 ms, [`MAX_FAILURES`] failures give the request up.
#[derive(Debug, Default)]
struct Retry {
    failures: u32,
}

impl Retry {
    /// Counts `outcome` in `busy` or `failed`; `Ok(true)` once acknowledged, `Ok(false)`
    /// (after the pause) to send again, an error naming `what` once given up.
    async fn settle(
        &mut self,
        outcome: Outcome,
        busy: &AtomicU64,
        failed: &AtomicU64,
        what: impl FnOnce() -> String,
    ) -> anyhow::Result<bool> {
        match outcome {
            Outcome::Acknowledged => return Ok(true),
            Outcome::Busy => {
                busy.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Outcome::Failed(error) => {
                failed.fetch_add(1, Ordering::Relaxed);
                self.failures += 1;
                if self.failures >= MAX_FAILURES {
                    bail!("{} failed {} times, last: {error}", what(), self.failures);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(false)
    }
}

/// A counted caller: takes the next request index until all are sent, and sends each until
/// acknowledged.
async fn counted_caller(
    args: LoadArgs,
    run: Arc<Run>,
    total: u64,
    next: Arc<AtomicU64>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let mut sender = Sender::connect(&args).await?;
    let batch = args.batch as u64;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let first = index.saturating_mul(batch);
        if first >= total {
            return Ok(());
        }
        let records = (total - first).min(batch);
        let request = shapes::request(&run, index, records as usize);
        let body = match args.transport {
            Transport::Http => encode(&request),
            Transport::Grpc => Vec::new(),
        };
        let mut retry = Retry::default();
        loop {
            let outcome = sender.send(args.signal, &request, &body).await;
            let what = || format!("request {index}");
            if retry
                .settle(outcome, &counters.busy, &counters.failed, what)
                .await?
            {
                counters.acknowledged.fetch_add(records, Ordering::Relaxed);
                break;
            }
        }
    }
}

async fn stored(args: &LoadArgs, flightsql: &str, run_id: &str) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT count(*) AS n FROM {} WHERE service_instance_id = '{run_id}'",
        args.signal.table()
    );
    count(args, flightsql, sql).await
}

/// Runs a query whose first column of the first row is a count.
async fn count(args: &LoadArgs, flightsql: &str, sql: String) -> anyhow::Result<i64> {
    let query = QueryArgs {
        sql,
        url: Some(flightsql.to_owned()),
        format: crate::cli::OutputFormat::Table,
        begin: None,
        end: None,
        api_key: args.api_key.clone(),
    };
    let batches = crate::query::query(&query).await?;
    let batch = batches.first().context("no result")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

/// Prints the window, the wall throughput and, with the gateway's CPU readings, the records
/// per gateway CPU-second.
fn print_throughput(
    records: &str,
    window: f64,
    acked_in_window: u64,
    cpu_at_start: Option<u64>,
    cpu_at_end: Option<u64>,
    cpu_after_drain: Option<u64>,
) {
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
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    if args.protocol == Protocol::Native {
        return native::load(args).await;
    }
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let run = Arc::new(Run {
        shape: args.shape,
        signal: args.signal,
        seed: args.seed,
        batch: args.batch,
        attributes: args.attributes,
        days: args.days,
        now: u64::try_from(crate::clock::now_nanos()).unwrap_or(0),
        run_id: uuid::Uuid::new_v4().simple().to_string(),
    });
    let records = args.signal.records();
    let counters = Arc::new(Counters::default());
    let mut callers = tokio::task::JoinSet::new();
    let started = Instant::now();
    let (window, acked_in_window, cpu_at_start, cpu_at_end) = match args.total {
        Some(total) => {
            let cpu_at_start = args.pid.map(cpu_ticks).transpose()?;
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..args.concurrency {
                callers.spawn(counted_caller(
                    args.clone(),
                    Arc::clone(&run),
                    total,
                    Arc::clone(&next),
                    Arc::clone(&counters),
                ));
            }
            while let Some(result) = callers.join_next().await {
                result.context("caller task")??;
            }
            let cpu_at_end = args.pid.map(cpu_ticks).transpose()?;
            let acked = counters.acknowledged.load(Ordering::Relaxed);
            (
                started.elapsed().as_secs_f64(),
                acked,
                cpu_at_start,
                cpu_at_end,
            )
        }
        None => {
            let requests: Vec<(Request, Vec<u8>)> = (0..64)
                .map(|index| {
                    let request = shapes::request(&run, index, args.batch);
                    let body = encode(&request);
                    (request, body)
                })
                .collect();
            println!(
                "request            {} {records}, {} bytes encoded",
                args.batch,
                requests[0].1.len()
            );
            let requests = Arc::new(requests);
            let warmup = Duration::from_secs_f64(args.warmup_secs);
            // Generating the requests is not part of the run.
            let deadline = Instant::now() + warmup + Duration::from_secs_f64(args.duration_secs);
            for worker in 0..args.concurrency {
                callers.spawn(timed_caller(
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
            let acked = counters.acknowledged.load(Ordering::Relaxed);
            let cpu_at_end = args.pid.map(cpu_ticks).transpose()?;
            (
                window_start.elapsed().as_secs_f64(),
                acked - acked_at_start,
                cpu_at_start,
                cpu_at_end,
            )
        }
    };
    let acked = counters.acknowledged.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.drain_secs)).await;
    let cpu_after_drain = args.pid.map(cpu_ticks).transpose()?;

    println!("run                {} (service.instance.id)", run.run_id);
    println!("acknowledged       {acked} {records} in total");
    println!(
        "busy refusals      {}",
        counters.busy.load(Ordering::Relaxed)
    );
    println!(
        "failed requests    {}",
        counters.failed.load(Ordering::Relaxed)
    );
    print_throughput(
        records,
        window,
        acked_in_window,
        cpu_at_start,
        cpu_at_end,
        cpu_after_drain,
    );
    if let Some(flightsql) = &args.flightsql {
        let found = stored(&args, flightsql, &run.run_id).await?;
        let acked = i64::try_from(acked).unwrap_or(i64::MAX);
        println!("stored             {found} {records} (acknowledged {acked})");
        if found < acked {
            bail!("{} acknowledged {records} are missing", acked - found);
        }
    }
    if args.visibility_probes > 0 {
        let Some(flightsql) = &args.flightsql else {
            bail!("--visibility-probes needs --flightsql");
        };
        probe_visibility(&args, &run, flightsql).await?;
    }
    Ok(())
}

/// Sends one-record requests one at a time; after each acknowledgement, queries until the
/// record is counted. Prints the send→ack and ack→visible percentiles.
async fn probe_visibility(args: &LoadArgs, run: &Run, flightsql: &str) -> anyhow::Result<()> {
    let probe = Run {
        run_id: format!("{}-probe", run.run_id),
        ..run.clone()
    };
    let records = args.signal.records();
    let mut sender = Sender::connect(args).await?;
    let mut to_ack = Vec::with_capacity(args.visibility_probes);
    let mut to_visible = Vec::with_capacity(args.visibility_probes);
    let mut most_polls = 0usize;
    let mut expected = 0i64;
    let sql = format!(
        "SELECT count(*) AS n FROM {} WHERE service_instance_id = '{}'",
        args.signal.table(),
        probe.run_id
    );
    for index in 0..args.visibility_probes {
        let request = shapes::request(&probe, index as u64, 1);
        let body = encode(&request);
        let sent = Instant::now();
        match sender.send(args.signal, &request, &body).await {
            Outcome::Acknowledged => {}
            Outcome::Busy => bail!("probe {index} was refused as busy"),
            Outcome::Failed(error) => bail!("probe {index} failed: {error}"),
        }
        let acked = Instant::now();
        to_ack.push(acked - sent);
        expected += 1;
        let mut polls = 0usize;
        loop {
            polls += 1;
            if count(args, flightsql, sql.clone()).await? >= expected {
                break;
            }
            if acked.elapsed() > Duration::from_secs(60) {
                bail!("probe {index} was acknowledged but not visible after 60 s");
            }
        }
        to_visible.push(acked.elapsed());
        most_polls = most_polls.max(polls);
    }
    let (ack50, ack99) = percentiles(&mut to_ack);
    let (visible50, visible99) = percentiles(&mut to_visible);
    println!(
        "send→ack           p50 {:.1} ms, p99 {:.1} ms ({} probes of one {})",
        ack50.as_secs_f64() * 1e3,
        ack99.as_secs_f64() * 1e3,
        args.visibility_probes,
        records.trim_end_matches('s'),
    );
    println!(
        "ack→visible        p50 {:.1} ms, p99 {:.1} ms (at most {most_polls} queries until seen)",
        visible50.as_secs_f64() * 1e3,
        visible99.as_secs_f64() * 1e3,
    );
    Ok(())
}

/// The 50th and 99th percentiles (nearest rank) of `samples`.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let rank = |quantile: f64| {
        let index = ((samples.len() as f64 * quantile).ceil() as usize).saturating_sub(1);
        samples.get(index).copied().unwrap_or_default()
    };
    (rank(0.50), rank(0.99))
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
