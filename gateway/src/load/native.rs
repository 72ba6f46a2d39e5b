//! `tarn load --protocol native`: the Micromegas native protocol at a running gateway.
//!
//! One simulated process is registered (`insert_process`) with three streams
//! (`insert_stream`): `log`, `metrics` and one thread's `cpu` stream. Then come blocks of
//! `--block-events` (10,000) events from `--concurrency` callers, the kinds in rotation:
//! block `k` is a log block when `k % 3 == 0`, a metrics block when 1, a cpu block when 2.
//! Every block is a pure function of the run and its index, so callers build their share
//! without coordination:
//!
//! - its stream's `object_offset` is the number of earlier blocks of that stream times the
//!   block size (every block but the last of a `--total` run is full);
//! - its events are [`TICKS_PER_EVENT`] ticks apart from the stream position
//!   `object_offset`, and `begin_ticks` / `end_ticks` (relative to the process's
//!   `start_ticks`, at 1 GHz) bracket them;
//! - its id is fresh (v4).
//!
//! Log blocks alternate messages without format arguments (`LogStaticStrEvent`) and
//! formatted ones (`LogStringEventV2`); metrics blocks integer and float points; cpu blocks
//! nested thread spans, an outer span with a static name around an inner span named per
//! event (4 events, 2 spans), so every begin has its end in the same block. The final block
//! of a `--total` run holds what is left and is a log block (half a span pair is not
//! well-formed).
//!
//! Stored rows: one per log event (`log_entries`), one per metric event (`measures`), one
//! per thread span, that is per two cpu events (`spans`). A block is retried until it is
//! acknowledged, busy refusals (429/503) included, so a stream's positions have no gaps and
//! every span pairs.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use tarn_proto::native::time::format_rfc3339_nanos;
use tarn_proto::native::{
    Block, BlockBuffers, LogBlockWriter, LogDesc, MetricDesc, MetricsBlockWriter, ProcessInfo,
    SpanDesc, SpanLocation, StreamInfo, StreamKind, ThreadBlockWriter, encode_block,
    encode_process, encode_stream,
};

use super::shapes::Rng;
use super::{LoadArgs, Outcome, Retry, SECONDS_PER_TICK, cpu_ticks, print_throughput};

/// Ticks (nanoseconds: the process says 1 GHz) between two events of a stream.
pub const TICKS_PER_EVENT: i64 = 1_000;
/// Ticks per second of the simulated process.
pub const TSC_FREQUENCY: i64 = 1_000_000_000;
/// `start_ticks` of the simulated process.
const START_TICKS: i64 = 1 << 20;

/// The kind of a block: one per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Log,
    Metrics,
    Cpu,
}

impl BlockKind {
    /// The kinds, in rotation order.
    pub const ALL: [BlockKind; 3] = [BlockKind::Log, BlockKind::Metrics, BlockKind::Cpu];

    fn index(self) -> usize {
        match self {
            BlockKind::Log => 0,
            BlockKind::Metrics => 1,
            BlockKind::Cpu => 2,
        }
    }

    /// The stream kind (type descriptions and tag) of the stream.
    pub fn stream_kind(self) -> StreamKind {
        match self {
            BlockKind::Log => StreamKind::Log,
            BlockKind::Metrics => StreamKind::Metrics,
            BlockKind::Cpu => StreamKind::Thread,
        }
    }

    /// The table the events land in.
    pub fn table(self) -> &'static str {
        match self {
            BlockKind::Log => "log_entries",
            BlockKind::Metrics => "measures",
            BlockKind::Cpu => "spans",
        }
    }

    /// Rows that `events` acknowledged events of this kind become: a thread span is a
    /// begin and an end event.
    pub fn rows(self, events: u64) -> u64 {
        match self {
            BlockKind::Cpu => events / 2,
            BlockKind::Log | BlockKind::Metrics => events,
        }
    }

    fn events_name(self) -> &'static str {
        match self {
            BlockKind::Log => "log events",
            BlockKind::Metrics => "metric events",
            BlockKind::Cpu => "span events",
        }
    }
}

/// Where one block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub kind: BlockKind,
    /// Objects in earlier blocks of the stream.
    pub object_offset: u64,
    pub events: usize,
}

/// The simulated process and the layout of its blocks.
#[derive(Debug, Clone)]
pub struct NativeRun {
    pub process_id: String,
    /// Stream ids, in [`BlockKind::ALL`] order.
    pub stream_ids: [String; 3],
    /// The process's start, Unix ns (tick `START_TICKS`).
    pub start_nanos: i64,
    /// Events per block (even, so cpu blocks hold whole spans).
    pub block_events: usize,
    /// Events of the run (`--total`), or unbounded (timed runs).
    pub total: Option<u64>,
    /// Seed of the values.
    pub seed: u64,
}

/// Log call sites: a message without format arguments, and a formatted one.
const LOG_STATIC: LogDesc<'static> = LogDesc {
    key: 0x10,
    level: 4,
    fmt_str: "request handled",
    target: "tarn_load::native",
    module_path: "tarn_load::native",
    file: "gateway/src/load/native.rs",
    line: 101,
};
const LOG_FORMATTED: LogDesc<'static> = LogDesc {
    key: 0x11,
    level: 3,
    fmt_str: "request {} handled in {} ms",
    target: "tarn_load::native",
    module_path: "tarn_load::native",
    file: "gateway/src/load/native.rs",
    line: 102,
};
const METRIC_INT: MetricDesc<'static> = MetricDesc {
    key: 0x20,
    name: "load.requests",
    unit: "count",
    target: "tarn_load::native",
    file: "gateway/src/load/native.rs",
    line: 201,
    lod: 1,
};
const METRIC_FLOAT: MetricDesc<'static> = MetricDesc {
    key: 0x21,
    name: "load.latency",
    unit: "ms",
    target: "tarn_load::native",
    file: "gateway/src/load/native.rs",
    line: 202,
    lod: 1,
};
const SPAN_OUTER: SpanDesc<'static> = SpanDesc {
    key: 0x30,
    name: "load.request",
    target: "tarn_load::native",
    module_path: "tarn_load::native",
    file: "gateway/src/load/native.rs",
    line: 301,
    lod: 1,
};
const SPAN_INNER: SpanLocation<'static> = SpanLocation {
    key: 0x31,
    target: "tarn_load::native",
    module_path: "tarn_load::native",
    file: "gateway/src/load/native.rs",
    line: 302,
    lod: 1,
};
const INNER_NAMES: [&str; 3] = ["load.query", "load.render", "load.cache"];

/// The buffers of a block of `kind` holding `events` events (even for cpu blocks), the
/// first at tick `first_tick`, the others [`TICKS_PER_EVENT`] apart. Values come from `rng`.
pub fn write_events(
    kind: BlockKind,
    first_tick: i64,
    events: usize,
    rng: &mut Rng,
) -> BlockBuffers {
    let tick = |j: usize| first_tick + i64::try_from(j).unwrap_or(i64::MAX) * TICKS_PER_EVENT;
    match kind {
        BlockKind::Log => {
            let mut writer = LogBlockWriter::new();
            let mut msg = String::new();
            for j in 0..events {
                if j % 2 == 0 {
                    writer.log_static(&LOG_STATIC, tick(j));
                } else {
                    msg.clear();
                    let _formatted = write!(
                        msg,
                        "request {} handled in {} ms",
                        rng.below(1_000_000),
                        rng.below(500)
                    );
                    writer.log_string(&LOG_FORMATTED, tick(j), &msg);
                }
            }
            writer.finish()
        }
        BlockKind::Metrics => {
            let mut writer = MetricsBlockWriter::new();
            for j in 0..events {
                if j % 2 == 0 {
                    writer.int_metric(&METRIC_INT, rng.below(10_000), tick(j));
                } else {
                    writer.float_metric(&METRIC_FLOAT, rng.unit() * 500.0, tick(j));
                }
            }
            writer.finish()
        }
        BlockKind::Cpu => {
            let mut writer = ThreadBlockWriter::new();
            let mut j = 0;
            while j + 4 <= events {
                let inner = INNER_NAMES[(rng.below(INNER_NAMES.len() as u64)) as usize];
                writer.begin_thread_span(&SPAN_OUTER, tick(j));
                writer.begin_thread_named_span(&SPAN_INNER, inner, tick(j + 1));
                writer.end_thread_named_span(&SPAN_INNER, inner, tick(j + 2));
                writer.end_thread_span(&SPAN_OUTER, tick(j + 3));
                j += 4;
            }
            if j + 2 <= events {
                writer.begin_thread_span(&SPAN_OUTER, tick(j));
                writer.end_thread_span(&SPAN_OUTER, tick(j + 1));
            }
            writer.finish()
        }
    }
}

impl NativeRun {
    /// A new process (fresh ids) starting now.
    pub fn new(block_events: usize, total: Option<u64>, seed: u64) -> NativeRun {
        let id = || uuid::Uuid::new_v4().to_string();
        NativeRun {
            process_id: id(),
            stream_ids: [id(), id(), id()],
            start_nanos: crate::clock::now_nanos(),
            block_events,
            total,
            seed,
        }
    }

    /// Blocks of the run, if it is counted.
    pub fn blocks(&self) -> Option<u64> {
        let size = self.block_events.max(1) as u64;
        self.total.map(|total| total.div_ceil(size))
    }

    /// Block `index`: its kind, stream offset and size; `None` past the end of the run.
    pub fn plan(&self, index: u64) -> Option<Planned> {
        let size = self.block_events as u64;
        let mut kind = BlockKind::ALL[(index % 3) as usize];
        let mut events = self.block_events;
        if let Some(total) = self.total {
            let first = index.checked_mul(size)?;
            if first >= total {
                return None;
            }
            let left = total - first;
            if left < size {
                // The short final block: a log block, whatever its turn.
                kind = BlockKind::Log;
                events = usize::try_from(left).unwrap_or(0);
            }
        }
        // Earlier blocks of the same stream: the indexes below `index` congruent to its
        // kind modulo 3, all full.
        let earlier = (index + 2 - kind.index() as u64) / 3;
        Some(Planned {
            kind,
            object_offset: earlier * size,
            events,
        })
    }

    /// The `insert_process` body.
    pub fn process_info(&self) -> ProcessInfo {
        ProcessInfo {
            process_id: self.process_id.clone(),
            exe: "tarn-load".to_owned(),
            username: "load".to_owned(),
            realname: "tarn load".to_owned(),
            computer: "load-host".to_owned(),
            distro: std::env::consts::OS.to_owned(),
            cpu_brand: String::new(),
            tsc_frequency: TSC_FREQUENCY,
            start_time: format_rfc3339_nanos(self.start_nanos),
            start_ticks: START_TICKS,
            parent_process_id: None,
            properties: [
                ("service.name".to_owned(), "tarn-load-native".to_owned()),
                ("service.instance.id".to_owned(), self.process_id.clone()),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// The `insert_stream` body of the stream of `kind`.
    pub fn stream_info(&self, kind: BlockKind) -> StreamInfo {
        let mut properties = std::collections::BTreeMap::new();
        if kind == BlockKind::Cpu {
            properties.insert("thread-id".to_owned(), "1".to_owned());
            properties.insert("thread-name".to_owned(), "load-main".to_owned());
        }
        kind.stream_kind().stream_info(
            self.process_id.clone(),
            self.stream_ids[kind.index()].clone(),
            properties,
        )
    }

    /// Block `index` as planned, with a fresh block id.
    pub fn block(&self, index: u64, planned: &Planned) -> Block {
        let position = i64::try_from(planned.object_offset).unwrap_or(i64::MAX);
        let events = i64::try_from(planned.events).unwrap_or(i64::MAX);
        let begin_ticks = position.saturating_mul(TICKS_PER_EVENT);
        let end_ticks = (position.saturating_add(events)).saturating_mul(TICKS_PER_EVENT);
        let mut rng = Rng::new(self.seed, index);
        let buffers = write_events(
            planned.kind,
            START_TICKS + begin_ticks,
            planned.events,
            &mut rng,
        );
        // 1 tick = 1 ns.
        Block {
            block_id: uuid::Uuid::new_v4().to_string(),
            stream_id: self.stream_ids[planned.kind.index()].clone(),
            process_id: self.process_id.clone(),
            begin_time: format_rfc3339_nanos(self.start_nanos.saturating_add(begin_ticks)),
            begin_ticks,
            end_time: format_rfc3339_nanos(self.start_nanos.saturating_add(end_ticks)),
            end_ticks,
            payload: buffers.to_payload(),
            object_offset: position,
            nb_objects: i32::try_from(buffers.nb_objects).unwrap_or(i32::MAX),
        }
    }
}

/// Counters shared by the callers.
#[derive(Debug, Default)]
struct NativeCounters {
    /// Acknowledged events, by [`BlockKind::ALL`] position.
    events: [AtomicU64; 3],
    blocks: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
}

impl NativeCounters {
    fn acknowledged(&self) -> u64 {
        self.events.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// The native routes of one gateway.
#[derive(Debug, Clone)]
struct NativeClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl NativeClient {
    async fn post(&self, route: &str, body: Bytes) -> Outcome {
        let mut post = self
            .http
            .post(format!("{}/ingestion/{route}", self.base))
            .header("content-type", "application/octet-stream")
            .body(body);
        if let Some(key) = &self.api_key {
            post = post.bearer_auth(key);
        }
        match post.send().await {
            Ok(response) if response.status().is_success() => Outcome::Acknowledged,
            Ok(response) if matches!(response.status().as_u16(), 429 | 503) => Outcome::Busy,
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                Outcome::Failed(format!("HTTP {status}: {text}"))
            }
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    /// Posts until acknowledged, under the [`Retry`] policy.
    async fn deliver(
        &self,
        route: &str,
        body: Bytes,
        counters: &NativeCounters,
    ) -> anyhow::Result<()> {
        let mut retry = Retry::default();
        loop {
            let outcome = self.post(route, body.clone()).await;
            let what = || route.to_owned();
            if retry
                .settle(outcome, &counters.busy, &counters.failed, what)
                .await?
            {
                return Ok(());
            }
        }
    }
}

/// A caller: takes the next block index until the run ends (the deadline, or all blocks
/// sent) and delivers each block it took, even past the deadline, so streams have no gaps.
async fn caller(
    client: NativeClient,
    run: Arc<NativeRun>,
    next: Arc<AtomicU64>,
    counters: Arc<NativeCounters>,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(());
        }
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(planned) = run.plan(index) else {
            return Ok(());
        };
        let builder = Arc::clone(&run);
        let body = tokio::task::spawn_blocking(move || {
            Bytes::from(encode_block(&builder.block(index, &planned)))
        })
        .await
        .context("building a block")?;
        client
            .deliver("insert_block", body, &counters)
            .await
            .with_context(|| format!("block {index}"))?;
        counters.events[planned.kind.index()].fetch_add(planned.events as u64, Ordering::Relaxed);
        counters.blocks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the rows of `table` that belong to `process_id`.
async fn stored_rows(
    args: &LoadArgs,
    flightsql: &str,
    table: &str,
    process_id: &str,
) -> anyhow::Result<u64> {
    let sql = format!("SELECT count(*) AS n FROM {table} WHERE process_id = '{process_id}'");
    let n = super::count(args, flightsql, sql).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs `tarn load --protocol native`.
pub(super) async fn load(args: LoadArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.block_events < 2 || !args.block_events.is_multiple_of(2) {
        bail!("--block-events must be even and at least 2 (a thread span is two events)");
    }
    let run = Arc::new(NativeRun::new(args.block_events, args.total, args.seed));
    let client = NativeClient {
        http: reqwest::Client::new(),
        base: format!("http://{}", args.target()),
        api_key: args.api_key.clone(),
    };
    let counters = Arc::new(NativeCounters::default());
    client
        .deliver(
            "insert_process",
            Bytes::from(encode_process(&run.process_info())),
            &counters,
        )
        .await?;
    for kind in BlockKind::ALL {
        client
            .deliver(
                "insert_stream",
                Bytes::from(encode_stream(&run.stream_info(kind))),
                &counters,
            )
            .await?;
    }
    let sample = encode_block(&run.block(0, &run.plan(0).context("an empty run")?));
    println!(
        "block              {} events, {} bytes encoded (log block)",
        args.block_events,
        sample.len()
    );
    drop(sample);

    let loader_at_start = cpu_ticks(std::process::id()).ok();
    let next = Arc::new(AtomicU64::new(0));
    let mut callers = tokio::task::JoinSet::new();
    let started = Instant::now();
    let deadline = match args.total {
        Some(_) => None,
        None => Some(
            started
                + Duration::from_secs_f64(args.warmup_secs)
                + Duration::from_secs_f64(args.duration_secs),
        ),
    };
    for _ in 0..args.concurrency {
        callers.spawn(caller(
            client.clone(),
            Arc::clone(&run),
            Arc::clone(&next),
            Arc::clone(&counters),
            deadline,
        ));
    }
    let (window_start, acked_at_start, cpu_at_start) = match args.total {
        Some(_) => (started, 0, args.pid.map(cpu_ticks).transpose()?),
        None => {
            tokio::time::sleep(Duration::from_secs_f64(args.warmup_secs)).await;
            (
                Instant::now(),
                counters.acknowledged(),
                args.pid.map(cpu_ticks).transpose()?,
            )
        }
    };
    while let Some(result) = callers.join_next().await {
        result.context("caller task")??;
    }
    let cpu_at_end = args.pid.map(cpu_ticks).transpose()?;
    let window = window_start.elapsed().as_secs_f64();
    let loader_at_end = cpu_ticks(std::process::id()).ok();
    let acked = counters.acknowledged();
    tokio::time::sleep(Duration::from_secs_f64(args.drain_secs)).await;
    let cpu_after_drain = args.pid.map(cpu_ticks).transpose()?;

    println!(
        "run                {} (process_id, service.instance.id)",
        run.process_id
    );
    println!("acknowledged       {acked} events in total");
    for kind in BlockKind::ALL {
        println!(
            "  {:<16} {}",
            kind.events_name(),
            counters.events[kind.index()].load(Ordering::Relaxed)
        );
    }
    println!(
        "blocks             {}",
        counters.blocks.load(Ordering::Relaxed)
    );
    println!(
        "busy refusals      {}",
        counters.busy.load(Ordering::Relaxed)
    );
    println!(
        "failed requests    {}",
        counters.failed.load(Ordering::Relaxed)
    );
    print_throughput(
        "events",
        window,
        acked - acked_at_start,
        cpu_at_start,
        cpu_at_end,
        cpu_after_drain,
    );
    if let (Some(start), Some(end)) = (loader_at_start, loader_at_end) {
        let cpu = (end - start) as f64 * SECONDS_PER_TICK;
        println!("load generator CPU {cpu:.2} s ({:.2} cores)", cpu / window);
    }
    if let Some(flightsql) = &args.flightsql {
        let mut found = 0;
        let mut expected = 0;
        for kind in BlockKind::ALL {
            let events = counters.events[kind.index()].load(Ordering::Relaxed);
            let rows = stored_rows(&args, flightsql, kind.table(), &run.process_id).await?;
            println!(
                "stored {:<11} {rows} rows ({} expected from {events} {})",
                kind.table(),
                kind.rows(events),
                kind.events_name()
            );
            found += rows;
            expected += kind.rows(events);
        }
        println!("stored             {found} rows (expected {expected})");
        if found != expected {
            bail!("{found} rows stored where {expected} were acknowledged");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_proto::native::{Event, SpanPhase, StreamDecoder, decode_block};

    fn run(total: Option<u64>) -> NativeRun {
        NativeRun {
            process_id: "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d".into(),
            stream_ids: [
                "1c9a7f0e-4f9b-4c4a-8f39-3f3f8e0c2a11".into(),
                "2c9a7f0e-4f9b-4c4a-8f39-3f3f8e0c2a11".into(),
                "3c9a7f0e-4f9b-4c4a-8f39-3f3f8e0c2a11".into(),
            ],
            start_nanos: 1_800_000_000_000_000_000,
            block_events: 10,
            total,
            seed: 1,
        }
    }

    #[test]
    fn blocks_rotate_with_contiguous_offsets_per_stream() {
        let run = run(None);
        let mut next = [0u64; 3];
        for index in 0..30 {
            let planned = run.plan(index).expect("timed runs never end");
            assert_eq!(planned.kind, BlockKind::ALL[(index % 3) as usize]);
            assert_eq!(planned.object_offset, next[planned.kind.index()], "{index}");
            next[planned.kind.index()] += planned.events as u64;
        }
    }

    #[test]
    fn a_counted_run_ends_with_a_short_log_block() {
        let run = run(Some(53));
        let plans: Vec<Planned> = (0..10).map_while(|index| run.plan(index)).collect();
        assert_eq!(plans.len(), 6);
        assert_eq!(plans.iter().map(|p| p.events).sum::<usize>(), 53);
        // Index 5 would be a metrics block: the remainder goes to the log stream instead.
        assert_eq!(
            plans[5],
            Planned {
                kind: BlockKind::Log,
                object_offset: 20,
                events: 3
            }
        );
        assert_eq!(run.blocks(), Some(6));
    }

    #[test]
    fn blocks_decode_to_the_events_planned() {
        let run = run(None);
        for index in 0..3 {
            let planned = run.plan(index).expect("planned");
            let block = decode_block(&encode_block(&run.block(index, &planned))).expect("decodes");
            let decoder = StreamDecoder::from_stream(&run.stream_info(planned.kind));
            let content = decoder
                .decode_payload(&block.payload, 1 << 20)
                .expect("payload");
            let mut open = 0i32;
            let mut count = 0;
            for event in decoder.events(&content) {
                count += 1;
                match event.expect("event") {
                    Event::Log(log) => assert_eq!(planned.kind, BlockKind::Log, "{log:?}"),
                    Event::Measure(_) => assert_eq!(planned.kind, BlockKind::Metrics),
                    Event::Span(span) => {
                        open += if span.phase == SpanPhase::Begin {
                            1
                        } else {
                            -1
                        };
                        assert!((0..=2).contains(&open));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(count, 10);
            assert_eq!(open, 0);
            assert_eq!(block.nb_objects, 10);
            assert_eq!(block.end_ticks - block.begin_ticks, 10 * TICKS_PER_EVENT);
        }
    }
}
