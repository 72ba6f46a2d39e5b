//! Decodes the request bodies captured from `micromegas-telemetry-sink` 0.33 (payloads as CBOR
//! byte strings) and 0.28 (payloads as arrays of integers), and checks them against what the
//! program did (`shared/testdata/micromegas/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Capture, load};
use std::collections::HashMap;
use tarn_proto::native::*;

const LIMIT: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Decoded {
    logs: Vec<(String, u32, String, String)>, // type, level, target, msg
    ints: Vec<(String, String, u64)>,
    floats: Vec<(String, String, f64)>,
    spans: Vec<(String, i64, i64, Option<String>)>, // name, begin, end, parent name
    async_spans: Vec<(String, u64, i64, i64)>,      // name, id, begin, end
    cpu_end_ticks: i64,
    cpu_end_time: i64,
}

fn decode_capture(capture: &Capture) -> Decoded {
    let mut out = Decoded::default();
    for block in &capture.blocks {
        let stream = &capture.streams[&block.stream_id];
        assert_eq!(block.process_id, capture.process.process_id);
        assert_eq!(stream.process_id, capture.process.process_id);
        let decoder = StreamDecoder::from_stream(stream);
        let content = decoder.decode_payload(&block.payload, LIMIT).unwrap();
        let events: Vec<Event<'_>> = decoder.events(&content).collect::<Result<_, _>>().unwrap();
        assert_eq!(events.len(), block.nb_objects as usize);
        assert!(block.begin_time_nanos().unwrap() <= block.end_time_nanos().unwrap());
        if stream.tags == ["cpu"] {
            out.cpu_end_ticks = block.end_ticks;
            out.cpu_end_time = block.end_time_nanos().unwrap();
        }
        let mut stack: Vec<(String, i64)> = Vec::new();
        let mut open_async: HashMap<u64, (String, i64)> = HashMap::new();
        for event in events {
            match event {
                Event::Log(log) => out.logs.push((
                    log.type_name.to_owned(),
                    log.level,
                    log.target.to_owned(),
                    log.msg.into_owned(),
                )),
                Event::Measure(m) => match m.value {
                    MeasureValue::Int(v) => out.ints.push((m.name.into(), m.unit.into(), v)),
                    MeasureValue::Float(v) => {
                        out.floats.push((m.name.into(), m.unit.into(), v));
                    }
                },
                Event::Span(span) => match (span.async_span, span.phase) {
                    (None, SpanPhase::Begin) => stack.push((span.name.to_owned(), span.time)),
                    (None, SpanPhase::End) => {
                        let (name, begin) = stack.pop().expect("end without begin");
                        assert_eq!(name, span.name);
                        let parent = stack.last().map(|(n, _)| n.clone());
                        out.spans.push((name, begin, span.time, parent));
                    }
                    (Some(ids), SpanPhase::Begin) => {
                        let previous =
                            open_async.insert(ids.span_id, (span.name.to_owned(), span.time));
                        assert!(previous.is_none());
                    }
                    (Some(ids), SpanPhase::End) => {
                        let (name, begin) = open_async.remove(&ids.span_id).expect("async end");
                        assert_eq!(name, span.name);
                        out.async_spans.push((name, ids.span_id, begin, span.time));
                    }
                },
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(stack.is_empty(), "unclosed thread spans {stack:?}");
        assert!(open_async.is_empty(), "unclosed async spans");
    }
    out
}

fn check(version: &str, marker: &str, exe: &str, sink_logs: usize, legacy_arrays: bool) {
    let capture = load(version);
    let process = &capture.process;
    assert_eq!(process.exe, exe);
    assert_eq!(process.tsc_frequency, 0);
    assert_eq!(process.parent_process_id, None);
    assert_eq!(
        process.properties.get("acc.marker").map(String::as_str),
        Some(marker)
    );
    assert!(process.start_time.ends_with('Z'));
    let start = process.start_time_nanos().unwrap();

    // The payload encoding of each capture.
    for (name, body) in &capture.bodies {
        if name.contains("insert_block") {
            // `payload` is followed by a map header then `dependencies`: a byte string is
            // major type 2 (0x40..=0x5b), an array major type 4 (0x80..=0x9b).
            let key = b"dependencies";
            let at = body
                .windows(key.len())
                .position(|w| w == key)
                .expect("dependencies key")
                + key.len();
            let major = body[at] >> 5;
            assert_eq!(major, if legacy_arrays { 4 } else { 2 }, "{name}");
        }
    }

    let mut tags: Vec<&str> = capture
        .streams
        .values()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect();
    tags.sort();
    assert_eq!(tags, ["cpu", "log", "metrics"]);
    let cpu = capture
        .streams
        .values()
        .find(|s| s.tags == ["cpu"])
        .unwrap();
    assert_eq!(
        cpu.properties.get("thread-name").map(String::as_str),
        Some("main")
    );
    assert!(cpu.properties.contains_key("thread-id"));

    let d = decode_capture(&capture);

    // Logs: 1 static, 10 formatted, 1 warn from the program, then the sink's own.
    let program: Vec<_> = d
        .logs
        .iter()
        .filter(|(_, _, target, _)| !target.starts_with("micromegas"))
        .collect();
    let sink: Vec<_> = d
        .logs
        .iter()
        .filter(|(_, _, target, _)| target.starts_with("micromegas"))
        .collect();
    assert_eq!(program.len(), 12);
    assert_eq!(sink.len(), sink_logs, "{sink:?}");
    assert_eq!(
        (program[0].0.as_str(), program[0].1, program[0].3.as_str()),
        ("LogStaticStrEvent", 4, "acc static log line")
    );
    for i in 0..10 {
        let (type_name, level, _, msg) = program[1 + i];
        assert_eq!(type_name, "LogStringEventV2");
        assert_eq!(*level, 4);
        assert_eq!(msg, &format!("acc formatted log {i} {marker}"));
    }
    assert_eq!((program[11].1, program[11].3.as_str()), (3, "acc done 20"));
    for (_, level, _, msg) in &sink {
        assert!((1..=6).contains(level));
        assert!(!msg.is_empty());
    }

    // Metrics.
    assert_eq!(d.ints.len(), 10);
    assert_eq!(d.floats.len(), 10);
    for i in 0..10 {
        assert_eq!(
            d.ints[i],
            ("acc_int_metric".into(), "count".into(), i as u64)
        );
        assert_eq!(
            d.floats[i],
            ("acc_float_metric".into(), "ms".into(), i as f64 * 1.5)
        );
    }

    // Thread spans: 10 of each, the inner one inside the outer one, the leaf inside the inner.
    let count = |name: &str| d.spans.iter().filter(|s| s.0 == name).count();
    assert_eq!(count("acc_outer_span"), 10);
    assert_eq!(count("acc_inner_span"), 10);
    let leaves: Vec<_> = d
        .spans
        .iter()
        .filter(|s| s.0.ends_with("::acc_sync_leaf"))
        .collect();
    assert_eq!(leaves.len(), 10);
    assert_eq!(d.spans.len(), 30);
    for (name, begin, end, parent) in &d.spans {
        assert!(begin <= end);
        match name.as_str() {
            "acc_outer_span" => assert_eq!(parent, &None),
            "acc_inner_span" => assert_eq!(parent.as_deref(), Some("acc_outer_span")),
            _ => assert_eq!(parent.as_deref(), Some("acc_inner_span")),
        }
    }

    // Async spans: 5, each at least 2 ms. The tick frequency is unknown (0): estimate it from
    // the thread block, whose ticks are relative to the process start.
    assert_eq!(d.async_spans.len(), 5);
    let frequency = d.cpu_end_ticks as f64 / ((d.cpu_end_time - start) as f64 / 1e9);
    assert!(frequency > 1e6, "{frequency}");
    let mut ids = Vec::new();
    for (name, id, begin, end) in &d.async_spans {
        assert!(name.ends_with("::acc_async_leaf"));
        let seconds = (end - begin) as f64 / frequency;
        assert!(seconds >= 0.002, "async span lasted {seconds} s");
        ids.push(*id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

#[test]
fn sink_033_capture() {
    check(
        "sink-0.33",
        "golden033",
        "/usr/local/bin/example-app-033",
        2,
        false,
    );
}

#[test]
fn sink_028_capture() {
    check(
        "sink-0.28",
        "golden028",
        "/usr/local/bin/example-app-028",
        0,
        true,
    );
}

#[test]
fn envelopes_reencode_identically_and_payloads_as_byte_strings() {
    for version in ["sink-0.33", "sink-0.28"] {
        let capture = load(version);
        for (name, body) in &capture.bodies {
            if name.contains("insert_process") {
                let p = decode_process(body).unwrap();
                assert_eq!(decode_process(&encode_process(&p)).unwrap(), p);
            } else if name.contains("insert_stream") {
                let s = decode_stream(body).unwrap();
                let again = encode_stream(&s);
                assert_eq!(decode_stream(&again).unwrap(), s);
                // Same key order and types as the sink: byte for byte, save for the
                // properties map (upstream's is a HashMap, in hash order).
                if s.properties.len() <= 1 {
                    assert_eq!(&again, body, "{version}/{name}");
                }
                let udts = encode_udts(&s.objects_metadata);
                assert_eq!(decode_udts(&udts).unwrap(), s.objects_metadata);
            } else {
                let b = decode_block(body).unwrap();
                let again = encode_block(&b);
                assert_eq!(decode_block(&again).unwrap(), b);
                if version == "sink-0.33" {
                    assert_eq!(&again, body, "{version}/{name}");
                } else {
                    assert!(again.len() < body.len());
                }
                let payload = encode_block_payload(&b.payload);
                assert_eq!(decode_block_payload(&payload).unwrap(), b.payload);
            }
        }
    }
}

#[test]
fn generic_decoder_reads_every_golden_record() {
    for version in ["sink-0.33", "sink-0.28"] {
        let capture = load(version);
        for block in &capture.blocks {
            let stream = &capture.streams[&block.stream_id];
            let deps_buf = decompress_frame(&block.payload.dependencies, LIMIT).unwrap();
            let objects = decompress_frame(&block.payload.objects, LIMIT).unwrap();
            let deps = parse_dependencies(&deps_buf, &stream.dependencies_metadata).unwrap();
            let mut n = 0;
            for record in records(&objects, &stream.objects_metadata) {
                let record = record.unwrap();
                let udt = &stream.objects_metadata[usize::from(record.type_index)];
                let object =
                    parse_object(udt, &stream.objects_metadata, record.payload, &deps).unwrap();
                assert_eq!(object.type_name, udt.name);
                assert!(object.get_i64("time").is_some(), "{object:?}");
                match &*udt.name {
                    "LogStringEventV2" => {
                        assert!(object.get_str("msg").is_some());
                        let desc = object.get("desc").and_then(Value::as_object).unwrap();
                        assert!(desc.get_str("fmt_str").is_some());
                    }
                    "BeginThreadSpanEvent" | "EndThreadSpanEvent" => {
                        let desc = object
                            .get("thread_span_desc")
                            .and_then(Value::as_object)
                            .unwrap();
                        assert_eq!(&*desc.type_name, "SpanRecord");
                        assert!(desc.get_str("name").is_some());
                        // The plan reads the same members without building objects.
                        let plan = Plan::new(udt, &stream.objects_metadata);
                        let time = plan
                            .field("time")
                            .unwrap()
                            .read_i64(record.payload)
                            .unwrap();
                        assert_eq!(Some(time), object.get_i64("time"));
                        let id = plan
                            .field("thread_span_desc")
                            .unwrap()
                            .read_ref(record.payload)
                            .unwrap();
                        assert_eq!(Some(id), desc.get_u64("id"));
                    }
                    "IntegerMetricEvent" => assert!(object.get_u64("value").is_some()),
                    "FloatMetricEvent" => assert!(object.get_f64("value").is_some()),
                    _ => {}
                }
                n += 1;
            }
            assert_eq!(n, block.nb_objects);
        }
    }
}

#[test]
fn writer_type_descriptions_are_upstream_033s() {
    let capture = load("sink-0.33");
    for stream in capture.streams.values() {
        let kind = match stream.tags[0].as_str() {
            "log" => StreamKind::Log,
            "metrics" => StreamKind::Metrics,
            "cpu" => StreamKind::Thread,
            other => panic!("{other}"),
        };
        // Upstream appends the member types in hash-map order: compare sorted by name, and the
        // queue types (which define the type indexes) in order.
        for (ours, theirs) in [
            (kind.dependencies_metadata(), &stream.dependencies_metadata),
            (kind.objects_metadata(), &stream.objects_metadata),
        ] {
            let queue = |l: &[Udt]| -> Vec<Udt> {
                l.iter()
                    .filter(|u| {
                        !["StringId", "DynStringId", "StaticStringRef", "Property"]
                            .contains(&&*u.name)
                    })
                    .cloned()
                    .collect()
            };
            assert_eq!(queue(&ours), queue(theirs));
            let mut a = ours.clone();
            let mut b = theirs.clone();
            a.sort_by(|x, y| x.name.cmp(&y.name));
            b.sort_by(|x, y| x.name.cmp(&y.name));
            assert_eq!(a, b);
        }
    }
}
