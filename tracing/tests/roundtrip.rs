//! Events emitted with the macros → blocks sent by the sink → decoded by `tarn-proto` →
//! the same events. One telemetry per process, so one test function per file.

mod common;

/// (level, target, message, properties).
type LogRow<'a> = (u32, &'a str, &'a str, &'a [(String, String)]);
/// (begin, name, span id, parent id, depth).
type SpanRow<'a> = (bool, &'a str, Option<u64>, Option<u64>, Option<u32>);

use common::{Ev, decode};
use std::time::Duration;
use tarn_tracing::prelude::*;
use tarn_tracing::{Filter, MemoryTransport, Route, TelemetryBuilder};

#[span_fn]
async fn child(n: u64) -> u64 {
    n + 1
}

#[span_fn]
async fn parent() -> Result<u64, String> {
    let a = child(1).await;
    let b = child(2).await;
    let c: u64 = "40".parse::<u64>().map_err(|e| e.to_string())?;
    Ok(a + b + c)
}

/// The shape `#[async_trait]` gives an `async fn`.
#[span_fn]
fn boxed(n: u64) -> std::pin::Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move { n * 3 })
}

#[span_fn("renamed_sync")]
fn sync_fn(x: u32) -> u32 {
    x * 2
}

struct Loud;

impl std::fmt::Display for Loud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A log emitted while formatting another one is dropped, never interleaved.
        info!("nested log");
        f.write_str("loud")
    }
}

#[test]
fn events_round_trip_through_tarn_proto() {
    let transport = MemoryTransport::new();
    let guard = TelemetryBuilder::new()
        .transport(transport.clone())
        .filter("trace".parse::<Filter>().expect("valid filter"))
        .flush_period(Duration::from_secs(60))
        .calibration(Duration::from_millis(20))
        .chunk_bytes(16 << 10)
        .service_name("roundtrip")
        .start()
        .expect("telemetry starts");

    // Logs of every form.
    info!("static message");
    let x = 42;
    warn!("formatted {x} and {}", "more");
    let set = PropertySet::find_or_create([("k", "v"), ("a", "b")]);
    error!(properties: set, "tagged static");
    debug!(properties: set, "tagged {}", 7);
    trace!(target: "custom::target", "with target");
    fatal!("braces {{escaped}}");
    let long = "é".repeat(40_000);
    info!("long {long}");
    info!("display {}", Loud);

    // Metrics.
    imetric!("int_metric", "count", 5);
    fmetric!("float_metric", "ms", 2.5);
    imetric!("tagged_int", "bytes", set, 9);
    fmetric!("tagged_float", "ratio", set, 0.5);

    // Thread spans.
    {
        span_scope!("outer");
        {
            span_scope!("inner");
            assert_eq!(sync_fn(2), 4);
        }
        span_scope_named!(format!("dynamic {x}"));
        span_scope_named!("static named");
    }

    // Async spans.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert_eq!(rt.block_on(parent()), Ok(45));
    assert_eq!(rt.block_on(boxed(2)), 6);

    // Another thread, enough events to fill several chunks.
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| {
            for i in 0..10_000u64 {
                imetric!("worker_metric", "count", i);
            }
            info!("worker done");
        })
        .expect("spawn")
        .join()
        .expect("join");

    // Filtering at run time.
    tarn_tracing::set_filter("warn".parse().expect("valid filter"));
    info!("filtered out");
    warn!("still in");
    tarn_tracing::set_filter("trace".parse().expect("valid filter"));

    assert!(tarn_tracing::flush(Duration::from_secs(10)), "flush");
    let d = decode(&transport.take());

    // Process first; every stream before its blocks (checked by `decode`).
    assert_eq!(d.routes.first(), Some(&Route::Process));
    let process = d.process.as_ref().expect("process sent");
    assert_eq!(process.process_id, guard.process_id());
    assert_eq!(
        process.properties.get("service.name").map(String::as_str),
        Some("roundtrip")
    );
    assert!(process.tsc_frequency > 0, "frequency measured");

    // The worker's streams may be sent first (at its exit): look at this thread's.
    let me = std::thread::current().name().map(str::to_owned);
    let logs: Vec<LogRow<'_>> = d
        .events
        .iter()
        .filter(|(s, _, _)| d.thread_name(s) == me.as_deref())
        .filter_map(|(_, _, e)| match e {
            Ev::Log {
                level,
                target,
                msg,
                props,
            } => Some((*level, target.as_str(), msg.as_str(), props.as_slice())),
            _ => None,
        })
        .collect();
    let here = module_path!();
    let kv = vec![
        ("a".to_owned(), "b".to_owned()),
        ("k".to_owned(), "v".to_owned()),
    ];
    #[allow(clippy::type_complexity)]
    let expect: Vec<(u32, &str, String, &[(String, String)])> = vec![
        (4, here, "static message".into(), &[]),
        (3, here, "formatted 42 and more".into(), &[]),
        (2, here, "tagged static".into(), &kv),
        (5, here, "tagged 7".into(), &kv),
        (6, "custom::target", "with target".into(), &[]),
        (1, here, "braces {escaped}".into(), &[]),
        (4, here, format!("long {long}"), &[]),
        (4, here, "display loud".into(), &[]),
    ];
    for (i, (level, target, msg, props)) in expect.iter().enumerate() {
        let got = logs.get(i).expect("log present");
        assert_eq!(
            (got.0, got.1, got.2, got.3),
            (*level, *target, msg.as_str(), *props),
            "log {i}"
        );
    }
    assert!(d.has_log("worker done"));
    assert!(d.has_log("still in"));
    assert!(!d.has_log("filtered out"));
    assert!(!d.has_log("nested log"));

    let measures: Vec<&Ev> = d
        .events
        .iter()
        .map(|(_, _, e)| e)
        .filter(|e| matches!(e, Ev::Measure { name, .. } if name != "worker_metric"))
        .collect();
    let m =
        |name: &str, unit: &str, value: f64, int: bool, props: &[(String, String)]| Ev::Measure {
            name: name.into(),
            unit: unit.into(),
            value,
            int,
            props: props.to_vec(),
        };
    assert_eq!(
        measures,
        [
            &m("int_metric", "count", 5.0, true, &[]),
            &m("float_metric", "ms", 2.5, false, &[]),
            &m("tagged_int", "bytes", 9.0, true, &kv),
            &m("tagged_float", "ratio", 0.5, false, &kv),
        ]
    );

    // The worker's metrics: all there, in order, in one stream named after the thread,
    // split in several blocks with contiguous object offsets.
    let worker: Vec<(&str, f64)> = d
        .events
        .iter()
        .filter_map(|(s, _, e)| match e {
            Ev::Measure { name, value, .. } if name == "worker_metric" => {
                Some((s.as_str(), *value))
            }
            _ => None,
        })
        .collect();
    assert_eq!(worker.len(), 10_000);
    assert!(worker.iter().enumerate().all(|(i, (_, v))| *v == i as f64));
    let stream = worker[0].0;
    assert!(worker.iter().all(|(s, _)| *s == stream));
    assert_eq!(d.thread_name(stream), Some("worker"));
    assert!(d.streams[stream].tags == ["metrics"], "a metrics stream");

    // Spans: nesting order of thread spans, async parents and depths.
    let spans: Vec<SpanRow<'_>> = d
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            Ev::Span {
                begin,
                name,
                span_id,
                parent,
                depth,
            } => Some((*begin, name.as_str(), *span_id, *parent, *depth)),
            _ => None,
        })
        .collect();
    let thread: Vec<(bool, &str)> = spans
        .iter()
        .filter(|s| s.2.is_none())
        .map(|s| (s.0, s.1))
        .collect();
    assert_eq!(
        thread,
        [
            (true, "outer"),
            (true, "inner"),
            (true, "renamed_sync"),
            (false, "renamed_sync"),
            (false, "inner"),
            (true, "dynamic 42"),
            (true, "static named"),
            (false, "static named"),
            (false, "dynamic 42"),
            (false, "outer"),
        ]
    );
    let parent_name = concat!(module_path!(), "::parent");
    let child_name = concat!(module_path!(), "::child");
    let boxed_name = concat!(module_path!(), "::boxed");
    let asyncs: Vec<_> = spans
        .iter()
        .filter(|s| s.2.is_some() && s.1 != boxed_name)
        .collect();
    let boxed: Vec<_> = spans.iter().filter(|s| s.1 == boxed_name).collect();
    assert_eq!(boxed.len(), 2, "begin and end of the boxed future");
    assert_eq!((boxed[0].0, boxed[1].0), (true, false));
    assert_eq!(asyncs.len(), 6);
    let p = asyncs[0];
    assert_eq!((p.0, p.1, p.3, p.4), (true, parent_name, Some(0), Some(0)));
    let children: Vec<_> = asyncs.iter().filter(|s| s.1 == child_name).collect();
    assert_eq!(children.len(), 4);
    assert!(children.iter().all(|c| c.3 == p.2 && c.4 == Some(1)));
    assert_eq!(
        asyncs.last().map(|s| (s.0, s.1)),
        Some((false, parent_name))
    );

    let stats = guard.stats();
    assert_eq!(stats.dropped, [1, 0, 0], "only the nested log was dropped");
    assert!(stats.requests_sent >= 6);
    drop(guard);
}
