//! The instrumentation macros. Each invocation declares a `static` descriptor; a disabled
//! one costs a load and a branch.

/// Records a log entry at a level given as a constant expression.
///
/// ```
/// use tarn_tracing::prelude::*;
/// let (rows, set) = (3, PropertySet::find_or_create([("db", "main")]));
/// log!(Level::Info, "static message");
/// log!(Level::Debug, "fetched {rows} rows");
/// log!(Level::Warn, target: "app::db", "slow query: {} ms", 120);
/// log!(Level::Info, properties: set, "fetched {} rows", rows);
/// ```
///
/// The format string must be a literal. A message without arguments is recorded without
/// copying it (the call site's descriptor holds it); a formatted one is formatted straight
/// into the thread's buffer.
#[macro_export]
macro_rules! log {
    (@lvl $lvl:expr; target: $target:expr, properties: $props:expr, $fmt:literal $($args:tt)*) => {
        $crate::__log_impl!($lvl, $target, Some($props), $fmt $($args)*)
    };
    (@lvl $lvl:expr; properties: $props:expr, target: $target:expr, $fmt:literal $($args:tt)*) => {
        $crate::__log_impl!($lvl, $target, Some($props), $fmt $($args)*)
    };
    (@lvl $lvl:expr; target: $target:expr, $fmt:literal $($args:tt)*) => {
        $crate::__log_impl!($lvl, $target, None, $fmt $($args)*)
    };
    (@lvl $lvl:expr; properties: $props:expr, $fmt:literal $($args:tt)*) => {
        $crate::__log_impl!($lvl, module_path!(), Some($props), $fmt $($args)*)
    };
    (@lvl $lvl:expr; $fmt:literal $($args:tt)*) => {
        $crate::__log_impl!($lvl, module_path!(), None, $fmt $($args)*)
    };
    ($lvl:expr, $($rest:tt)+) => {
        $crate::log!(@lvl $lvl; $($rest)+)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_desc {
    ($lvl:expr, $target:expr, $fmt:literal) => {{
        static __TARN_DESC: $crate::LogMetadata = $crate::LogMetadata {
            callsite: $crate::Callsite::new($crate::CallsiteKind::Log, $lvl, $target),
            fmt_str: $fmt,
            module_path: module_path!(),
            file: file!(),
            line: line!(),
        };
        &__TARN_DESC
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_impl {
    ($lvl:expr, $target:expr, None, $fmt:literal $($args:tt)*) => {{
        let __tarn_desc: &'static $crate::LogMetadata = $crate::__log_desc!($lvl, $target, $fmt);
        if __tarn_desc.callsite.enabled() {
            const __TARN_PLAIN: bool = $crate::__private::is_plain_format($fmt);
            $crate::__private::log(__tarn_desc, __TARN_PLAIN, format_args!($fmt $($args)*));
        }
    }};
    ($lvl:expr, $target:expr, Some($props:expr), $fmt:literal $($args:tt)*) => {{
        let __tarn_desc: &'static $crate::LogMetadata = $crate::__log_desc!($lvl, $target, $fmt);
        if __tarn_desc.callsite.enabled() {
            const __TARN_PLAIN: bool = $crate::__private::is_plain_format($fmt);
            $crate::__private::log_tagged(
                __tarn_desc,
                $props,
                __TARN_PLAIN,
                format_args!($fmt $($args)*),
            );
        }
    }};
}

/// A log entry at level [`Level::Fatal`](crate::Level::Fatal); same forms as [`log!`].
#[macro_export]
macro_rules! fatal {
    ($($rest:tt)+) => { $crate::log!(@lvl $crate::Level::Fatal; $($rest)+) };
}

/// A log entry at level [`Level::Error`](crate::Level::Error); same forms as [`log!`].
#[macro_export]
macro_rules! error {
    ($($rest:tt)+) => { $crate::log!(@lvl $crate::Level::Error; $($rest)+) };
}

/// A log entry at level [`Level::Warn`](crate::Level::Warn); same forms as [`log!`].
#[macro_export]
macro_rules! warn {
    ($($rest:tt)+) => { $crate::log!(@lvl $crate::Level::Warn; $($rest)+) };
}

/// A log entry at level [`Level::Info`](crate::Level::Info); same forms as [`log!`].
#[macro_export]
macro_rules! info {
    ($($rest:tt)+) => { $crate::log!(@lvl $crate::Level::Info; $($rest)+) };
}

/// A log entry at level [`Level::Debug`](crate::Level::Debug); same forms as [`log!`].
#[macro_export]
macro_rules! debug {
    ($($rest:tt)+) => { $crate::log!(@lvl $crate::Level::Debug; $($rest)+) };
}

/// A log entry at level [`Level::Trace`](crate::Level::Trace); same forms as [`log!`].
#[macro_export]
macro_rules! trace {
    ($($rest:tt)+) => { $crate::log!(@lvl $crate::Level::Trace; $($rest)+) };
}

/// Whether a log at this level (and target) would record now.
///
/// ```
/// use tarn_tracing::prelude::*;
/// if log_enabled!(Level::Debug) {
///     // compute something expensive to log
/// }
/// ```
#[macro_export]
macro_rules! log_enabled {
    ($lvl:expr) => {
        $crate::log_enabled!(target: module_path!(), $lvl)
    };
    (target: $target:expr, $lvl:expr) => {{
        static __TARN_CALLSITE: $crate::Callsite =
            $crate::Callsite::new($crate::CallsiteKind::Log, $lvl, $target);
        __TARN_CALLSITE.enabled()
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __metric_desc {
    ($lvl:expr, $target:expr, $name:expr, $unit:expr) => {{
        static __TARN_DESC: $crate::MetricMetadata = $crate::MetricMetadata {
            callsite: $crate::Callsite::new($crate::CallsiteKind::Metric, $lvl, $target),
            name: $name,
            unit: $unit,
            file: file!(),
            line: line!(),
        };
        &__TARN_DESC
    }};
}

/// Records an integer (`u64`) metric point: `imetric!(name, unit, value)`, or with a
/// property set `imetric!(name, unit, properties, value)`. Name and unit are constant
/// strings; the unit `"ticks"` marks tick counts (readers convert them to seconds).
///
/// ```
/// use tarn_tracing::prelude::*;
/// let set = PropertySet::find_or_create([("queue", "ingest")]);
/// imetric!("queue_depth", "count", 12);
/// imetric!("queue_depth", "count", set, 12);
/// fmetric!("load", "ratio", 0.25);
/// ```
#[macro_export]
macro_rules! imetric {
    ($name:expr, $unit:expr, $value:expr $(,)?) => {{
        let __tarn_desc: &'static $crate::MetricMetadata =
            $crate::__metric_desc!($crate::Level::Info, module_path!(), $name, $unit);
        if __tarn_desc.callsite.enabled() {
            $crate::__private::int_metric(__tarn_desc, $value);
        }
    }};
    ($name:expr, $unit:expr, $props:expr, $value:expr $(,)?) => {{
        let __tarn_desc: &'static $crate::MetricMetadata =
            $crate::__metric_desc!($crate::Level::Info, module_path!(), $name, $unit);
        if __tarn_desc.callsite.enabled() {
            $crate::__private::tagged_int_metric(__tarn_desc, $props, $value);
        }
    }};
}

/// Records a float (`f64`) metric point; same forms as [`imetric!`].
#[macro_export]
macro_rules! fmetric {
    ($name:expr, $unit:expr, $value:expr $(,)?) => {{
        let __tarn_desc: &'static $crate::MetricMetadata =
            $crate::__metric_desc!($crate::Level::Info, module_path!(), $name, $unit);
        if __tarn_desc.callsite.enabled() {
            $crate::__private::float_metric(__tarn_desc, $value);
        }
    }};
    ($name:expr, $unit:expr, $props:expr, $value:expr $(,)?) => {{
        let __tarn_desc: &'static $crate::MetricMetadata =
            $crate::__metric_desc!($crate::Level::Info, module_path!(), $name, $unit);
        if __tarn_desc.callsite.enabled() {
            $crate::__private::tagged_float_metric(__tarn_desc, $props, $value);
        }
    }};
}

/// A `&'static SpanMetadata` for a span named by a constant string (for
/// [`InstrumentFuture::instrument`](crate::InstrumentFuture::instrument) and
/// [`ThreadSpanGuard::new`](crate::ThreadSpanGuard::new)).
#[macro_export]
macro_rules! static_span_desc {
    ($name:expr) => {
        $crate::static_span_desc!(level: $crate::Level::Info, $name)
    };
    (level: $lvl:expr, $name:expr) => {{
        static __TARN_DESC: $crate::SpanMetadata = $crate::SpanMetadata {
            callsite: $crate::Callsite::new($crate::CallsiteKind::Span, $lvl, module_path!()),
            name: $name,
            module_path: module_path!(),
            file: file!(),
            line: line!(),
        };
        &__TARN_DESC
    }};
}

/// A `&'static SpanLocation`: the call site of spans named at run time.
#[macro_export]
macro_rules! static_span_location {
    () => {{
        static __TARN_LOCATION: $crate::SpanLocation = $crate::SpanLocation {
            callsite: $crate::Callsite::new(
                $crate::CallsiteKind::Span,
                $crate::Level::Info,
                module_path!(),
            ),
            module_path: module_path!(),
            file: file!(),
            line: line!(),
        };
        &__TARN_LOCATION
    }};
}

/// Records a thread span from here to the end of the enclosing block.
///
/// ```
/// use tarn_tracing::prelude::*;
/// fn work() {
///     span_scope!("work");
///     for _ in 0..3 {
///         span_scope!(level: Level::Debug, "step");
///     }
/// }
/// # work();
/// ```
#[macro_export]
macro_rules! span_scope {
    ($name:expr) => {
        let __tarn_span_guard = $crate::ThreadSpanGuard::new($crate::static_span_desc!($name));
    };
    (level: $lvl:expr, $name:expr) => {
        let __tarn_span_guard =
            $crate::ThreadSpanGuard::new($crate::static_span_desc!(level: $lvl, $name));
    };
}

/// Records a thread span named at run time (a `&'static str`, recorded without copying, or a
/// `String`, copied), from here to the end of the enclosing block.
///
/// ```
/// use tarn_tracing::prelude::*;
/// let table = String::from("users");
/// span_scope_named!(format!("scan {table}"));
/// ```
#[macro_export]
macro_rules! span_scope_named {
    ($name:expr) => {
        let __tarn_span_guard =
            $crate::ThreadNamedSpanGuard::new($crate::static_span_location!(), $name);
    };
}

/// Wraps a future in an async span with a constant name.
///
/// ```
/// use tarn_tracing::prelude::*;
/// async fn fetch() -> u32 { 7 }
/// async fn handler() -> u32 {
///     instrument_named!(fetch(), "fetch").await
/// }
/// ```
#[macro_export]
macro_rules! instrument_named {
    ($future:expr, $name:expr) => {
        $crate::InstrumentedFuture::new($future, $crate::static_span_desc!($name))
    };
}
