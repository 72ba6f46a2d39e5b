//! Helpers of the benchmark: the physical floor, the accept-all sinks, two-thread runs.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Reads the timestamp counter.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions on x86_64.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::time::Instant::now().elapsed().as_nanos() as u64
    }
}

/// Runs `f` `iters` times on each of `threads` threads started together (after `setup` ran
/// on each, e.g. to register the thread); returns the mean of the threads' elapsed times, so
/// that per-iteration time is comparable with one thread.
pub fn run_threads<S, F>(threads: usize, iters: u64, setup: S, f: F) -> Duration
where
    S: Fn() + Send + Sync + 'static,
    F: Fn() + Send + Sync + 'static,
{
    let barrier = Arc::new(Barrier::new(threads));
    let (setup, f) = (Arc::new(setup), Arc::new(f));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (barrier, setup, f) = (barrier.clone(), setup.clone(), f.clone());
            std::thread::spawn(move || {
                setup();
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    f();
                }
                start.elapsed()
            })
        })
        .collect();
    let total: Duration = handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .sum();
    total / threads as u32
}

/// The floor: read the timestamp counter and store it in a thread-local ring (32 KiB, so
/// the stores stay in the first-level cache: the cheapest "record" there is).
pub mod floor {
    use std::cell::UnsafeCell;

    const SIZE: usize = 1 << 12;

    struct Ring {
        pos: usize,
        slots: [u64; SIZE],
    }

    thread_local! {
        static RING: UnsafeCell<Ring> = const { UnsafeCell::new(Ring { pos: 0, slots: [0; SIZE] }) };
    }

    #[inline(always)]
    pub fn event() {
        let t = super::ticks();
        // SAFETY: the ring is this thread's and no reference to it escapes; the index is
        // masked into bounds.
        RING.with(|r| unsafe {
            let r = &mut *r.get();
            r.slots[r.pos & (SIZE - 1)] = t;
            r.pos = r.pos.wrapping_add(1);
        });
    }
}

/// micromegas-tracing 0.33.0 with a sink that accepts everything (upstream's own
/// `NullEventSink` disables logs, so a bench using it measures a level check only).
pub mod upstream {
    use micromegas_tracing::event::EventSink;
    use micromegas_tracing::logs::{LogBlock, LogMetadata, LogStream};
    use micromegas_tracing::metrics::{MetricsBlock, MetricsStream};
    use micromegas_tracing::process_info::ProcessInfo;
    use micromegas_tracing::property_set::DynProperty;
    use micromegas_tracing::spans::{ThreadBlock, ThreadStream};
    use std::fmt;
    use std::sync::Arc;

    pub struct AcceptAll;

    impl EventSink for AcceptAll {
        fn on_startup(&self, _: Arc<ProcessInfo>) {}
        fn on_shutdown(&self) {}
        fn on_log_enabled(&self, _: &LogMetadata) -> bool {
            true
        }
        fn on_log(&self, _: &LogMetadata, _: &[DynProperty<'_>], _: i64, _: fmt::Arguments<'_>) {}
        fn on_init_log_stream(&self, _: &LogStream) {}
        fn on_process_log_block(&self, _: Arc<LogBlock>) {}
        fn on_init_metrics_stream(&self, _: &MetricsStream) {}
        fn on_process_metrics_block(&self, _: Arc<MetricsBlock>) {}
        fn on_init_thread_stream(&self, _: &ThreadStream) {}
        fn on_process_thread_block(&self, _: Arc<ThreadBlock>) {}
        fn is_busy(&self) -> bool {
            false
        }
    }
}

/// tokio's `tracing` with a subscriber that is enabled for INFO and above and does nothing.
pub mod tokio_tracing {
    use tracing::span::{Attributes, Id, Record};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};

    pub struct Noop;

    impl Subscriber for Noop {
        fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
            if *metadata.level() <= tracing::Level::INFO {
                Interest::always()
            } else {
                Interest::never()
            }
        }
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= tracing::Level::INFO
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::INFO)
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}
