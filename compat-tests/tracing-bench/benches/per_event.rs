//! Per event on the calling thread, side by side in one run: the floor (read the timestamp
//! counter, store it), tarn-tracing (sink accepting every event), micromegas-tracing 0.33.0
//! (CPU tracing on, sink accepting every event), tokio's `tracing` (no-op subscriber), with
//! one thread and with two threads emitting at once.
//!
//! `cargo bench --bench per_event` (see BENCHMARKS.md in the tracing crate).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tracing_bench::{floor, run_threads, tokio_tracing, upstream};

fn tarn_span() {
    tarn_tracing::span_scope!("span");
}
fn tarn_static_log() {
    tarn_tracing::info!("static message");
}
fn tarn_fmt_log() {
    tarn_tracing::info!("value {}", black_box(42u64));
}
fn tarn_int_metric() {
    tarn_tracing::imetric!("metric", "count", black_box(42u64));
}
fn tarn_float_metric() {
    tarn_tracing::fmetric!("metric", "ms", black_box(4.2f64));
}
fn tarn_disabled() {
    tarn_tracing::trace!("disabled");
}

fn mm_span() {
    micromegas_tracing::span_scope!("span");
}
fn mm_static_log() {
    micromegas_tracing::info!("static message");
}
fn mm_fmt_log() {
    micromegas_tracing::info!("value {}", black_box(42u64));
}
fn mm_int_metric() {
    micromegas_tracing::imetric!("metric", "count", black_box(42u64));
}
fn mm_float_metric() {
    micromegas_tracing::fmetric!("metric", "ms", black_box(4.2f64));
}
fn mm_disabled() {
    micromegas_tracing::trace!("disabled");
}

fn tt_span() {
    let _s = tracing::info_span!("span").entered();
}
fn tt_static_log() {
    tracing::info!("static message");
}
fn tt_fmt_log() {
    tracing::info!("value {}", black_box(42u64));
}
fn tt_int_metric() {
    tracing::info!(metric = black_box(42u64));
}
fn tt_float_metric() {
    tracing::info!(metric = black_box(4.2f64));
}
fn tt_disabled() {
    tracing::trace!("disabled");
}

fn floor_span() {
    floor::event();
    floor::event();
}

fn mm_thread_setup() {
    // Upstream records spans only on threads with a registered stream.
    std::mem::forget(micromegas_tracing::guards::TracingThreadGuard::new());
}

fn tarn_thread_setup() {
    // The first event registers the thread.
    tarn_tracing::imetric!("warmup", "count", 0);
    tarn_tracing::info!("warmup");
    tarn_tracing::span_scope!("warmup");
}

fn noop() {}

/// One group per kind and thread count; each case calls its event function directly (no
/// function pointer), so that it is inlined like in real code.
macro_rules! bench_kind {
    ($c:expr, $kind:expr, [$(($name:expr, $event:path, $setup:path)),+ $(,)?] $(,)?) => {
        for threads in [1usize, 2] {
            let mut group = $c.benchmark_group(format!("{}/{threads}t", $kind));
            $(
                group.bench_function($name, |b| {
                    if threads == 1 {
                        b.iter(|| $event());
                    } else {
                        b.iter_custom(|iters| run_threads(threads, iters, $setup, || $event()));
                    }
                });
            )+
            group.finish();
        }
    };
}

fn all(c: &mut Criterion) {
    // tarn-tracing: the sink accepts every event and discards it without encoding it.
    let _tarn = tarn_tracing::TelemetryBuilder::new()
        .discard()
        .filter("info".parse().expect("filter"))
        .panic_hook(false)
        .start()
        .expect("tarn-tracing starts");
    // micromegas-tracing 0.33.0: the buffer sizes of its own benchmark, CPU tracing on.
    let _mm = micromegas_tracing::guards::TracingSystemGuard::new(
        10 * 1024 * 1024,
        1024 * 1024,
        10 * 1024 * 1024,
        Arc::new(upstream::AcceptAll),
        Default::default(),
        true,
    )
    .expect("micromegas-tracing starts");
    micromegas_tracing::levels::set_max_level(micromegas_tracing::levels::LevelFilter::Info);
    micromegas_tracing::levels::set_max_lod(micromegas_tracing::levels::LodFilter::Max);
    let _mm_thread = micromegas_tracing::guards::TracingThreadGuard::new();
    tracing::subscriber::set_global_default(tokio_tracing::Noop).expect("subscriber");
    tarn_thread_setup();

    bench_kind!(
        c,
        "span_pair",
        [
            ("floor", floor_span, noop),
            ("tarn", tarn_span, tarn_thread_setup),
            ("micromegas", mm_span, mm_thread_setup),
            ("tracing", tt_span, noop),
        ],
    );
    bench_kind!(
        c,
        "static_log",
        [
            ("floor", floor::event, noop),
            ("tarn", tarn_static_log, tarn_thread_setup),
            ("micromegas", mm_static_log, mm_thread_setup),
            ("tracing", tt_static_log, noop),
        ],
    );
    bench_kind!(
        c,
        "fmt_log",
        [
            ("floor", floor::event, noop),
            ("tarn", tarn_fmt_log, tarn_thread_setup),
            ("micromegas", mm_fmt_log, mm_thread_setup),
            ("tracing", tt_fmt_log, noop),
        ],
    );
    bench_kind!(
        c,
        "int_metric",
        [
            ("floor", floor::event, noop),
            ("tarn", tarn_int_metric, tarn_thread_setup),
            ("micromegas", mm_int_metric, mm_thread_setup),
            ("tracing", tt_int_metric, noop),
        ],
    );
    bench_kind!(
        c,
        "float_metric",
        [
            ("floor", floor::event, noop),
            ("tarn", tarn_float_metric, tarn_thread_setup),
            ("micromegas", mm_float_metric, mm_thread_setup),
            ("tracing", tt_float_metric, noop),
        ],
    );
    bench_kind!(
        c,
        "disabled",
        [
            ("floor", noop, noop),
            ("tarn", tarn_disabled, noop),
            ("micromegas", mm_disabled, noop),
            ("tracing", tt_disabled, noop),
        ],
    );
    let stats = tarn_tracing::stats().unwrap_or_default();
    eprintln!("tarn-tracing sink stats: {stats:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = all
}
criterion_main!(benches);
