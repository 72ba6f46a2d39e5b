//! The `tracing` layer (events and spans) and the `log` bridge.

mod common;

use common::{Ev, decode};
use std::time::Duration;
use tarn_tracing::{LogBridge, MemoryTransport, TarnLayer, TelemetryBuilder};
use tracing_subscriber::prelude::*;

#[test]
fn tracing_and_log_bridges() {
    let transport = MemoryTransport::new();
    let guard = TelemetryBuilder::new()
        .transport(transport.clone())
        .filter("debug,noisy=off".parse().expect("filter"))
        .flush_period(Duration::from_secs(60))
        .calibration(Duration::from_millis(5))
        .start()
        .expect("telemetry starts");
    // Not `.init()`: it would also route the `log` crate into `tracing`.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(TarnLayer::new()))
        .expect("subscriber");
    LogBridge::install().expect("log bridge");

    {
        let outer = tracing::info_span!("outer_span", request = 7);
        let _o = outer.enter();
        tracing::info!(user = "ann", count = 3, "handled request");
        {
            let _inner = tracing::debug_span!("inner_span").entered();
            tracing::warn!("inside");
        }
    }
    tracing::trace!("too verbose");
    tracing::info!(target: "noisy", "filtered out");
    log::info!("from log {}", 5);
    log::error!(target: "db", "log error");
    log::debug!(target: "noisy::x", "filtered too");

    assert!(tarn_tracing::flush(Duration::from_secs(10)));
    let d = decode(&transport.take());
    let logs: Vec<(u32, String, String)> = d
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            Ev::Log {
                level, target, msg, ..
            } => Some((*level, target.clone(), msg.clone())),
            _ => None,
        })
        .collect();
    let here = module_path!().to_owned();
    assert_eq!(
        logs,
        [
            (
                4,
                here.clone(),
                "handled request user=ann count=3".to_owned()
            ),
            (3, here.clone(), "inside".to_owned()),
            (4, here, "from log 5".to_owned()),
            (2, "db".to_owned(), "log error".to_owned()),
        ]
    );
    let spans: Vec<(bool, String, u64, u64, u32)> = d
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            Ev::Span {
                begin,
                name,
                span_id: Some(id),
                parent: Some(p),
                depth: Some(depth),
            } => Some((*begin, name.clone(), *id, *p, *depth)),
            _ => None,
        })
        .collect();
    assert_eq!(spans.len(), 4, "{spans:?}");
    let (outer, inner) = (&spans[0], &spans[1]);
    assert_eq!(
        (outer.0, outer.1.as_str(), outer.3, outer.4),
        (true, "outer_span", 0, 0)
    );
    assert_eq!(
        (inner.0, inner.1.as_str(), inner.3, inner.4),
        (true, "inner_span", outer.2, 1)
    );
    assert_eq!((spans[2].0, spans[2].2), (false, inner.2));
    assert_eq!((spans[3].0, spans[3].2), (false, outer.2));
    drop(guard);
}
