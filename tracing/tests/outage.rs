//! The gateway stops while the program runs: the program never blocks, the sink retries
//! and delivers everything once the gateway is back; with a small memory budget and a long
//! outage, events beyond the budget are dropped and counted, and memory stays bounded.

mod common;

use common::decode;
use common::server::{Server, requests};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tarn_tracing::TelemetryBuilder;
use tarn_tracing::prelude::*;

/// Emits `n` metric points, returns the slowest single call.
fn emit(n: u64) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        imetric!("outage_metric", "count", i);
        slowest = slowest.max(t.elapsed());
    }
    slowest
}

#[test]
fn gateway_outage_never_blocks_and_loses_nothing_within_budget() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let server = Server::start(
        "127.0.0.1:0",
        Arc::new(|_| (200, None)),
        Arc::clone(&received),
    );
    let addr = server.addr.to_string();
    let budget = 4 << 20;
    let guard = TelemetryBuilder::new()
        .url(server.url())
        .flush_period(Duration::from_millis(50))
        .calibration(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(200))
        .max_queue_bytes(budget)
        .start()
        .expect("telemetry starts");

    // Phase 1: gateway up.
    emit(1000);
    assert!(tarn_tracing::flush(Duration::from_secs(10)));

    // Phase 2: gateway down for a while; the program keeps emitting.
    server.stop();
    let mut slowest = Duration::ZERO;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(1500) {
        slowest = slowest.max(emit(1000));
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = guard.stats();
    assert!(during.retries > 0, "the sink retried: {during:?}");
    assert_eq!(during.dropped_events(), 0, "within budget: {during:?}");
    // Never blocked: no call near a network timeout (generous for a loaded CI machine).
    assert!(
        slowest < Duration::from_millis(50),
        "slowest call {slowest:?}"
    );

    // Phase 3: gateway back on the same port: everything arrives.
    let server = Server::start(&addr, Arc::new(|_| (200, None)), Arc::clone(&received));
    assert!(
        tarn_tracing::flush(Duration::from_secs(20)),
        "flush after the outage"
    );
    let d = decode(&requests(&received));
    let values: Vec<f64> = d
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            common::Ev::Measure { value, .. } => Some(*value),
            _ => None,
        })
        .collect();
    let emitted = guard.stats().events;
    assert_eq!(values.len() as u64, emitted, "every event delivered");
    assert!(emitted >= 10_000);

    // Phase 4: a long outage with far more data than the budget: drops are counted, the
    // queue stays within the budget, the program still never blocks.
    server.stop();
    let mut slowest = Duration::ZERO;
    let mut max_queued = 0;
    for _ in 0..60 {
        slowest = slowest.max(emit(20_000));
        max_queued = max_queued.max(guard.stats().queued_bytes);
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = guard.stats();
    assert!(after.dropped_events() > 0, "over budget: {after:?}");
    // Chunks are counted and requests admitted with a compare-and-swap against the
    // budget: not even a moment over it (only metadata may pass it, and none is new here).
    assert!(
        max_queued <= budget as u64,
        "queue {max_queued} within budget {budget}"
    );
    assert!(
        slowest < Duration::from_millis(50),
        "slowest call {slowest:?}"
    );
    drop(guard);
}
