//! Bridges from the other instrumentation crates: a `tracing-subscriber` layer (events and
//! spans) and a `log` logger. Their events have no static descriptor of ours: they are
//! recorded as upstream's interop logs (level, target and message copied into the buffer)
//! and as async named spans located by the `tracing` callsite.

#[cfg(any(feature = "tracing-bridge", feature = "log-bridge"))]
use crate::callsite::{CallsiteKind, dynamic_enabled};
#[cfg(any(feature = "tracing-bridge", feature = "log-bridge"))]
use crate::levels::Level;
#[cfg(feature = "log-bridge")]
use crate::levels::LevelFilter;

/// The `log` crate's filter for ours.
#[cfg(feature = "log-bridge")]
pub(crate) fn log_level_filter(filter: LevelFilter) -> log::LevelFilter {
    match filter {
        LevelFilter::Off => log::LevelFilter::Off,
        LevelFilter::Fatal | LevelFilter::Error => log::LevelFilter::Error,
        LevelFilter::Warn => log::LevelFilter::Warn,
        LevelFilter::Info => log::LevelFilter::Info,
        LevelFilter::Debug => log::LevelFilter::Debug,
        LevelFilter::Trace => log::LevelFilter::Trace,
    }
}

/// A `log` crate logger recording into tarn-tracing. Install it with [`LogBridge::install`];
/// the `log` crate's max level then follows tarn-tracing's filter.
#[cfg(feature = "log-bridge")]
#[derive(Debug, Clone, Copy, Default)]
pub struct LogBridge;

#[cfg(feature = "log-bridge")]
impl LogBridge {
    /// Makes it the `log` crate's logger (fails if another logger is installed).
    pub fn install() -> Result<(), log::SetLoggerError> {
        static BRIDGE: LogBridge = LogBridge;
        log::set_logger(&BRIDGE)?;
        log::set_max_level(if crate::callsite::is_active() {
            log_level_filter(crate::callsite::current_filter().max_level())
        } else {
            log::LevelFilter::Off
        });
        Ok(())
    }
}

#[cfg(feature = "log-bridge")]
fn from_log_level(level: log::Level) -> Level {
    match level {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

#[cfg(feature = "log-bridge")]
impl log::Log for LogBridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        dynamic_enabled(
            CallsiteKind::Log,
            from_log_level(metadata.level()),
            metadata.target(),
        )
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = from_log_level(record.level());
        if !dynamic_enabled(CallsiteKind::Log, level, record.target()) {
            return;
        }
        let args = *record.args();
        crate::dispatch::log_interop(level, record.target(), |w| w.write_fmt(args));
    }

    fn flush(&self) {}
}

/// Our level for a `tracing` level.
#[cfg(feature = "tracing-bridge")]
pub(crate) fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        _ => Level::Trace,
    }
}

#[cfg(feature = "tracing-bridge")]
mod layer {
    use super::*;
    use crate::buffer::{THREAD, code, next_span_id, write};
    use crate::time::now;
    use std::fmt;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// A `tracing-subscriber` layer recording `tracing` events as logs and `tracing` spans
    /// as async spans (from creation to close, with their parent span and depth), filtered by
    /// tarn-tracing's filter. Add it to a registry:
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    /// tracing_subscriber::registry().with(tarn_tracing::TarnLayer::new()).init();
    /// ```
    ///
    /// (`.init()` also sends the `log` crate's records to `tracing`, hence to this layer;
    /// use `tracing::subscriber::set_global_default` to keep [`crate::LogBridge`] instead.)
    #[derive(Debug, Clone, Copy, Default)]
    pub struct TarnLayer {
        _private: (),
    }

    impl TarnLayer {
        /// The layer.
        pub fn new() -> Self {
            Self::default()
        }
    }

    /// Our identity of a `tracing` span, kept in its extensions.
    #[derive(Debug, Clone, Copy)]
    struct SpanIds {
        span: u64,
        parent: u64,
        depth: u32,
    }

    fn kind_of(metadata: &Metadata<'_>) -> CallsiteKind {
        if metadata.is_span() {
            CallsiteKind::Span
        } else {
            CallsiteKind::Log
        }
    }

    fn enabled(metadata: &Metadata<'_>) -> bool {
        dynamic_enabled(
            kind_of(metadata),
            level_of(metadata.level()),
            metadata.target(),
        )
    }

    /// Writes `message` then ` name=value` for the other fields.
    struct Fields<'a> {
        w: &'a mut dyn fmt::Write,
        first: bool,
        result: fmt::Result,
    }

    impl Fields<'_> {
        fn sep(&mut self) {
            if !self.first {
                self.result = self.result.and_then(|()| self.w.write_char(' '));
            }
            self.first = false;
        }
    }

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.sep();
            self.result = self.result.and_then(|()| {
                if field.name() == "message" {
                    self.w.write_str(value)
                } else {
                    write!(self.w, "{}={value}", field.name())
                }
            });
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.sep();
            self.result = self.result.and_then(|()| {
                if field.name() == "message" {
                    write!(self.w, "{value:?}")
                } else {
                    write!(self.w, "{}={value:?}", field.name())
                }
            });
        }
    }

    impl<S> tracing_subscriber::Layer<S> for TarnLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
            if enabled(metadata) {
                Interest::always()
            } else {
                Interest::never()
            }
        }

        fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
            enabled(metadata)
        }

        fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else {
                return;
            };
            let metadata: &'static Metadata<'static> = span.metadata();
            if !enabled(metadata) {
                return;
            }
            // The tracing parent, or else the native async span being polled.
            let parent = span
                .parent()
                .and_then(|p| p.extensions().get::<SpanIds>().copied());
            let (parent, depth) = match parent {
                Some(p) => (p.span, p.depth + 1),
                None => match crate::spans::current_span_id() {
                    Some(s) => (s, 1),
                    None => (0, 0),
                },
            };
            let ids = SpanIds {
                span: next_span_id(),
                parent,
                depth,
            };
            record(true, metadata, &ids);
            span.extensions_mut().insert(ids);
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else {
                return;
            };
            let ids = span.extensions().get::<SpanIds>().copied();
            if let Some(ids) = ids {
                record(false, span.metadata(), &ids);
            }
        }

        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let metadata = event.metadata();
            if !enabled(metadata) {
                return;
            }
            crate::dispatch::log_interop(level_of(metadata.level()), metadata.target(), |w| {
                let mut fields = Fields {
                    w,
                    first: true,
                    result: Ok(()),
                };
                event.record(&mut fields);
                fields.result
            });
        }
    }

    fn record(begin: bool, metadata: &'static Metadata<'static>, ids: &SpanIds) {
        let time = now();
        write(
            THREAD,
            [
                if begin {
                    code::BEGIN_TRACING
                } else {
                    code::END_TRACING
                },
                std::ptr::from_ref(metadata) as usize as u64,
                time as u64,
                ids.span,
                ids.parent,
                u64::from(ids.depth),
            ],
        );
    }
}

#[cfg(feature = "tracing-bridge")]
pub use layer::TarnLayer;
