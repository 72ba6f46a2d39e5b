//! The functions the macros call once their call site is enabled: each reads the tick
//! counter and appends one record to the calling thread's buffer ([`crate::buffer`]).

#[cfg(any(feature = "tracing-bridge", feature = "log-bridge"))]
use crate::buffer::write_var;
use crate::buffer::{LOG, METRICS, code, write, write_fmt};
use crate::callsite::{LogMetadata, MetricMetadata};
#[cfg(any(feature = "tracing-bridge", feature = "log-bridge"))]
use crate::levels::Level;
use crate::property_set::PropertySet;
use crate::time::now;
use std::fmt;

#[inline(always)]
fn addr<T>(r: &'static T) -> u64 {
    std::ptr::from_ref(r) as usize as u64
}

/// A log whose message is its format string: recorded without copying it.
#[inline(always)]
pub fn log_static(desc: &'static LogMetadata) {
    let time = now();
    write(LOG, [code::LOG_STATIC, addr(desc), time as u64]);
}

/// A formatted log: the message is formatted straight into the thread's buffer.
#[inline(never)]
pub fn log_fmt(desc: &'static LogMetadata, args: fmt::Arguments<'_>) {
    let time = now();
    write_fmt(LOG, [code::LOG_FMT, addr(desc), time as u64], args);
}

/// What the log macros call: a static log when the message needs no formatting (decided at
/// compile time for literal format strings), a formatted one otherwise.
#[inline(always)]
pub fn log(desc: &'static LogMetadata, plain: bool, args: fmt::Arguments<'_>) {
    if plain && args.as_str().is_some() {
        log_static(desc);
    } else {
        log_fmt(desc, args);
    }
}

/// A log with a property set.
#[inline(never)]
pub fn log_tagged(
    desc: &'static LogMetadata,
    properties: &'static PropertySet,
    plain: bool,
    args: fmt::Arguments<'_>,
) {
    let time = now();
    if plain && args.as_str().is_some() {
        write(
            LOG,
            [
                code::LOG_TAGGED_STATIC,
                addr(desc),
                time as u64,
                addr(properties),
            ],
        );
    } else {
        write_fmt(
            LOG,
            [
                code::LOG_TAGGED_FMT,
                addr(desc),
                time as u64,
                addr(properties),
            ],
            args,
        );
    }
}

#[cfg(any(feature = "tracing-bridge", feature = "log-bridge"))]
/// A log without a static descriptor (from the `log` and `tracing` bridges): the target is
/// copied, the message formatted by `body` into the buffer.
pub fn log_interop<F>(level: Level, target: &str, body: F)
where
    F: FnMut(&mut dyn fmt::Write) -> fmt::Result,
{
    let time = now();
    let target = target.as_bytes();
    let target = target.get(..target.len().min(4096)).unwrap_or_default();
    let mut body = body;
    write_var(
        LOG,
        &[
            code::LOG_INTEROP | (u64::from(level.value()) << 8),
            time as u64,
        ],
        target,
        |w| body(w),
    );
}

/// An integer metric point.
#[inline(always)]
pub fn int_metric(desc: &'static MetricMetadata, value: u64) {
    let time = now();
    write(METRICS, [code::INT_METRIC, addr(desc), time as u64, value]);
}

/// A float metric point.
#[inline(always)]
pub fn float_metric(desc: &'static MetricMetadata, value: f64) {
    let time = now();
    write(
        METRICS,
        [code::FLOAT_METRIC, addr(desc), time as u64, value.to_bits()],
    );
}

/// An integer metric point with properties.
#[inline(always)]
pub fn tagged_int_metric(
    desc: &'static MetricMetadata,
    properties: &'static PropertySet,
    value: u64,
) {
    let time = now();
    write(
        METRICS,
        [
            code::TAGGED_INT_METRIC,
            addr(desc),
            time as u64,
            value,
            addr(properties),
        ],
    );
}

/// A float metric point with properties.
#[inline(always)]
pub fn tagged_float_metric(
    desc: &'static MetricMetadata,
    properties: &'static PropertySet,
    value: f64,
) {
    let time = now();
    write(
        METRICS,
        [
            code::TAGGED_FLOAT_METRIC,
            addr(desc),
            time as u64,
            value.to_bits(),
            addr(properties),
        ],
    );
}
