//! Call sites: the static descriptor of every log, metric and span macro invocation, with
//! the cached decision of the run-time filter.
//!
//! Each macro invocation declares a `static` descriptor holding a [`Callsite`]. Its state
//! byte says whether the call site records: checking a disabled event is one relaxed load
//! and one branch. The first check of a call site registers it (a mutex taken once per call
//! site, never again) and evaluates the filter; changing the filter ([`crate::set_filter`]),
//! starting or stopping telemetry re-evaluates every registered call site.

use crate::levels::{Filter, Level};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

const UNKNOWN: u8 = 0;
const DISABLED: u8 = 1;
const ENABLED: u8 = 2;

/// What a call site records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallsiteKind {
    /// A log macro.
    Log,
    /// A metric macro.
    Metric,
    /// A span (thread or async).
    Span,
}

/// The filtering part of a descriptor.
#[derive(Debug)]
pub struct Callsite {
    state: AtomicU8,
    /// Level of the events of this call site.
    pub level: Level,
    /// Target (the module path unless the macro names one).
    pub target: &'static str,
    /// Kind of events.
    pub kind: CallsiteKind,
}

impl Callsite {
    /// A call site, not yet registered.
    pub const fn new(kind: CallsiteKind, level: Level, target: &'static str) -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
            level,
            target,
            kind,
        }
    }

    /// Whether the events of this call site record. One load and one branch when disabled.
    #[inline(always)]
    pub fn enabled(&'static self) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        if state == DISABLED {
            return false;
        }
        state == ENABLED || self.register()
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self) -> bool {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if self.state.load(Ordering::Relaxed) == UNKNOWN {
            registry.push(self);
        }
        let on = evaluate(self);
        self.state
            .store(if on { ENABLED } else { DISABLED }, Ordering::Relaxed);
        on
    }
}

static REGISTRY: Mutex<Vec<&'static Callsite>> = Mutex::new(Vec::new());

/// Telemetry is running (set by the start, cleared by the shutdown).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Per-kind switches (logs, metrics, spans).
static KINDS: [AtomicBool; 3] = [
    AtomicBool::new(true),
    AtomicBool::new(true),
    AtomicBool::new(true),
];
/// The filter in force; replaced filters are leaked (a few per process run at most) so
/// that readers never lock.
static FILTER: AtomicPtr<Filter> = AtomicPtr::new(std::ptr::null_mut());

fn kind_index(kind: CallsiteKind) -> usize {
    match kind {
        CallsiteKind::Log => 0,
        CallsiteKind::Metric => 1,
        CallsiteKind::Span => 2,
    }
}

/// The filter in force.
pub fn current_filter() -> &'static Filter {
    static DEFAULT: std::sync::OnceLock<Filter> = std::sync::OnceLock::new();
    let p = FILTER.load(Ordering::Acquire);
    if p.is_null() {
        DEFAULT.get_or_init(Filter::default)
    } else {
        // SAFETY: non-null values of FILTER come from `Box::leak` and are never freed.
        unsafe { &*p }
    }
}

/// Whether an event of this kind, level and target records now (for the bridges, which
/// have no static descriptor of ours).
pub fn dynamic_enabled(kind: CallsiteKind, level: Level, target: &str) -> bool {
    ACTIVE.load(Ordering::Relaxed)
        && KINDS[kind_index(kind)].load(Ordering::Relaxed)
        && current_filter().enabled(level, target)
}

fn evaluate(cs: &Callsite) -> bool {
    dynamic_enabled(cs.kind, cs.level, cs.target)
}

fn rebuild(registry: &[&'static Callsite]) {
    for cs in registry {
        let on = evaluate(cs);
        cs.state
            .store(if on { ENABLED } else { DISABLED }, Ordering::Relaxed);
    }
    #[cfg(feature = "tracing-bridge")]
    tracing::callsite::rebuild_interest_cache();
    #[cfg(feature = "log-bridge")]
    log::set_max_level(if ACTIVE.load(Ordering::Relaxed) {
        crate::interop::log_level_filter(current_filter().max_level())
    } else {
        log::LevelFilter::Off
    });
}

/// Replaces the filter and re-evaluates every call site.
pub fn set_filter(filter: Filter) {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    FILTER.store(Box::into_raw(Box::new(filter)), Ordering::Release);
    rebuild(&registry);
}

/// Turns whole kinds of events on or off.
pub(crate) fn set_kinds(logs: bool, metrics: bool, spans: bool) {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    for (switch, on) in KINDS.iter().zip([logs, metrics, spans]) {
        switch.store(on, Ordering::Relaxed);
    }
    rebuild(&registry);
}

/// Starts or stops recording.
pub(crate) fn set_active(active: bool) {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    ACTIVE.store(active, Ordering::Relaxed);
    rebuild(&registry);
}

/// Whether telemetry is running.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Descriptor of a log call site (what upstream calls `LogMetadata`).
#[derive(Debug)]
pub struct LogMetadata {
    /// Level, target and the filter's decision.
    pub callsite: Callsite,
    /// The format string: the message of a log without arguments.
    pub fmt_str: &'static str,
    /// Module of the call site.
    pub module_path: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

/// Descriptor of a metric call site.
#[derive(Debug)]
pub struct MetricMetadata {
    /// Level, target and the filter's decision.
    pub callsite: Callsite,
    /// Metric name.
    pub name: &'static str,
    /// Unit (`"ticks"` values are converted to seconds by the readers).
    pub unit: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

/// Descriptor of a span with a static name.
#[derive(Debug)]
pub struct SpanMetadata {
    /// Level, target and the filter's decision.
    pub callsite: Callsite,
    /// Span name.
    pub name: &'static str,
    /// Module of the call site.
    pub module_path: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

/// Location of spans whose name is given with each span ([`crate::span_scope_named!`]).
#[derive(Debug)]
pub struct SpanLocation {
    /// Level, target and the filter's decision.
    pub callsite: Callsite,
    /// Module of the call site.
    pub module_path: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

/// Whether a format string written in a macro can be recorded as is when
/// `format_args!(..).as_str()` is `Some`: a string with a brace in it went through escapes
/// (`{{`), so its text differs from the formatted message.
#[doc(hidden)]
pub const fn is_plain_format(fmt: &str) -> bool {
    let bytes = fmt.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' || bytes[i] == b'}' {
            return false;
        }
        i += 1;
    }
    true
}
