//! The HTTP sink against a real TCP server: routes, bearer key, order, retries honouring
//! `Retry-After`, bodies decoded by tarn-proto.

mod common;

use common::decode;
use common::server::{Server, requests};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tarn_tracing::prelude::*;
use tarn_tracing::{Route, TelemetryBuilder};

#[test]
fn http_sink_delivers_in_order_and_retries() {
    let received = Arc::new(Mutex::new(Vec::new()));
    // First request: 503 asking to come back in 1 s; second: 429; then all accepted.
    let server = Server::start(
        "127.0.0.1:0",
        Arc::new(|n| match n {
            0 => (503, Some("1")),
            1 => (429, None),
            _ => (200, None),
        }),
        Arc::clone(&received),
    );
    let guard = TelemetryBuilder::new()
        .url(server.url())
        .api_key("test-key")
        .flush_period(Duration::from_millis(200))
        .calibration(Duration::from_millis(10))
        .start()
        .expect("telemetry starts");
    let started = Instant::now();
    info!("over http");
    imetric!("http_metric", "count", 3);
    {
        span_scope!("http_span");
    }
    assert!(tarn_tracing::flush(Duration::from_secs(20)), "flush");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    let stats = guard.stats();
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.dropped_events(), 0);
    {
        let got = received.lock().expect("lock");
        assert!(
            got.iter()
                .all(|r| r.authorization.as_deref() == Some("Bearer test-key"))
        );
    }
    let d = decode(&requests(&received));
    assert_eq!(d.routes.first(), Some(&Route::Process));
    assert!(d.has_log("over http"));
    assert_eq!(
        d.streams.len(),
        3,
        "log, metrics and cpu streams of one thread"
    );
    let mut tags: Vec<_> = d.streams.values().map(|s| s.tags.join(",")).collect();
    tags.sort();
    assert_eq!(tags, ["cpu", "log", "metrics"]);
    drop(guard);
    server.stop();
}
