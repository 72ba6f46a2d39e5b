//! Starting and stopping telemetry: the builder, the guard, flush, stats, the panic hook.

use crate::buffer::{self, Shared};
use crate::callsite;
use crate::levels::{Filter, LevelFilter};
use crate::process;
use crate::sink::sender::Sender;
use crate::sink::stats::{Stats, StatsInner};
use crate::sink::transport::Transport;
use crate::sink::{Collector, CollectorConfig, Control};
use crate::time::Clock;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Why telemetry did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Telemetry was already started in this process (it starts once per process).
    AlreadyStarted,
    /// A setting could not be used.
    Config(String),
    /// A thread could not be spawned.
    Spawn(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AlreadyStarted => {
                f.write_str("telemetry was already started in this process")
            }
            StartError::Config(e) => write!(f, "telemetry configuration: {e}"),
            StartError::Spawn(e) => write!(f, "telemetry threads: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Settings of the telemetry; [`TelemetryBuilder::start`] starts it.
///
/// ```no_run
/// let _telemetry = tarn_tracing::TelemetryBuilder::new()
///     .url("http://127.0.0.1:9000")
///     .api_key("secret")
///     .service_name("my-service")
///     .start()?;
/// tarn_tracing::info!("started");
/// # Ok::<(), tarn_tracing::StartError>(())
/// ```
pub struct TelemetryBuilder {
    url: Option<String>,
    api_key: Option<String>,
    filter: Filter,
    console: LevelFilter,
    flush_period: Duration,
    max_queue_bytes: usize,
    chunk_bytes: usize,
    block_bytes: usize,
    properties: BTreeMap<String, String>,
    parent_process_id: Option<String>,
    transport: Option<Box<dyn Transport>>,
    discard: bool,
    panic_hook: bool,
    shutdown_timeout: Duration,
    request_timeout: Duration,
    max_backoff: Duration,
    calibration: Duration,
    kinds: (bool, bool, bool),
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("filter", &self.filter.to_string())
            .field("console", &self.console)
            .field("flush_period", &self.flush_period)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("transport", &self.transport.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TelemetryBuilder {
    /// Defaults: no destination, filter `info`, console off, flush every 5 s, 64 MiB budget.
    pub fn new() -> Self {
        Self {
            url: None,
            api_key: None,
            filter: Filter::default(),
            console: LevelFilter::Off,
            flush_period: Duration::from_secs(5),
            max_queue_bytes: 64 << 20,
            chunk_bytes: 64 << 10,
            block_bytes: 1 << 20,
            properties: BTreeMap::new(),
            parent_process_id: None,
            transport: None,
            discard: false,
            panic_hook: true,
            shutdown_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
            calibration: Duration::from_secs(1),
            kinds: (true, true, true),
        }
    }

    /// Reads the environment (each `TARN_` variable has a Micromegas alias):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `TARN_TELEMETRY_URL`, `MICROMEGAS_TELEMETRY_URL` | gateway base URL (`http://host:9000`) |
    /// | `TARN_TELEMETRY_API_KEY`, `MICROMEGAS_INGESTION_API_KEY` | bearer API key |
    /// | `TARN_TELEMETRY_FILTER` | filter, e.g. `info,my_crate::db=debug` |
    /// | `TARN_TELEMETRY_CONSOLE` | console level (`off`, `info`...) |
    /// | `TARN_TELEMETRY_FLUSH_PERIOD`, `MICROMEGAS_FLUSH_PERIOD` | seconds between flushes |
    /// | `TARN_TELEMETRY_MAX_QUEUE_BYTES`, `MICROMEGAS_TELEMETRY_HARD_QUEUE_BYTES` | memory budget |
    /// | `TARN_PROCESS_PROPERTIES`, `MICROMEGAS_PROCESS_PROPERTIES` | `k=v,k2=v2` process properties |
    /// | `TARN_TELEMETRY_PARENT_PROCESS`, `MICROMEGAS_TELEMETRY_PARENT_PROCESS` | parent process id |
    ///
    /// Values that do not parse are ignored (with a message on stderr).
    #[must_use]
    pub fn from_env(mut self) -> Self {
        if let Some(url) = process::env(&["TARN_TELEMETRY_URL", "MICROMEGAS_TELEMETRY_URL"]) {
            self.url = Some(url);
        }
        if let Some(key) = process::env(&["TARN_TELEMETRY_API_KEY", "MICROMEGAS_INGESTION_API_KEY"])
        {
            self.api_key = Some(key);
        }
        if let Some(filter) = process::env(&["TARN_TELEMETRY_FILTER"]) {
            match filter.parse() {
                Ok(f) => self.filter = f,
                Err(e) => eprintln!("tarn-tracing: TARN_TELEMETRY_FILTER ignored: {e}"),
            }
        }
        if let Some(console) = process::env(&["TARN_TELEMETRY_CONSOLE"]) {
            match console.parse() {
                Ok(level) => self.console = level,
                Err(e) => eprintln!("tarn-tracing: TARN_TELEMETRY_CONSOLE ignored: {e}"),
            }
        }
        if let Some(period) =
            process::env(&["TARN_TELEMETRY_FLUSH_PERIOD", "MICROMEGAS_FLUSH_PERIOD"])
        {
            match period.parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 => {
                    self.flush_period = Duration::from_secs_f64(s.min(86_400.0));
                }
                _ => eprintln!("tarn-tracing: flush period `{period}` ignored"),
            }
        }
        if let Some(bytes) = process::env(&[
            "TARN_TELEMETRY_MAX_QUEUE_BYTES",
            "MICROMEGAS_TELEMETRY_HARD_QUEUE_BYTES",
        ]) {
            match bytes.parse::<usize>() {
                Ok(b) => self.max_queue_bytes = b,
                Err(_) => eprintln!("tarn-tracing: queue budget `{bytes}` ignored"),
            }
        }
        if let Some(props) =
            process::env(&["TARN_PROCESS_PROPERTIES", "MICROMEGAS_PROCESS_PROPERTIES"])
        {
            for (k, v) in process::parse_properties(&props) {
                self.properties.entry(k).or_insert(v);
            }
        }
        if let Some(parent) = process::env(&[
            "TARN_TELEMETRY_PARENT_PROCESS",
            "MICROMEGAS_TELEMETRY_PARENT_PROCESS",
        ]) {
            self.parent_process_id = Some(parent);
        }
        self
    }

    /// The gateway's base URL: requests go to `{url}/ingestion/insert_{process,stream,block}`.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sent as `Authorization: Bearer <key>`.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sends through `transport` instead of HTTP (tests, or a process that feeds its own
    /// telemetry to itself in process).
    #[must_use]
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// A sink that accepts every event and discards it on the sink thread, without encoding
    /// it: what the calling thread pays, alone (benchmarks).
    #[must_use]
    pub fn discard(mut self) -> Self {
        self.discard = true;
        self
    }

    /// Which events record.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Turns whole kinds of events on or off (all on by default).
    #[must_use]
    pub fn kinds(mut self, logs: bool, metrics: bool, spans: bool) -> Self {
        self.kinds = (logs, metrics, spans);
        self
    }

    /// Prints log entries up to `level` on stderr (from the sink thread).
    #[must_use]
    pub fn console(mut self, level: LevelFilter) -> Self {
        self.console = level;
        self
    }

    /// How often buffers are flushed, idle threads' included.
    #[must_use]
    pub fn flush_period(mut self, period: Duration) -> Self {
        self.flush_period = period.max(Duration::from_millis(1));
        self
    }

    /// The memory budget: bytes held by full buffers and unsent requests. Past three quarters
    /// of it span events are dropped, past it every event is (and counted).
    #[must_use]
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// Size of the per-thread buffer chunks (64 KiB by default).
    #[must_use]
    pub fn chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes;
        self
    }

    /// Uncompressed size at which a block is sealed before the flush period (1 MiB).
    #[must_use]
    pub fn block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes.max(1024);
        self
    }

    /// A process property.
    #[must_use]
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// The `service.name` process property.
    #[must_use]
    pub fn service_name(self, name: impl Into<String>) -> Self {
        self.property("service.name", name)
    }

    /// The parent process (its process id).
    #[must_use]
    pub fn parent_process_id(mut self, id: impl Into<String>) -> Self {
        self.parent_process_id = Some(id.into());
        self
    }

    /// Installs a panic hook that records the panic as a fatal log and flushes (on by
    /// default).
    #[must_use]
    pub fn panic_hook(mut self, install: bool) -> Self {
        self.panic_hook = install;
        self
    }

    /// How long dropping the guard waits for the last requests (5 s).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long one HTTP request may take (10 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The longest wait between two attempts (30 s; a `Retry-After` can ask for more).
    #[must_use]
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// How long the tick frequency is measured before the process description is sent
    /// (1 s; a flush sends it earlier). Ignored when the hardware declares its frequency.
    #[must_use]
    pub fn calibration(mut self, duration: Duration) -> Self {
        self.calibration = duration;
        self
    }

    /// Starts the telemetry: the sink's threads, the panic hook, the filter. Events are
    /// recorded from now until the guard is dropped. Once per process.
    pub fn start(self) -> Result<TelemetryGuard, StartError> {
        let transport: Option<Box<dyn Transport>> = match (self.transport, &self.url) {
            (Some(t), _) => Some(t),
            #[cfg(feature = "http")]
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(StartError::Config(format!(
                        "telemetry URL `{url}` is not http:// or https://"
                    )));
                }
                Some(Box::new(crate::sink::transport::HttpTransport::new(
                    url,
                    self.api_key.as_deref(),
                    self.request_timeout,
                )))
            }
            #[cfg(not(feature = "http"))]
            (None, Some(_)) => {
                return Err(StartError::Config(
                    "a telemetry URL needs the `http` feature".to_owned(),
                ));
            }
            (None, None) => None,
        };
        if !buffer::install(self.chunk_bytes, self.max_queue_bytes) {
            return Err(StartError::AlreadyStarted);
        }
        let shared: &'static Shared = buffer::shared().ok_or(StartError::AlreadyStarted)?;
        let clock = Clock::start();
        let process_id = uuid::Uuid::new_v4().to_string();
        let stats = Arc::new(StatsInner::default());
        let control = Arc::new(Control::default());
        let discard = self.discard || (transport.is_none() && self.console == LevelFilter::Off);
        let transport = if discard { None } else { transport };
        let sender = match transport {
            Some(t) => {
                let sender = Arc::new(Sender::new(Arc::clone(&stats), shared, self.max_backoff));
                let s = Arc::clone(&sender);
                std::thread::Builder::new()
                    .name("tarn-telemetry-sender".into())
                    .spawn(move || s.run(t))
                    .map_err(StartError::Spawn)?;
                Some(sender)
            }
            None => None,
        };
        let info = process::describe(
            process_id.clone(),
            self.parent_process_id,
            self.properties,
            &clock,
        );
        let collector = Collector::new(
            shared,
            Arc::clone(&control),
            Arc::clone(&stats),
            sender.clone(),
            CollectorConfig {
                flush_period: self.flush_period,
                block_bytes: self.block_bytes,
                console: self.console,
                discard,
                calibration: self.calibration,
            },
            clock,
            info,
        );
        let handle = std::thread::Builder::new()
            .name("tarn-telemetry-collector".into())
            .spawn(move || collector.run())
            .map_err(StartError::Spawn)?;
        let _first = shared.sink_thread.set(handle.thread().clone());
        let _first = HANDLE.set(Handle {
            shared,
            control,
            stats,
            sender,
            process_id: process_id.clone(),
        });
        callsite::set_filter(self.filter);
        let (logs, metrics, spans) = self.kinds;
        callsite::set_kinds(logs, metrics, spans);
        callsite::set_active(true);
        if self.panic_hook {
            install_panic_hook();
        }
        Ok(TelemetryGuard {
            process_id,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

struct Handle {
    shared: &'static Shared,
    control: Arc<Control>,
    stats: Arc<StatsInner>,
    sender: Option<Arc<Sender>>,
    process_id: String,
}

static HANDLE: OnceLock<Handle> = OnceLock::new();

/// Keeps telemetry running; dropping it flushes and stops it ([`shutdown`]).
#[must_use = "telemetry stops when the guard is dropped"]
#[derive(Debug)]
pub struct TelemetryGuard {
    process_id: String,
    shutdown_timeout: Duration,
}

impl TelemetryGuard {
    /// The process id sent to the gateway.
    pub fn process_id(&self) -> &str {
        &self.process_id
    }

    /// See [`flush`].
    pub fn flush(&self, timeout: Duration) -> bool {
        flush(timeout)
    }

    /// See [`stats`].
    pub fn stats(&self) -> Stats {
        stats().unwrap_or_default()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        shutdown(self.shutdown_timeout);
    }
}

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends everything recorded before the call (every thread's buffers) and waits until it
/// is delivered, refused or dropped, at most `timeout`. True when it all finished in time.
pub fn flush(timeout: Duration) -> bool {
    let Some(h) = HANDLE.get() else {
        return true;
    };
    if h.control.collector_done.load(Ordering::Acquire) {
        return true;
    }
    let deadline = Instant::now() + timeout;
    let epoch = h.control.flush_requested.fetch_add(1, Ordering::AcqRel) + 1;
    h.shared.wake_sink();
    if !wait_until(deadline, || {
        h.control.flush_done.load(Ordering::Acquire) >= epoch
            || h.control.collector_done.load(Ordering::Acquire)
    }) {
        return false;
    }
    let mark = h.control.flush_mark.load(Ordering::Acquire);
    match &h.sender {
        Some(sender) => wait_until(deadline, || sender.finished_up_to(mark)),
        None => true,
    }
}

/// Stops the telemetry: no more events are recorded, the buffers are flushed and sent,
/// waiting at most `timeout` for the gateway. Dropping the [`TelemetryGuard`] calls it.
pub fn shutdown(timeout: Duration) {
    let Some(h) = HANDLE.get() else {
        return;
    };
    if h.control.shutdown.swap(true, Ordering::AcqRel) {
        return;
    }
    let deadline = Instant::now() + timeout;
    callsite::set_active(false);
    h.shared.wake_sink();
    wait_until(deadline, || {
        h.control.collector_done.load(Ordering::Acquire)
    });
    h.shared.accepting.store(false, Ordering::Release);
    if let Some(sender) = &h.sender {
        sender.shutdown(deadline);
        // The sender gives up at the deadline; a request in flight may still need its
        // own timeout: do not wait for it beyond a short grace period.
        wait_until(deadline + Duration::from_millis(200), || sender.is_done());
    }
}

/// The sink's counters, once telemetry started.
pub fn stats() -> Option<Stats> {
    HANDLE.get().map(|h| {
        h.stats
            .snapshot(h.shared.queued_bytes.load(Ordering::Relaxed))
    })
}

/// The process id sent to the gateway, once telemetry started.
pub fn process_id() -> Option<&'static str> {
    HANDLE.get().map(|h| h.process_id.as_str())
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::fatal!("panic: {info}");
        flush(Duration::from_secs(2));
        previous(info);
    }));
}
