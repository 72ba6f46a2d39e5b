//! Hostile and broken input: every case must be an error (or a harmless success), never a
//! panic, and never an allocation sized by a length field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, load};
use std::sync::Arc;
use tarn_proto::native::*;

const LIMIT: usize = 1 << 20;

/// Decodes everything reachable from a body, as the gateway would, and returns the number of
/// events seen (bounded by the decompressed size).
fn exercise_block(stream: &StreamInfo, block: &Block) -> usize {
    let decoder = StreamDecoder::from_stream(stream);
    let Ok(content) = decoder.decode_payload(&block.payload, LIMIT) else {
        return 0;
    };
    let mut n = 0;
    for event in decoder.events(&content) {
        n += 1;
        drop(event);
    }
    assert!(n <= content.objects.len());
    n
}

#[test]
fn truncated_bodies_are_errors() {
    for version in ["sink-0.33", "sink-0.28"] {
        let capture = load(version);
        for (name, body) in &capture.bodies {
            for len in 0..body.len() {
                let cut = &body[..len];
                let failed = if name.contains("process") {
                    decode_process(cut).is_err()
                } else if name.contains("stream") {
                    decode_stream(cut).is_err()
                } else {
                    decode_block(cut).is_err()
                };
                assert!(failed, "{version}/{name} cut at {len} decoded");
            }
        }
    }
}

#[test]
fn mutated_bodies_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for version in ["sink-0.33", "sink-0.28"] {
        let capture = load(version);
        let streams: Vec<&StreamInfo> = capture.streams.values().collect();
        for (name, body) in &capture.bodies {
            for _ in 0..300 {
                let mut bad = body.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(bad.len());
                    bad[at] = rng.next() as u8;
                }
                if name.contains("process") {
                    decode_process(&bad).ok();
                } else if name.contains("stream") {
                    if let Ok(stream) = decode_stream(&bad) {
                        // A mutated stream against the real blocks.
                        for block in &capture.blocks {
                            exercise_block(&stream, block);
                        }
                    }
                } else if let Ok(block) = decode_block(&bad) {
                    for stream in &streams {
                        exercise_block(stream, &block);
                    }
                }
            }
        }
    }
}

#[test]
fn mutated_transit_buffers_never_panic() {
    let mut rng = Rng(42);
    for version in ["sink-0.33", "sink-0.28"] {
        let capture = load(version);
        for block in &capture.blocks {
            let stream = &capture.streams[&block.stream_id];
            let decoder = StreamDecoder::from_stream(stream);
            let deps = decompress_frame(&block.payload.dependencies, LIMIT).unwrap();
            let objects = decompress_frame(&block.payload.objects, LIMIT).unwrap();
            let good = decoder.parse_dependencies(&deps).unwrap();

            // Every prefix: an error unless it ends on a record boundary.
            for len in 0..deps.len() {
                decoder.parse_dependencies(&deps[..len]).ok();
            }
            for len in 0..objects.len() {
                let results: Vec<_> = decoder.events_of(&objects[..len], &good).collect();
                let boundary = records(&objects, &stream.objects_metadata)
                    .map(|r| r.unwrap())
                    .any(|r| r.offset == len);
                assert_eq!(
                    results.iter().all(Result::is_ok),
                    boundary || len == 0,
                    "{len}"
                );
            }
            for _ in 0..500 {
                let mut d = deps.clone();
                let mut o = objects.clone();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(d.len());
                    d[at] = rng.next() as u8;
                    let at = rng.below(o.len());
                    o[at] = rng.next() as u8;
                }
                let parsed = decoder.parse_dependencies(&d).unwrap_or_default();
                for deps in [&parsed, &good] {
                    let n = decoder.events_of(&o, deps).count();
                    assert!(n <= o.len());
                    for record in records(&o, &stream.objects_metadata).flatten() {
                        let udt = &stream.objects_metadata[usize::from(record.type_index)];
                        parse_object(udt, &stream.objects_metadata, record.payload, deps).ok();
                    }
                }
            }
        }
    }
}

#[test]
fn mutated_type_descriptions_never_panic() {
    let mut rng = Rng(7);
    let capture = load("sink-0.33");
    let weird = [
        0,
        1,
        7,
        8,
        15,
        16,
        31,
        32,
        47,
        48,
        4096,
        usize::MAX - 1,
        usize::MAX,
    ];
    let names = [
        "u8", "u32", "i64", "f64", "i32", "StringId", "Property", "Nope", "",
    ];
    for block in &capture.blocks {
        let stream = &capture.streams[&block.stream_id];
        for _ in 0..400 {
            let mut s = stream.clone();
            let list = if rng.below(2) == 0 {
                &mut s.dependencies_metadata
            } else {
                &mut s.objects_metadata
            };
            let i = rng.below(list.len());
            let udt = &mut list[i];
            match rng.below(6) {
                0 => udt.size = weird[rng.below(weird.len())],
                1 => udt.is_reference = !udt.is_reference,
                2 if !udt.members.is_empty() => {
                    let j = rng.below(udt.members.len());
                    udt.members[j].offset = weird[rng.below(weird.len())];
                }
                3 if !udt.members.is_empty() => {
                    let j = rng.below(udt.members.len());
                    udt.members[j].size = weird[rng.below(weird.len())];
                }
                4 if !udt.members.is_empty() => {
                    let j = rng.below(udt.members.len());
                    udt.members[j].type_name = Arc::from(names[rng.below(names.len())]);
                    udt.members[j].is_reference = rng.below(2) == 0;
                }
                _ => udt.name = Arc::from(names[rng.below(names.len())]),
            }
            exercise_block(&s, block);
        }
    }
}

fn cbor(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

#[test]
fn hostile_cbor() {
    assert!(matches!(decode_process(&[]), Err(NativeError::Cbor { .. })));
    assert!(matches!(decode_block(&[]), Err(NativeError::Cbor { .. })));
    assert!(decode_stream(b"not cbor at all").is_err());
    // A map declaring 2^64 - 1 entries, an array declaring as many, a byte string declaring
    // as many bytes: errors, without trying to allocate them.
    let huge = [0xff; 8];
    for header in [0xbb, 0x9b, 0x5b, 0x7b] {
        let mut body = vec![header];
        body.extend_from_slice(&huge);
        assert!(decode_process(&body).is_err());
        assert!(decode_block(&body).is_err());
        assert!(decode_stream(&body).is_err());
    }
    // The same inside a payload.
    let capture = load("sink-0.33");
    let body = &capture
        .bodies
        .iter()
        .find(|(n, _)| n.contains("block"))
        .unwrap()
        .1;
    let key = b"dependencies";
    let at = body.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    for header in [0x5b, 0x9b] {
        let mut bad = body[..at].to_vec();
        bad.push(header);
        bad.extend_from_slice(&huge);
        bad.extend_from_slice(&body[at..]);
        assert!(decode_block(&bad).is_err());
    }
    // Nesting far deeper than any envelope, under an unknown key.
    let mut deep = vec![0xa1, 0x61, b'x'];
    deep.extend(std::iter::repeat_n(0x81, 100_000));
    deep.push(0);
    assert!(decode_process(&deep).is_err());

    use ciborium::Value as V;
    let t = |s: &str| V::Text(s.to_owned());
    let good_block = decode_block(body).unwrap();
    // Legacy array with a value that is not a byte.
    let mut payload = ciborium::Value::serialized(&good_block).unwrap();
    if let V::Map(entries) = &mut payload {
        for (k, v) in entries.iter_mut() {
            if *k == t("payload") {
                *v = V::Map(vec![
                    (t("dependencies"), V::Array(vec![V::Integer(256.into())])),
                    (t("objects"), V::Array(vec![])),
                ]);
            }
        }
    }
    assert!(matches!(
        decode_block(&cbor(&payload)),
        Err(NativeError::Cbor { .. })
    ));
    // Bad ids and times.
    for (field, value) in [
        ("block_id", t("not-a-uuid")),
        ("block_id", V::Integer(5.into())),
        ("stream_id", t("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6")),
        ("process_id", t("9b1deb4d_3b7d_4bad_9bdd_2b0d7b3dcb6d")),
        ("begin_time", t("yesterday")),
        ("end_time", t("2026-01-01T00:00:00")),
        ("nb_objects", V::Integer((1u64 << 40).into())),
    ] {
        let mut b = ciborium::Value::serialized(&good_block).unwrap();
        if let V::Map(entries) = &mut b {
            for (k, v) in entries.iter_mut() {
                if *k == t(field) {
                    *v = value.clone();
                }
            }
        }
        let err = decode_block(&cbor(&b)).unwrap_err();
        match field {
            "begin_time" | "end_time" => {
                assert!(matches!(err, NativeError::InvalidTime { .. }), "{err}")
            }
            "nb_objects" => assert!(matches!(err, NativeError::Cbor { .. }), "{err}"),
            _ if matches!(value, V::Text(_)) => {
                assert!(matches!(err, NativeError::InvalidUuid { .. }), "{err}")
            }
            _ => assert!(matches!(err, NativeError::Cbor { .. }), "{err}"),
        }
    }
    // Too many members in a type description.
    let mut stream = capture.streams.values().next().unwrap().clone();
    let member = stream.objects_metadata[0].members[0].clone();
    stream.objects_metadata[0].members = vec![member; limits::MAX_MEMBERS + 1];
    let err = decode_stream(&encode_stream(&stream)).unwrap_err();
    assert!(err.to_string().contains("more than 256 members"), "{err}");
    // Millions of tiny values (each many times the size of its encoding) stop at the limits.
    for (key, item) in [
        ("tags", vec![0x60]), // ""
        (
            "objects_metadata",
            // {"name": "", "size": 0}
            vec![
                0xa2, 0x64, b'n', b'a', b'm', b'e', 0x60, 0x64, b's', b'i', b'z', b'e', 0x00,
            ],
        ),
        ("properties", vec![0x60, 0x60]), // "": ""
    ] {
        let count = 5_000_000u32;
        let mut body = vec![0xa1, 0x60 | key.len() as u8];
        body.extend_from_slice(key.as_bytes());
        body.push(if key == "properties" { 0xba } else { 0x9a });
        body.extend_from_slice(&count.to_be_bytes());
        for _ in 0..count {
            body.extend_from_slice(&item);
        }
        let err = decode_stream(&body).unwrap_err();
        assert!(err.to_string().contains("more than"), "{key}: {err}");
    }
}

#[test]
fn decompression_bomb() {
    let deps = compress_frame(&[]);
    let objects = compress_frame(&vec![0; 8 * LIMIT]);
    assert!(objects.len() < LIMIT / 16);
    let payload = BlockPayload {
        dependencies: deps,
        objects,
    };
    let decoder = StreamDecoder::new(
        StreamKind::Log.dependencies_metadata(),
        StreamKind::Log.objects_metadata(),
    );
    assert!(matches!(
        decoder.decode_payload(&payload, LIMIT),
        Err(NativeError::DecompressionLimit { .. })
    ));
    // A frame whose header claims 4 MiB blocks and a huge content size, with no data.
    let mut frame = vec![0x04, 0x22, 0x4d, 0x18, 0b0110_1000, 0x70];
    frame.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(decompress_frame(&frame, LIMIT).is_err());
}

fn udt(name: &str, size: usize, members: Vec<UdtMember>, is_reference: bool) -> Udt {
    Udt {
        name: Arc::from(name),
        size,
        members,
        is_reference,
    }
}

fn member(name: &str, type_name: &str, offset: usize, size: usize, r: bool) -> UdtMember {
    UdtMember {
        name: Arc::from(name),
        type_name: Arc::from(type_name),
        offset,
        size,
        is_reference: r,
    }
}

#[test]
fn hostile_type_descriptions() {
    let deps = Dependencies::new();
    // A type that contains itself.
    let recursive = udt("Loop", 8, vec![member("me", "Loop", 0, 8, false)], false);
    let udts = vec![recursive.clone()];
    assert_eq!(
        parse_object(&recursive, &udts, &[0; 8], &deps),
        Err(NativeError::NestingTooDeep(limits::MAX_NESTING))
    );
    // A reference smaller than 8 bytes, a member past the record, a size mismatch, an unknown
    // type.
    for m in [
        member("r", "u32", 0, 4, true),
        member("m", "u64", 4, 8, false),
        member("m", "u64", 0, 4, false),
        member("m", "Mystery", 0, 4, false),
        member("m", "u64", usize::MAX, 8, false),
    ] {
        let t = udt("T", 8, vec![m], false);
        assert!(parse_object(&t, std::slice::from_ref(&t), &[0; 8], &deps).is_err());
        let plan = Plan::new(&t, std::slice::from_ref(&t));
        assert!(plan.field("r").is_err() || plan.field("m").is_err());
    }
    // A record shorter than its type.
    let t = udt("T", 16, vec![member("a", "u64", 8, 8, false)], false);
    assert!(parse_object(&t, std::slice::from_ref(&t), &[0; 8], &deps).is_err());
    // A reference type without an `id`.
    let r = udt("R", 8, vec![member("x", "u64", 0, 8, false)], true);
    let t = udt("T", 8, vec![member("a", "R", 0, 8, false)], false);
    assert!(parse_object(&t, &[t.clone(), r.clone()], &[0; 8], &deps).is_err());
    assert!(resolve_field(&t, &t.members[0], &[t.clone(), r]).is_err());
}

#[test]
fn hostile_transit_records() {
    let log_deps = StreamKind::Log.dependencies_metadata();
    let log_objs = StreamKind::Log.objects_metadata();
    let decoder = StreamDecoder::new(log_deps.clone(), log_objs.clone());
    let deps = Dependencies::new();
    let first_error = |objects: &[u8]| -> NativeError {
        decoder
            .events_of(objects, &deps)
            .find_map(Result::err)
            .expect("an error")
    };
    // Type index past the list.
    assert!(matches!(
        first_error(&[200]),
        NativeError::BadTypeIndex { index: 200, .. }
    ));
    // Dynamic length past the end, fixed record cut short, length prefix cut short.
    assert!(matches!(
        first_error(&[1, 0xff, 0xff, 0xff, 0xff, 0]),
        NativeError::Truncated { .. }
    ));
    assert!(matches!(
        first_error(&[0, 1, 2, 3]),
        NativeError::Truncated { .. }
    ));
    assert!(matches!(
        first_error(&[1, 4, 0]),
        NativeError::Truncated { .. }
    ));
    // A reference to a dependency that is not there: reported, and decoding goes on.
    let mut objects = vec![0];
    objects.extend_from_slice(&[0xAB; 16]);
    objects.push(0);
    objects.extend_from_slice(&[0xCD; 16]);
    let results: Vec<_> = decoder.events_of(&objects, &deps).collect();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(NativeError::MissingDependency { .. })))
    );
    // ... but a framing error ends the iteration.
    let mut objects = vec![200];
    objects.extend_from_slice(&[0; 40]);
    assert_eq!(decoder.events_of(&objects, &deps).count(), 1);

    // Strings: bad codec, odd UTF-16, length past the record.
    let dyn_record = |index: u8, payload: &[u8]| {
        let mut out = vec![index];
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    };
    let string_dep = |codec: u8, len: u32, bytes: &[u8]| {
        let mut p = 1u64.to_le_bytes().to_vec();
        p.push(codec);
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(bytes);
        dyn_record(1, &p)
    };
    assert_eq!(
        parse_dependencies(&string_dep(9, 1, b"x"), &log_deps),
        Err(NativeError::BadStringCodec(9))
    );
    assert_eq!(
        parse_dependencies(&string_dep(1, 3, b"abc"), &log_deps),
        Err(NativeError::OddUtf16Length(3))
    );
    assert!(matches!(
        parse_dependencies(&string_dep(2, u32::MAX, b"abc"), &log_deps),
        Err(NativeError::Truncated { .. })
    ));
    // A StaticString shorter than its id.
    assert!(parse_dependencies(&dyn_record(0, &[1, 2, 3]), &log_deps).is_err());
    // A property set claiming 4 billion properties.
    let mut set = 7u64.to_le_bytes().to_vec();
    set.extend_from_slice(&u32::MAX.to_le_bytes());
    set.extend_from_slice(&[0; 32]);
    assert!(matches!(
        parse_dependencies(&dyn_record(3, &set), &log_deps),
        Err(NativeError::BadPropertySet { id: 7, .. })
    ));
    // A property naming a string that is not there.
    let mut set = 7u64.to_le_bytes().to_vec();
    set.extend_from_slice(&1u32.to_le_bytes());
    set.extend_from_slice(&[0x11; 32]);
    assert!(matches!(
        parse_dependencies(&dyn_record(3, &set), &log_deps),
        Err(NativeError::MissingDependency { .. })
    ));
    // A descriptor whose `fmt_str` names a property set instead of a string.
    let mut deps_buf = dyn_record(0, &[9, 0, 0, 0, 0, 0, 0, 0, b'x']);
    let mut set = 5u64.to_le_bytes().to_vec();
    set.extend_from_slice(&0u32.to_le_bytes());
    deps_buf.extend(dyn_record(3, &set));
    deps_buf.push(2);
    for v in [0x99u64, 5, 9, 9, 9] {
        deps_buf.extend_from_slice(&v.to_le_bytes());
    }
    deps_buf.extend_from_slice(&[0; 8]);
    let deps = parse_dependencies(&deps_buf, &log_deps).unwrap();
    let mut objects = vec![0];
    objects.extend_from_slice(&0x99u64.to_le_bytes());
    objects.extend_from_slice(&0i64.to_le_bytes());
    let err = decoder
        .events_of(&objects, &deps)
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, NativeError::TypeMismatch { .. }), "{err}");
    // An unknown dynamic dependency type is skipped.
    let mut with_unknown = log_deps.clone();
    with_unknown.push(udt("FutureDependency", 0, vec![], false));
    let mut buf = dyn_record(6, b"whatever");
    buf.extend(dyn_record(0, &[1, 0, 0, 0, 0, 0, 0, 0, b'y']));
    assert_eq!(parse_dependencies(&buf, &with_unknown).unwrap().len(), 1);
}

#[test]
fn errors_read_well() {
    let e = NativeError::MissingDependency {
        id: 0x55ab,
        context: "LogStaticStrEvent.desc".into(),
    };
    assert_eq!(
        e.to_string(),
        "dependency 0x55ab referenced by LogStaticStrEvent.desc is not in the block"
    );
    let e = decode_process(b"\xa1\x6aprocess_id\x63abc").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid CBOR ProcessInfo: missing field `start_time`"
    );
    let e = decode_process(b"\xa1\x6aprocess_id").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid CBOR ProcessInfo: unexpected end of input"
    );
}
