//! A panic is recorded as a fatal log and flushed by the panic hook, before the previous
//! hook runs.

mod common;

use common::{Ev, decode};
use std::time::Duration;
use tarn_tracing::{MemoryTransport, TelemetryBuilder};

#[test]
fn panic_is_logged_and_flushed() {
    let transport = MemoryTransport::new();
    let _guard = TelemetryBuilder::new()
        .transport(transport.clone())
        .flush_period(Duration::from_secs(60))
        .calibration(Duration::from_millis(5))
        .start()
        .expect("telemetry starts");
    tarn_tracing::info!("before the panic");
    let result = std::thread::Builder::new()
        .name("doomed".into())
        .spawn(|| panic!("boom {}", 42))
        .expect("spawn")
        .join();
    assert!(result.is_err());
    // No flush here: the hook did it.
    let d = decode(&transport.requests());
    assert!(d.has_log("before the panic"));
    let fatal = d.events.iter().find_map(|(s, _, e)| match e {
        Ev::Log { level: 1, msg, .. } => Some((s.clone(), msg.clone())),
        _ => None,
    });
    let (stream, msg) = fatal.expect("a fatal log");
    assert!(
        msg.starts_with("panic: ") && msg.contains("boom 42"),
        "{msg}"
    );
    assert_eq!(d.thread_name(&stream), Some("doomed"));
}
