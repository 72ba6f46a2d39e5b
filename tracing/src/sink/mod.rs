//! The sink: a collector thread that turns the threads' raw records into transit blocks,
//! and a sender thread that delivers them.
//!
//! The collector wakes when a thread hands over a full chunk, when a flush is asked for, and
//! every flush period. It reads each chunk's committed records in order, writes them with
//! `tarn-proto`'s block writers (one stream per thread and kind, as upstream's native
//! protocol describes them), and seals a block when it reaches the block size or at the
//! flush period. At a flush it also reads the records of the chunks the threads are still
//! writing, so an idle thread's events go out too. Sealed blocks, the process description
//! (sent first, once the tick frequency is measured) and stream descriptions (each before
//! its first block) go to the sender ([`sender`]).

pub(crate) mod sender;
pub(crate) mod stats;
pub mod transport;

use crate::buffer::{
    Chunk, KINDS, LOG, METRICS, RecordReader, Shared, THREAD, ThreadEntry, code, dropped_by,
};
use crate::callsite::{LogMetadata, MetricMetadata, SpanLocation, SpanMetadata};
use crate::levels::{Level, LevelFilter};
use crate::property_set::PropertySet;
use crate::time::{Clock, DualTime};
use sender::{METADATA, Request, Sender};
use stats::StatsInner;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tarn_proto::native::{
    AsyncIds, Block, LogBlockWriter, LogDesc, MetricDesc, MetricsBlockWriter, ProcessInfo,
    SpanDesc, SpanLocation as WireLocation, StreamKind, ThreadBlockWriter, encode_block,
    encode_process, encode_stream, time::format_rfc3339_nanos,
};
use transport::Route;

/// Requests from the application to the collector.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub flush_requested: AtomicU64,
    pub flush_done: AtomicU64,
    /// Sender sequence number covering the last completed flush.
    pub flush_mark: AtomicU64,
    pub shutdown: AtomicBool,
    pub collector_done: AtomicBool,
}

pub(crate) struct CollectorConfig {
    pub flush_period: Duration,
    pub block_bytes: usize,
    pub console: LevelFilter,
    pub discard: bool,
    /// How long the tick frequency is measured before the process is described.
    pub calibration: Duration,
}

enum Writer {
    Log(LogBlockWriter),
    Metrics(MetricsBlockWriter),
    Thread(ThreadBlockWriter),
}

impl Writer {
    fn new(kind: usize) -> Self {
        match kind {
            LOG => Writer::Log(LogBlockWriter::new()),
            METRICS => Writer::Metrics(MetricsBlockWriter::new()),
            _ => Writer::Thread(ThreadBlockWriter::new()),
        }
    }

    fn len_bytes(&self) -> usize {
        match self {
            Writer::Log(w) => w.len_bytes(),
            Writer::Metrics(w) => w.len_bytes(),
            Writer::Thread(w) => w.len_bytes(),
        }
    }

    fn finish(self) -> tarn_proto::native::BlockBuffers {
        match self {
            Writer::Log(w) => w.finish(),
            Writer::Metrics(w) => w.finish(),
            Writer::Thread(w) => w.finish(),
        }
    }
}

fn stream_kind_index(writer: &Writer) -> usize {
    match writer {
        Writer::Log(_) => LOG,
        Writer::Metrics(_) => METRICS,
        Writer::Thread(_) => THREAD,
    }
}

fn stream_kind(kind: usize) -> StreamKind {
    match kind {
        LOG => StreamKind::Log,
        METRICS => StreamKind::Metrics,
        _ => StreamKind::Thread,
    }
}

struct StreamState {
    stream_id: String,
    announced: bool,
    writer: Writer,
    events: u32,
    begin: DualTime,
    min_time: i64,
    max_time: i64,
    object_offset: i64,
    next_seq: u64,
    /// Property set address → id in the current block.
    sets: HashMap<usize, u64>,
}

impl StreamState {
    fn new(kind: usize, begin: DualTime) -> Self {
        Self {
            stream_id: uuid::Uuid::new_v4().to_string(),
            announced: false,
            writer: Writer::new(kind),
            events: 0,
            begin,
            min_time: i64::MAX,
            max_time: i64::MIN,
            object_offset: 0,
            next_seq: 0,
            sets: HashMap::new(),
        }
    }

    fn saw(&mut self, time: i64) {
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        self.events += 1;
    }
}

struct ThreadState {
    entry: Arc<ThreadEntry>,
    streams: [Option<StreamState>; KINDS],
    /// Chunks handed over since the last flush period.
    handoffs: u64,
}

pub(crate) struct Collector {
    pub shared: &'static Shared,
    pub control: Arc<Control>,
    pub stats: Arc<StatsInner>,
    pub sender: Option<Arc<Sender>>,
    pub config: CollectorConfig,
    pub clock: Clock,
    pub process: ProcessInfo,
    process_sent: bool,
    frequency: i64,
    threads: HashMap<usize, ThreadState>,
    /// Drops counted by threads that exited.
    exited_drops: [u64; KINDS],
    reported_drops: u64,
    pending: Vec<Request>,
}

/// The address of a thread entry, as a map key.
fn key(entry: *const ThreadEntry) -> usize {
    entry as usize
}

impl Collector {
    pub fn new(
        shared: &'static Shared,
        control: Arc<Control>,
        stats: Arc<StatsInner>,
        sender: Option<Arc<Sender>>,
        config: CollectorConfig,
        clock: Clock,
        process: ProcessInfo,
    ) -> Self {
        Self {
            shared,
            control,
            stats,
            sender,
            config,
            clock,
            process,
            process_sent: false,
            frequency: 0,
            threads: HashMap::new(),
            exited_drops: [0; KINDS],
            reported_drops: 0,
            pending: Vec::new(),
        }
    }

    /// The thread's loop; returns after the final flush at shutdown.
    pub fn run(mut self) {
        let mut next_flush = Instant::now() + self.config.flush_period;
        loop {
            let shutdown = self.control.shutdown.load(Ordering::Acquire);
            let flush_epoch = self.control.flush_requested.load(Ordering::Acquire);
            let flush_asked = flush_epoch > self.control.flush_done.load(Ordering::Relaxed);
            let now = Instant::now();
            let periodic = now >= next_flush;

            // Threads that exited before the queue is taken: all their chunks are in it.
            let exited: Vec<usize> = self
                .threads
                .iter()
                .filter(|(_, t)| t.entry.exited.load(Ordering::Acquire))
                .map(|(k, _)| *k)
                .collect();
            let busy = self.drain_queue() > 0;
            let full = flush_asked || periodic || shutdown;
            if full || self.config.console != LevelFilter::Off {
                // The console shows logs within 100 ms, the gateway gets them each period.
                self.read_current();
            }
            let end = DualTime::now();
            if full {
                self.seal_all(end, true);
                if periodic {
                    self.trim_spares();
                }
                next_flush = now + self.config.flush_period;
            } else {
                self.seal_all(end, false);
            }
            for k in exited {
                self.retire(k, end);
            }
            self.flush_pending();
            self.report_drops();
            if flush_asked {
                let mark = self.sender.as_ref().map_or(0, |s| s.last_seq());
                self.control.flush_mark.store(mark, Ordering::Release);
                self.control
                    .flush_done
                    .store(flush_epoch, Ordering::Release);
            }
            if shutdown {
                break;
            }
            let mut timeout = next_flush.saturating_duration_since(Instant::now());
            if self.config.console != LevelFilter::Off {
                timeout = timeout.min(Duration::from_millis(100));
            }
            if busy {
                // Threads are handing chunks over: come back for them (and give them their
                // chunks back) soon, without waiting to be woken.
                timeout = timeout.min(Duration::from_millis(2));
            }
            if !self.process_sent {
                timeout = timeout.min(
                    self.config
                        .calibration
                        .saturating_sub(self.clock.elapsed())
                        .max(Duration::from_millis(1)),
                );
            }
            std::thread::park_timeout(timeout);
        }
        self.control.collector_done.store(true, Ordering::Release);
    }

    /// Reads and recycles the queued chunks; returns how many there were.
    fn drain_queue(&mut self) -> usize {
        let chunks = self.shared.take_queue();
        let n = chunks.len();
        // Registrations happen before a thread's first chunk is queued.
        let registered: Vec<Arc<ThreadEntry>> = std::mem::take(
            &mut *self
                .shared
                .registrations
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for entry in registered {
            self.threads.insert(
                key(Arc::as_ptr(&entry)),
                ThreadState {
                    entry,
                    streams: Default::default(),
                    handoffs: 0,
                },
            );
        }
        for chunk in chunks {
            // SAFETY: a queued chunk is live and owned by the collector from now on.
            let (owner, cap) = unsafe { ((*chunk).owner, (*chunk).cap) };
            self.consume(chunk, true);
            if let Some(t) = self.threads.get_mut(&key(owner)) {
                t.handoffs += 1;
            }
            let entry = self.threads.get(&key(owner)).map(|t| &*t.entry);
            // SAFETY: the chunk came from the queue and was read completely.
            unsafe { self.shared.recycle(chunk, entry) };
            self.shared.queued_bytes.fetch_sub(cap, Ordering::Relaxed);
        }
        n
    }

    /// Reads the unread records of `chunk`; `whole` when it came from the queue (its owner
    /// is done with it).
    fn consume(&mut self, chunk: *mut Chunk, whole: bool) {
        // SAFETY: the chunk is live: either queued (owned by the collector) or the current
        // chunk of a registered thread, which is freed only after it is queued.
        let (owner, kind, seq) = unsafe { ((*chunk).owner, (*chunk).kind, (*chunk).seq) };
        let Some(thread) = self.threads.get_mut(&key(owner)) else {
            return;
        };
        let created = thread.entry.created;
        let stream = thread.streams[kind].get_or_insert_with(|| StreamState::new(kind, created));
        if stream.next_seq != seq {
            // A current chunk whose predecessor is still queued: read it next time.
            if !whole {
                return;
            }
            stream.next_seq = seq;
        }
        // SAFETY: as above; the collector is the only reader.
        let bytes = unsafe { Chunk::unread(chunk) };
        let read = bytes.len();
        if !self.config.discard {
            let events = transcode(
                kind,
                bytes,
                stream,
                self.config.console,
                &thread.entry.name,
                &self.clock,
                self.frequency,
            );
            self.stats.events.fetch_add(events, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { (*chunk).consumed.fetch_add(read, Ordering::Relaxed) };
        if whole {
            stream.next_seq = seq + 1;
        }
    }

    fn read_current(&mut self) {
        let currents: Vec<*mut Chunk> = self
            .threads
            .values()
            .flat_map(|t| t.entry.current.iter())
            .map(|c| c.load(Ordering::Acquire))
            .filter(|c| !c.is_null())
            .collect();
        for chunk in currents {
            self.consume(chunk, false);
        }
    }

    /// Describes the process, once the tick frequency has been measured long enough (or
    /// when a flush cannot wait).
    fn ensure_process(&mut self, force: bool) -> bool {
        if self.process_sent {
            return true;
        }
        if !force && self.clock.elapsed() < self.config.calibration {
            return false;
        }
        self.frequency = self.clock.frequency();
        self.process.tsc_frequency = self.frequency;
        self.process_sent = true;
        self.pending.push(Request::new(
            Route::Process,
            METADATA,
            encode_process(&self.process),
            0,
        ));
        true
    }

    fn seal_all(&mut self, end: DualTime, all: bool) {
        let block_bytes = self.config.block_bytes;
        let any = self.threads.values().any(|t| {
            t.streams
                .iter()
                .flatten()
                .any(|s| s.events > 0 && (all || s.writer.len_bytes() >= block_bytes))
        });
        if !any || self.config.discard {
            return;
        }
        if self.sender.is_none() {
            // Console only: the logs were printed, nothing is sent.
            for stream in self
                .threads
                .values_mut()
                .flat_map(|t| t.streams.iter_mut())
                .flatten()
            {
                stream.writer = Writer::new(stream_kind_index(&stream.writer));
                stream.events = 0;
                stream.sets.clear();
            }
            return;
        }
        if !self.ensure_process(all) {
            return;
        }
        let mut out = Vec::new();
        for t in self.threads.values_mut() {
            for (kind, stream) in t.streams.iter_mut().enumerate() {
                if let Some(stream) = stream
                    && stream.events > 0
                    && (all || stream.writer.len_bytes() >= block_bytes)
                {
                    seal(
                        &self.process,
                        self.clock.start,
                        self.frequency,
                        &t.entry,
                        kind,
                        stream,
                        end,
                        &mut out,
                    );
                }
            }
        }
        self.pending.extend(out);
    }

    /// Frees the spare chunks of the threads that handed nothing over for a period.
    fn trim_spares(&mut self) {
        for t in self.threads.values_mut() {
            if t.handoffs == 0 {
                // The owner takes the list with the same swap: one of the two gets it.
                let mut spare = t.entry.spare.swap(std::ptr::null_mut(), Ordering::Acquire);
                t.entry.spare_len.store(0, Ordering::Relaxed);
                while !spare.is_null() {
                    // SAFETY: chunks taken off the spare list are the collector's again.
                    unsafe {
                        let next = (*spare).next.load(Ordering::Relaxed);
                        Chunk::free(spare);
                        spare = next;
                    }
                }
            }
            t.handoffs = 0;
        }
    }

    /// Forgets a thread that exited, after sealing what it left.
    fn retire(&mut self, k: usize, end: DualTime) {
        let Some(mut t) = self.threads.remove(&k) else {
            return;
        };
        let has_events = t.streams.iter().flatten().any(|s| s.events > 0);
        if has_events && !self.config.discard && self.ensure_process(true) {
            let mut out = Vec::new();
            for (kind, stream) in t.streams.iter_mut().enumerate() {
                if let Some(stream) = stream
                    && stream.events > 0
                {
                    seal(
                        &self.process,
                        self.clock.start,
                        self.frequency,
                        &t.entry,
                        kind,
                        stream,
                        end,
                        &mut out,
                    );
                }
            }
            self.pending.extend(out);
        }
        for (total, d) in self.exited_drops.iter_mut().zip(dropped_by(&t.entry)) {
            *total += d;
        }
        // Spares the thread never took.
        let mut spare = t.entry.spare.swap(std::ptr::null_mut(), Ordering::Acquire);
        while !spare.is_null() {
            // SAFETY: the owner exited; spares left on its list belong to the collector.
            unsafe {
                let next = (*spare).next.load(Ordering::Relaxed);
                Chunk::free(spare);
                spare = next;
            }
        }
    }

    fn flush_pending(&mut self) {
        let requests = std::mem::take(&mut self.pending);
        if let Some(sender) = &self.sender {
            sender.push(requests);
        }
    }

    fn report_drops(&mut self) {
        let mut totals = self.exited_drops;
        for t in self.threads.values() {
            for (total, d) in totals.iter_mut().zip(dropped_by(&t.entry)) {
                *total += d;
            }
        }
        for (k, total) in totals.iter().enumerate() {
            self.stats.thread_dropped[k].store(*total, Ordering::Relaxed);
        }
        let sum: u64 = totals.iter().sum();
        if sum > self.reported_drops {
            let new = sum - self.reported_drops;
            self.reported_drops = sum;
            crate::warn!(
                "tarn-tracing: {new} events dropped by the application's threads ({sum} in all; \
                 over the memory budget, or logged while formatting another log)"
            );
        }
    }
}

/// Seals the block of `stream`: the stream description first if not sent yet.
#[allow(clippy::too_many_arguments)]
fn seal(
    process: &ProcessInfo,
    start: DualTime,
    frequency: i64,
    entry: &ThreadEntry,
    kind: usize,
    stream: &mut StreamState,
    end: DualTime,
    out: &mut Vec<Request>,
) {
    if !stream.announced {
        let mut properties = BTreeMap::new();
        properties.insert("thread-name".to_owned(), entry.name.clone());
        properties.insert("thread-id".to_owned(), entry.index.to_string());
        let info = stream_kind(kind).stream_info(
            process.process_id.clone(),
            stream.stream_id.clone(),
            properties,
        );
        out.push(Request::new(
            Route::Stream,
            METADATA,
            encode_stream(&info),
            0,
        ));
        stream.announced = true;
    }
    let buffers = std::mem::replace(&mut stream.writer, Writer::new(kind)).finish();
    // The block covers its events, even those read late (written before the previous block
    // was sealed, committed after).
    let mut begin = stream.begin;
    if stream.min_time < begin.ticks {
        begin = shift(begin, stream.min_time, frequency);
    }
    let mut end_time = end;
    if stream.max_time >= end_time.ticks {
        end_time = shift(end, stream.max_time + 1, frequency);
    }
    let nb_objects = buffers.nb_objects;
    let block = Block {
        block_id: uuid::Uuid::new_v4().to_string(),
        stream_id: stream.stream_id.clone(),
        process_id: process.process_id.clone(),
        begin_time: format_rfc3339_nanos(begin.nanos),
        begin_ticks: begin.ticks.wrapping_sub(start.ticks),
        end_time: format_rfc3339_nanos(end_time.nanos),
        end_ticks: end_time.ticks.wrapping_sub(start.ticks),
        payload: buffers.to_payload(),
        object_offset: stream.object_offset,
        nb_objects: i32::try_from(nb_objects).unwrap_or(i32::MAX),
    };
    out.push(Request::new(
        Route::Block,
        1 + kind,
        encode_block(&block),
        u64::from(nb_objects),
    ));
    stream.object_offset += i64::from(nb_objects);
    stream.begin = end_time;
    stream.events = 0;
    stream.min_time = i64::MAX;
    stream.max_time = i64::MIN;
    stream.sets.clear();
}

/// `t` moved to `ticks`, its wall-clock time moved by the same amount.
fn shift(t: DualTime, ticks: i64, frequency: i64) -> DualTime {
    let delta = i128::from(ticks) - i128::from(t.ticks);
    let nanos = if frequency > 0 {
        delta * 1_000_000_000 / i128::from(frequency)
    } else {
        0
    };
    DualTime {
        ticks,
        nanos: i64::try_from(i128::from(t.nanos) + nanos).unwrap_or(t.nanos),
    }
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// # Safety
/// `addr` was recorded from a `&'static T` by this process.
unsafe fn deref<T>(addr: u64) -> &'static T {
    // SAFETY: per the contract.
    unsafe { &*(addr as usize as *const T) }
}

/// # Safety
/// `ptr`/`len` were recorded from a `&'static str` by this process.
unsafe fn static_str(ptr: u64, len: u64) -> &'static str {
    // SAFETY: per the contract, the bytes are a live, valid UTF-8 static string.
    unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(
            ptr as usize as *const u8,
            len as usize,
        ))
    }
}

fn log_desc(d: &'static LogMetadata) -> LogDesc<'static> {
    LogDesc {
        key: std::ptr::from_ref(d) as usize as u64,
        level: u32::from(d.callsite.level.value()),
        fmt_str: d.fmt_str,
        target: d.callsite.target,
        module_path: d.module_path,
        file: d.file,
        line: d.line,
    }
}

fn metric_desc(d: &'static MetricMetadata) -> MetricDesc<'static> {
    MetricDesc {
        key: std::ptr::from_ref(d) as usize as u64,
        name: d.name,
        unit: d.unit,
        target: d.callsite.target,
        file: d.file,
        line: d.line,
        lod: d.callsite.level.lod(),
    }
}

fn span_desc(d: &'static SpanMetadata) -> SpanDesc<'static> {
    SpanDesc {
        key: std::ptr::from_ref(d) as usize as u64,
        name: d.name,
        target: d.callsite.target,
        module_path: d.module_path,
        file: d.file,
        line: d.line,
        lod: d.callsite.level.lod(),
    }
}

fn span_location(d: &'static SpanLocation) -> WireLocation<'static> {
    WireLocation {
        key: std::ptr::from_ref(d) as usize as u64,
        target: d.callsite.target,
        module_path: d.module_path,
        file: d.file,
        line: d.line,
        lod: d.callsite.level.lod(),
    }
}

struct Console<'a> {
    filter: LevelFilter,
    thread: &'a str,
    clock: &'a Clock,
    frequency: i64,
    out: Option<std::io::StderrLock<'static>>,
}

impl Console<'_> {
    fn print(&mut self, level: u8, time: i64, target: &str, msg: &str) {
        let Some(level) = Level::from_value(level) else {
            return;
        };
        if !self.filter.allows(level) {
            return;
        }
        let frequency = if self.frequency > 0 {
            self.frequency
        } else {
            self.clock.frequency().max(1)
        };
        let nanos = shift(self.clock.start, time, frequency).nanos;
        let out = self.out.get_or_insert_with(|| std::io::stderr().lock());
        let _printed = writeln!(
            out,
            "{} {:<5} [{}] {target}: {msg}",
            format_rfc3339_nanos(nanos),
            level.as_str().to_ascii_uppercase(),
            self.thread
        );
    }
}

/// Writes the records in `bytes` into the stream's block writer; returns the number of
/// events.
fn transcode(
    kind: usize,
    bytes: &[u8],
    stream: &mut StreamState,
    console: LevelFilter,
    thread: &str,
    clock: &Clock,
    frequency: i64,
) -> u64 {
    let mut console = Console {
        filter: console,
        thread,
        clock,
        frequency,
        out: None,
    };
    let mut r = RecordReader::new(bytes);
    let mut events = 0;
    while !r.is_empty() {
        let ok = match (&mut stream.writer, kind) {
            (Writer::Log(w), LOG) => log_record(&mut r, w, &mut stream.sets, &mut console),
            (Writer::Metrics(w), METRICS) => metric_record(&mut r, w, &mut stream.sets),
            (Writer::Thread(w), THREAD) => span_record(&mut r, w),
            _ => None,
        };
        let Some(time) = ok else {
            // Unknown or truncated record: cannot happen with records this crate wrote;
            // stop rather than misread.
            break;
        };
        stream.saw(time);
        events += 1;
    }
    events
}

fn set_id(
    sets: &mut HashMap<usize, u64>,
    addr: u64,
    intern: impl FnOnce(&[(&str, &str)]) -> u64,
) -> u64 {
    *sets.entry(addr as usize).or_insert_with(|| {
        // SAFETY: recorded from a `&'static PropertySet` (interned sets are never freed).
        let set: &'static PropertySet = unsafe { deref(addr) };
        let pairs: Vec<(&str, &str)> = set.iter().collect();
        intern(&pairs)
    })
}

fn log_record(
    r: &mut RecordReader<'_>,
    w: &mut LogBlockWriter,
    sets: &mut HashMap<usize, u64>,
    console: &mut Console<'_>,
) -> Option<i64> {
    let [word] = r.words::<1>()?;
    match word & 0xff {
        code::LOG_STATIC => {
            let [desc, time] = r.words::<2>()?;
            // SAFETY: recorded from a `&'static LogMetadata`.
            let d: &'static LogMetadata = unsafe { deref(desc) };
            let time = time as i64;
            w.log_static(&log_desc(d), time);
            console.print(d.callsite.level.value(), time, d.callsite.target, d.fmt_str);
            Some(time)
        }
        code::LOG_FMT => {
            let [desc, time] = r.words::<2>()?;
            let (_, msg) = r.text()?;
            // SAFETY: as above.
            let d: &'static LogMetadata = unsafe { deref(desc) };
            let (time, msg) = (time as i64, text(msg));
            w.log_string(&log_desc(d), time, &msg);
            console.print(d.callsite.level.value(), time, d.callsite.target, &msg);
            Some(time)
        }
        code::LOG_TAGGED_STATIC => {
            let [desc, time, props] = r.words::<3>()?;
            // SAFETY: as above.
            let d: &'static LogMetadata = unsafe { deref(desc) };
            let time = time as i64;
            let id = set_id(sets, props, |p| w.property_set(p));
            w.log_tagged_static(&log_desc(d), id, time);
            console.print(d.callsite.level.value(), time, d.callsite.target, d.fmt_str);
            Some(time)
        }
        code::LOG_TAGGED_FMT => {
            let [desc, time, props] = r.words::<3>()?;
            let (_, msg) = r.text()?;
            // SAFETY: as above.
            let d: &'static LogMetadata = unsafe { deref(desc) };
            let (time, msg) = (time as i64, text(msg));
            let id = set_id(sets, props, |p| w.property_set(p));
            w.log_tagged_string(&log_desc(d), id, time, &msg);
            console.print(d.callsite.level.value(), time, d.callsite.target, &msg);
            Some(time)
        }
        code::LOG_INTEROP => {
            let level = ((word >> 8) & 0xff) as u8;
            let [time] = r.words::<1>()?;
            let (target, msg) = r.text()?;
            let (time, target, msg) = (time as i64, text(target), text(msg));
            w.log_interop(time, level, &target, &msg);
            console.print(level, time, &target, &msg);
            Some(time)
        }
        _ => None,
    }
}

fn metric_record(
    r: &mut RecordReader<'_>,
    w: &mut MetricsBlockWriter,
    sets: &mut HashMap<usize, u64>,
) -> Option<i64> {
    let [word, desc, time, value] = r.words::<4>()?;
    // SAFETY: recorded from a `&'static MetricMetadata`.
    let d: &'static MetricMetadata = unsafe { deref(desc) };
    let desc = metric_desc(d);
    let time = time as i64;
    match word & 0xff {
        code::INT_METRIC => w.int_metric(&desc, value, time),
        code::FLOAT_METRIC => w.float_metric(&desc, f64::from_bits(value), time),
        code::TAGGED_INT_METRIC => {
            let [props] = r.words::<1>()?;
            let id = set_id(sets, props, |p| w.property_set(p));
            w.tagged_int_metric(&desc, id, value, time);
        }
        code::TAGGED_FLOAT_METRIC => {
            let [props] = r.words::<1>()?;
            let id = set_id(sets, props, |p| w.property_set(p));
            w.tagged_float_metric(&desc, id, f64::from_bits(value), time);
        }
        _ => return None,
    }
    Some(time)
}

fn span_record(r: &mut RecordReader<'_>, w: &mut ThreadBlockWriter) -> Option<i64> {
    let [word, desc, time] = r.words::<3>()?;
    let time = time as i64;
    match word & 0xff {
        c @ (code::BEGIN_SPAN | code::END_SPAN) => {
            // SAFETY: recorded from a `&'static SpanMetadata`.
            let d = span_desc(unsafe { deref(desc) });
            if c == code::BEGIN_SPAN {
                w.begin_thread_span(&d, time);
            } else {
                w.end_thread_span(&d, time);
            }
        }
        c @ (code::BEGIN_NAMED | code::END_NAMED) => {
            let (name, _) = r.text()?;
            // SAFETY: recorded from a `&'static SpanLocation`.
            let l = span_location(unsafe { deref(desc) });
            let name = text(name);
            if c == code::BEGIN_NAMED {
                w.begin_thread_named_span(&l, &name, time);
            } else {
                w.end_thread_named_span(&l, &name, time);
            }
        }
        c @ (code::BEGIN_NAMED_STATIC | code::END_NAMED_STATIC) => {
            let [ptr, len] = r.words::<2>()?;
            // SAFETY: recorded from a `&'static SpanLocation` and a `&'static str`.
            let (l, name) = unsafe { (span_location(deref(desc)), static_str(ptr, len)) };
            if c == code::BEGIN_NAMED_STATIC {
                w.begin_thread_named_span(&l, name, time);
            } else {
                w.end_thread_named_span(&l, name, time);
            }
        }
        c @ (code::BEGIN_ASYNC | code::END_ASYNC) => {
            let [span_id, parent_span_id, depth] = r.words::<3>()?;
            let ids = AsyncIds {
                span_id,
                parent_span_id,
                depth: depth as u32,
            };
            // SAFETY: recorded from a `&'static SpanMetadata`.
            let d = span_desc(unsafe { deref(desc) });
            if c == code::BEGIN_ASYNC {
                w.begin_async_span(&d, &ids, time);
            } else {
                w.end_async_span(&d, &ids, time);
            }
        }
        c @ (code::BEGIN_ASYNC_NAMED | code::END_ASYNC_NAMED) => {
            let [span_id, parent_span_id, depth, ptr, len] = r.words::<5>()?;
            let ids = AsyncIds {
                span_id,
                parent_span_id,
                depth: depth as u32,
            };
            // SAFETY: recorded from a `&'static SpanLocation` and a `&'static str`.
            let (l, name) = unsafe { (span_location(deref(desc)), static_str(ptr, len)) };
            if c == code::BEGIN_ASYNC_NAMED {
                w.begin_async_named_span(&l, name, &ids, time);
            } else {
                w.end_async_named_span(&l, name, &ids, time);
            }
        }
        #[cfg(feature = "tracing-bridge")]
        c @ (code::BEGIN_TRACING | code::END_TRACING) => {
            let [span_id, parent_span_id, depth] = r.words::<3>()?;
            let ids = AsyncIds {
                span_id,
                parent_span_id,
                depth: depth as u32,
            };
            // SAFETY: recorded from a `&'static tracing::Metadata<'static>`.
            let m: &'static tracing::Metadata<'static> = unsafe { deref(desc) };
            let l = WireLocation {
                key: desc,
                target: m.target(),
                module_path: m.module_path().unwrap_or_default(),
                file: m.file().unwrap_or_default(),
                line: m.line().unwrap_or_default(),
                lod: crate::interop::level_of(m.level()).lod(),
            };
            if c == code::BEGIN_TRACING {
                w.begin_async_named_span(&l, m.name(), &ids, time);
            } else {
                w.end_async_named_span(&l, m.name(), &ids, time);
            }
        }
        _ => return None,
    }
    Some(time)
}
