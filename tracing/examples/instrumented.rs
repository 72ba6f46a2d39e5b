//! An instrumented program: logs, metrics, nested thread spans and async spans with parents,
//! sent to `TARN_TELEMETRY_URL` (e.g. `http://127.0.0.1:9000`).
//!
//! ```sh
//! TARN_TELEMETRY_URL=http://127.0.0.1:9000 cargo run -p tarn-tracing --example instrumented
//! ```
//!
//! Arguments: `--rounds N` (default 3) rounds of work, `--pause-ms M` between rounds. At the
//! end it prints one line `stats events=.. dropped=.. sent=.. retries=.. max_call_ns=..` on
//! stdout, `max_call_ns` being the slowest single instrumentation call seen: the program
//! never waits for the gateway, whether it is up or not.

use std::time::{Duration, Instant};
use tarn_tracing::prelude::*;

#[span_fn]
fn parse(input: &str) -> usize {
    span_scope!("tokenize");
    input.split_whitespace().count()
}

#[span_fn]
async fn load(round: u64) -> u64 {
    let a = fetch(round).await;
    let b = fetch(round + 1).await;
    a + b
}

#[span_fn]
async fn fetch(key: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    debug!("fetched {key}");
    key * 10
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tarn_tracing::main]
async fn main() {
    let rounds = arg("--rounds", 3);
    let pause = Duration::from_millis(arg("--pause-ms", 0));
    let set = PropertySet::find_or_create([("component", "example")]);
    let mut max_call = Duration::ZERO;
    info!("example started");
    for round in 0..rounds {
        let t = Instant::now();
        info!("round {round} begins");
        warn!(properties: set, "tagged warning in round {round}");
        imetric!("rounds_done", "count", round);
        fmetric!("progress", "ratio", round as f64 / rounds as f64);
        imetric!("round_items", "count", set, round * 2);
        max_call = max_call.max(t.elapsed() / 5);
        let words = parse("a few words to count");
        let total = load(round).await;
        let t = Instant::now();
        info!("round {round}: {words} words, total {total}");
        max_call = max_call.max(t.elapsed());
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    info!("example done");
    let flushed = tarn_tracing::flush(Duration::from_secs(10));
    let stats = tarn_tracing::stats().unwrap_or_default();
    println!(
        "stats events={} dropped={} sent={} retries={} flushed={} max_call_ns={} process_id={}",
        stats.events,
        stats.dropped_events(),
        stats.requests_sent,
        stats.retries,
        flushed,
        max_call.as_nanos(),
        tarn_tracing::process_id().unwrap_or_default(),
    );
}
