//! What the sink threads pay per event (transit encoding, LZ4, CBOR; delivery to a
//! transport that accepts everything), next to what the calling thread pays.
//!
//! `cargo run --release --example sink_cost`
use std::hint::black_box;
use std::time::{Duration, Instant};
use tarn_tracing::{Route, SendOutcome, Transport};

struct AcceptAll;

impl Transport for AcceptAll {
    fn send(&mut self, _: Route, body: &[u8]) -> SendOutcome {
        black_box(body);
        SendOutcome::Delivered
    }
}

fn main() {
    let _telemetry = tarn_tracing::TelemetryBuilder::new()
        .transport(AcceptAll)
        .max_queue_bytes(1 << 30)
        .calibration(Duration::from_millis(1))
        .start()
        .expect("start");
    let n = 2_000_000u64;
    for (kind, run) in [
        (
            "span pair",
            &(|| {
                for _ in 0..n / 2 {
                    tarn_tracing::span_scope!("s");
                }
            }) as &dyn Fn(),
        ),
        ("static log", &|| {
            for _ in 0..n {
                tarn_tracing::info!("static");
            }
        }),
        ("formatted log", &|| {
            for i in 0..n {
                tarn_tracing::info!("value {}", black_box(i));
            }
        }),
        ("int metric", &|| {
            for i in 0..n {
                tarn_tracing::imetric!("m", "count", black_box(i));
            }
        }),
    ] {
        tarn_tracing::flush(Duration::from_secs(60));
        let before = tarn_tracing::stats().unwrap_or_default();
        let start = Instant::now();
        run();
        let emitted = start.elapsed();
        assert!(tarn_tracing::flush(Duration::from_secs(120)));
        let total = start.elapsed();
        let after = tarn_tracing::stats().unwrap_or_default();
        let events = after.events - before.events;
        let bytes = after.bytes_sent - before.bytes_sent;
        println!(
            "{kind:>14}: calling thread {:6.1} ns/event, until delivered {:6.1} ns/event, {:5.2} bytes/event on the wire, dropped {}",
            emitted.as_secs_f64() * 1e9 / n as f64,
            total.as_secs_f64() * 1e9 / n as f64,
            bytes as f64 / events.max(1) as f64,
            after.dropped_events() - before.dropped_events(),
        );
    }
}
