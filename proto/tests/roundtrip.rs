//! Write with the block writers, send through the envelopes, read back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use tarn_proto::native::*;

const PROCESS: &str = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d";
const LIMIT: usize = 1 << 24;

fn send_block(kind: StreamKind, buffers: &BlockBuffers) -> (StreamInfo, Block) {
    let stream = kind.stream_info(
        PROCESS.to_owned(),
        "1c9a7f0e-4f9b-4c4a-8f39-3f3f8e0c2a11".to_owned(),
        BTreeMap::from([("thread-name".to_owned(), "main".to_owned())]),
    );
    let stream = decode_stream(&encode_stream(&stream)).unwrap();
    let block = Block {
        block_id: "E0C1D2B3-A4F5-4677-8899-AABBCCDDEEFF".to_owned(),
        stream_id: stream.stream_id.clone(),
        process_id: PROCESS.to_owned(),
        begin_time: time::format_rfc3339_nanos(1_767_323_045_000_000_000),
        begin_ticks: 0,
        end_time: time::format_rfc3339_nanos(1_767_323_046_000_000_000),
        end_ticks: 1_000_000,
        payload: buffers.to_payload(),
        object_offset: 0,
        nb_objects: buffers.nb_objects as i32,
    };
    let block = decode_block(&encode_block(&block)).unwrap();
    // Canonical UUID text.
    assert_eq!(block.block_id, "e0c1d2b3-a4f5-4677-8899-aabbccddeeff");
    (stream, block)
}

/// Decodes a block and also runs every record through the generic decoder.
fn with_events(stream: &StreamInfo, block: &Block, check: impl FnOnce(Vec<Event<'_>>)) {
    let decoder = StreamDecoder::from_stream(stream);
    let content = decoder.decode_payload(&block.payload, LIMIT).unwrap();
    for record in records(&content.objects, &stream.objects_metadata) {
        let record = record.unwrap();
        let udt = &stream.objects_metadata[usize::from(record.type_index)];
        parse_object(
            udt,
            &stream.objects_metadata,
            record.payload,
            &content.dependencies,
        )
        .unwrap();
    }
    let events: Vec<Event<'_>> = decoder.events(&content).collect::<Result<_, _>>().unwrap();
    assert_eq!(events.len(), block.nb_objects as usize);
    check(events);
}

const INFO: LogDesc<'static> = LogDesc {
    key: 0x1000,
    level: 4,
    fmt_str: "user {user} did {{x}} {n:?} {missing}",
    target: "app::auth",
    module_path: "app::auth",
    file: "src/auth.rs",
    line: 42,
};

const WARN: LogDesc<'static> = LogDesc {
    key: 0x2000,
    level: 3,
    fmt_str: "static warning",
    target: "app",
    module_path: "app",
    file: "src/main.rs",
    line: 7,
};

#[test]
fn logs() {
    let mut w = LogBlockWriter::new();
    w.log_static(&WARN, 100);
    w.log_string(&INFO, 101, "formatted ✓");
    let props = w.property_set(&[("user", "alice"), ("n", "[1, 2]")]);
    w.log_template(&INFO, props, 102);
    w.log_tagged_static(&WARN, props, 103);
    let overrides = w.property_set(&[("level", "Error"), ("target", "other::target"), ("k", "v")]);
    w.log_tagged_string(&INFO, overrides, 104, "tagged message");
    w.log_interop(105, 5, "hyper::proto", "interop message");
    w.log_interop_tagged(106, 2, "tower", props, "interop tagged");
    // Same descriptor and set again: interned, nothing new in the dependencies.
    let deps_len = {
        let probe = w.property_set(&[("user", "alice"), ("n", "[1, 2]")]);
        assert_eq!(probe, props);
        w.len_bytes()
    };
    w.log_static(&WARN, 107);
    assert_eq!(w.nb_objects(), 8);
    let buffers = w.finish();
    assert!(deps_len > 0);

    let (stream, block) = send_block(StreamKind::Log, &buffers);
    assert_eq!(stream.tags, ["log"]);
    with_events(&stream, &block, |events| {
        let logs: Vec<&LogEntry<'_>> = events
            .iter()
            .map(|e| match e {
                Event::Log(l) => l,
                other => panic!("{other:?}"),
            })
            .collect();
        let summary: Vec<(&str, i64, u32, &str, &str)> = logs
            .iter()
            .map(|l| (l.type_name, l.time, l.level, l.target, &*l.msg))
            .collect();
        assert_eq!(
            summary,
            [
                ("LogStaticStrEvent", 100, 3, "app", "static warning"),
                ("LogStringEventV2", 101, 4, "app::auth", "formatted ✓"),
                (
                    "TaggedLogTemplateEvent",
                    102,
                    4,
                    "app::auth",
                    "user alice did {x} [1, 2] {missing}"
                ),
                ("TaggedLogStaticStrEvent", 103, 3, "app", "static warning"),
                ("TaggedLogString", 104, 2, "other::target", "tagged message"),
                (
                    "LogStringInteropEventV3",
                    105,
                    5,
                    "hyper::proto",
                    "interop message"
                ),
                ("TaggedLogInteropEvent", 106, 2, "tower", "interop tagged"),
                ("LogStaticStrEvent", 107, 3, "app", "static warning"),
            ]
        );
        assert_eq!(logs[0].file, Some("src/main.rs"));
        assert_eq!(logs[0].line, Some(7));
        assert_eq!(logs[1].module_path, Some("app::auth"));
        assert!(matches!(logs[0].msg, Cow::Borrowed(_)));
        assert!(matches!(logs[1].msg, Cow::Borrowed(_)));
        let p = logs[2].properties.unwrap();
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("user", "alice"), ("n", "[1, 2]")]
        );
        assert_eq!(logs[4].properties.unwrap().get("K"), Some("v"));
        assert_eq!(logs[6].properties.unwrap().get("user"), Some("alice"));
        assert_eq!(logs[5].properties, None);
    });
}

#[test]
fn metrics() {
    let requests = MetricDesc {
        key: 1,
        name: "requests",
        unit: "count",
        target: "app",
        file: "src/main.rs",
        line: 10,
        lod: 2,
    };
    let latency = MetricDesc {
        key: 2,
        name: "latency",
        unit: "ms",
        ..requests
    };
    // What `imetric_dyn!` sends: an empty name and unit, overridden by properties.
    let dynamic = MetricDesc {
        key: 3,
        name: "",
        unit: "",
        ..requests
    };
    let mut w = MetricsBlockWriter::new();
    w.int_metric(&requests, 7, 1);
    w.float_metric(&latency, 2.5, 2);
    let region = w.property_set(&[("region", "eu")]);
    w.tagged_int_metric(&requests, region, u64::MAX, 3);
    w.tagged_float_metric(&latency, region, -0.0, 4);
    let named = w.property_set(&[("name", "queue.depth"), ("unit", "items"), ("queue", "a")]);
    w.tagged_int_metric(&dynamic, named, 12, 5);
    let (stream, block) = send_block(StreamKind::Metrics, &w.finish());
    with_events(&stream, &block, |events| {
        let m: Vec<(&str, &str, MeasureValue, i64, Option<&str>)> = events
            .iter()
            .map(|e| match e {
                Event::Measure(m) => (
                    m.name,
                    m.unit,
                    m.value,
                    m.time,
                    m.properties.and_then(|p| p.get("region")),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            m,
            [
                ("requests", "count", MeasureValue::Int(7), 1, None),
                ("latency", "ms", MeasureValue::Float(2.5), 2, None),
                (
                    "requests",
                    "count",
                    MeasureValue::Int(u64::MAX),
                    3,
                    Some("eu")
                ),
                ("latency", "ms", MeasureValue::Float(-0.0), 4, Some("eu")),
                ("queue.depth", "items", MeasureValue::Int(12), 5, None),
            ]
        );
        let Event::Measure(first) = &events[0] else {
            unreachable!()
        };
        assert_eq!(
            (first.target, first.file, first.line, first.lod),
            ("app", Some("src/main.rs"), Some(10), Some(2))
        );
    });
}

#[test]
fn spans() {
    let outer = SpanDesc {
        key: 10,
        name: "outer",
        target: "app",
        module_path: "app::work",
        file: "src/work.rs",
        line: 3,
        lod: 3,
    };
    let location = SpanLocation {
        key: 11,
        target: "app",
        module_path: "app::work",
        file: "src/work.rs",
        line: 9,
        lod: 1,
    };
    let a = AsyncIds {
        span_id: 5,
        parent_span_id: 2,
        depth: 1,
    };
    let b = AsyncIds {
        span_id: 6,
        parent_span_id: 5,
        depth: 2,
    };
    let mut w = ThreadBlockWriter::new();
    w.begin_thread_span(&outer, 1);
    w.begin_thread_named_span(&location, "request GET /", 2);
    w.end_thread_named_span(&location, "request GET /", 3);
    w.end_thread_span(&outer, 4);
    w.begin_async_span(&outer, &a, 5);
    w.begin_async_named_span(&location, "fetch", &b, 6);
    w.end_async_named_span(&location, "fetch", &b, 7);
    w.end_async_span(&outer, &a, 8);
    let props = w.property_set(&[("rows", "42")]);
    w.begin_thread_span(&outer, 9);
    w.end_thread_span_tagged(&outer, props, 10);
    w.begin_async_span(&outer, &a, 11);
    w.end_async_span_tagged(&outer, props, &a, 12);
    let (stream, block) = send_block(StreamKind::Thread, &w.finish());
    assert_eq!(stream.tags, ["cpu"]);
    with_events(&stream, &block, |events| {
        let spans: Vec<&SpanEvent<'_>> = events
            .iter()
            .map(|e| match e {
                Event::Span(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        type Row<'a> = (
            &'a str,
            i64,
            SpanPhase,
            &'a str,
            Option<u32>,
            Option<AsyncSpan>,
        );
        let summary: Vec<Row<'_>> = spans
            .iter()
            .map(|s| (s.type_name, s.time, s.phase, s.name, s.line, s.async_span))
            .collect();
        use SpanPhase::{Begin, End};
        let ids = |x: AsyncIds| AsyncSpan {
            span_id: x.span_id,
            parent_span_id: x.parent_span_id,
            depth: x.depth,
        };
        assert_eq!(
            summary,
            [
                ("BeginThreadSpanEvent", 1, Begin, "outer", Some(3), None),
                (
                    "BeginThreadNamedSpanEvent",
                    2,
                    Begin,
                    "request GET /",
                    Some(9),
                    None
                ),
                (
                    "EndThreadNamedSpanEvent",
                    3,
                    End,
                    "request GET /",
                    Some(9),
                    None
                ),
                ("EndThreadSpanEvent", 4, End, "outer", Some(3), None),
                (
                    "BeginAsyncSpanEvent",
                    5,
                    Begin,
                    "outer",
                    Some(3),
                    Some(ids(a))
                ),
                (
                    "BeginAsyncNamedSpanEvent",
                    6,
                    Begin,
                    "fetch",
                    Some(9),
                    Some(ids(b))
                ),
                (
                    "EndAsyncNamedSpanEvent",
                    7,
                    End,
                    "fetch",
                    Some(9),
                    Some(ids(b))
                ),
                ("EndAsyncSpanEvent", 8, End, "outer", Some(3), Some(ids(a))),
                ("BeginThreadSpanEvent", 9, Begin, "outer", Some(3), None),
                ("TaggedEndThreadSpanEvent", 10, End, "outer", Some(3), None),
                (
                    "BeginAsyncSpanEvent",
                    11,
                    Begin,
                    "outer",
                    Some(3),
                    Some(ids(a))
                ),
                (
                    "TaggedEndAsyncSpanEvent",
                    12,
                    End,
                    "outer",
                    Some(3),
                    Some(ids(a))
                ),
            ]
        );
        assert_eq!(spans[9].properties.unwrap().get("rows"), Some("42"));
        assert_eq!(spans[11].properties.unwrap().get("rows"), Some("42"));
        assert_eq!(spans[1].module_path, Some("app::work"));
        assert_eq!(spans[1].lod, Some(1));
        assert_eq!(spans[0].file, Some("src/work.rs"));
    });
}

#[test]
fn images() {
    let mut w = ImageBlockWriter::new();
    w.image(77, "screenshot", "png", &[0x89, b'P', b'N', b'G']);
    w.image(78, "", "", &[]);
    let (stream, block) = send_block(StreamKind::Image, &w.finish());
    with_events(&stream, &block, |events| {
        assert_eq!(
            events,
            [
                Event::Image(Image {
                    time: 77,
                    name: "screenshot".into(),
                    format: "png".into(),
                    data: &[0x89, b'P', b'N', b'G'],
                }),
                Event::Image(Image {
                    time: 78,
                    name: "".into(),
                    format: "".into(),
                    data: &[],
                }),
            ]
        );
    });
}

#[test]
fn empty_block() {
    let (stream, block) = send_block(StreamKind::Log, &LogBlockWriter::new().finish());
    with_events(&stream, &block, |events| assert!(events.is_empty()));
}
