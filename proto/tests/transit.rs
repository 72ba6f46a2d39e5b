//! Hand-built transit buffers: the record types the writers do not produce (0.33's dynamic
//! names and interop events, legacy types, Unreal's codecs), and the envelope forms other
//! producers send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ciborium::Value as Cbor;
use std::borrow::Cow;
use std::sync::Arc;
use tarn_proto::native::*;

/// Builds a transit buffer.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn fixed(&mut self, index: u8, bytes: &[u8]) -> &mut Self {
        self.0.push(index);
        self.0.extend_from_slice(bytes);
        self
    }

    fn dynamic(&mut self, index: u8, bytes: &[u8]) -> &mut Self {
        self.0.push(index);
        self.0
            .extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }
}

/// Little-endian concatenation.
#[derive(Default)]
struct Rec(Vec<u8>);

impl Rec {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    fn pad(mut self, n: usize) -> Self {
        self.0.extend(std::iter::repeat_n(0, n));
        self
    }
    /// `DynString`.
    fn dyn_str(self, codec: u8, v: &[u8]) -> Self {
        self.u8(codec).u32(v.len() as u32).bytes(v)
    }
    /// `StaticStringRef` / `StringId` (16 bytes).
    fn string_ref(self, id: u64, len: u32) -> Self {
        self.u64(id).u32(len).u8(2).pad(3)
    }
    fn build(self) -> Vec<u8> {
        self.0
    }
}

fn static_string(id: u64, s: &str) -> Vec<u8> {
    Rec::default().u64(id).bytes(s.as_bytes()).build()
}

fn string_dep(id: u64, codec: u8, bytes: &[u8]) -> Vec<u8> {
    Rec::default()
        .u64(id)
        .u8(codec)
        .u32(bytes.len() as u32)
        .bytes(bytes)
        .build()
}

fn property_set(id: u64, props: &[(u64, u64)]) -> Vec<u8> {
    let mut r = Rec::default().u64(id).u32(props.len() as u32);
    for (name, value) in props {
        r = r.string_ref(*name, 0).string_ref(*value, 0);
    }
    r.build()
}

const DYN: u64 = 1 << 63;

/// Thread stream dependency indexes (upstream 0.33 order).
const SPAN_LOCATION_RECORD: u8 = 1;
const STATIC_STRING: u8 = 2;
const STRING_DEPENDENCY: u8 = 3;
const PROPERTY_SET: u8 = 4;

#[test]
fn dynamic_names_and_tagged_ends_of_033() {
    let deps_udts = StreamKind::Thread.dependencies_metadata();
    let obj_udts = StreamKind::Thread.objects_metadata();
    let (name_id, key_id, value_id, set_id) = (DYN | 2, DYN | 40, DYN | 80, DYN | 121);
    let mut deps = Buf::default();
    deps.dynamic(STATIC_STRING, &static_string(0x100, "app"))
        .dynamic(STATIC_STRING, &static_string(0x200, "src/x.rs"))
        // The set before its strings: upstream needs the reverse, Tarn takes both.
        .dynamic(PROPERTY_SET, &property_set(set_id, &[(key_id, value_id)]))
        .dynamic(STRING_DEPENDENCY, &string_dep(name_id, 2, b"dyn span"))
        .dynamic(STRING_DEPENDENCY, &string_dep(key_id, 2, b"rows"))
        .dynamic(STRING_DEPENDENCY, &string_dep(value_id, 2, b"42"))
        .fixed(
            SPAN_LOCATION_RECORD,
            &Rec::default()
                .u64(0x300)
                .u64(0x100)
                .u64(0x100)
                .u64(0x200)
                .u32(17)
                .u32(2)
                .build(),
        );
    let deps = parse_dependencies(&deps.0, &deps_udts).unwrap();
    assert_eq!(deps.len(), 7);
    assert_eq!(
        deps[&set_id].as_property_set().unwrap().get("ROWS"),
        Some("42")
    );

    let loc = 0x300;
    let mut objs = Buf::default();
    // BeginThreadDynNamedSpanEvent {location, name: DynStringId, time}
    objs.fixed(8, &Rec::default().u64(loc).u64(name_id).i64(1).build())
        // EndThreadDynNamedSpanEvent
        .fixed(9, &Rec::default().u64(loc).u64(name_id).i64(2).build())
        // BeginAsyncDynNamedSpanEvent {location, name, span_id, parent, time, depth}
        .fixed(
            10,
            &Rec::default()
                .u64(loc)
                .u64(name_id)
                .u64(9)
                .u64(8)
                .i64(3)
                .u32(4)
                .pad(4)
                .build(),
        )
        // TaggedEndThreadNamedSpanEvent {location, name, properties, time}
        .fixed(
            13,
            &Rec::default()
                .u64(loc)
                .u64(name_id)
                .u64(set_id)
                .i64(4)
                .build(),
        )
        // TaggedEndAsyncNamedSpanEvent {location, name, properties, span_id, parent, time, depth}
        .fixed(
            15,
            &Rec::default()
                .u64(loc)
                .u64(name_id)
                .u64(set_id)
                .u64(9)
                .u64(8)
                .i64(5)
                .u32(4)
                .pad(4)
                .build(),
        );
    let decoder = StreamDecoder::new(deps_udts, obj_udts.clone());
    let events: Vec<Event<'_>> = decoder
        .events_of(&objs.0, &deps)
        .collect::<Result<_, _>>()
        .unwrap();
    let spans: Vec<&SpanEvent<'_>> = events
        .iter()
        .map(|e| match e {
            Event::Span(s) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(spans.len(), 5);
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.name, "dyn span");
        assert_eq!(s.time, i as i64 + 1);
        assert_eq!(
            (s.target, s.file, s.line, s.lod),
            ("app", Some("src/x.rs"), Some(17), Some(2))
        );
    }
    assert_eq!(spans[0].phase, SpanPhase::Begin);
    assert_eq!(spans[1].phase, SpanPhase::End);
    let ids = AsyncSpan {
        span_id: 9,
        parent_span_id: 8,
        depth: 4,
    };
    assert_eq!(spans[2].async_span, Some(ids));
    assert_eq!(spans[4].async_span, Some(ids));
    assert_eq!(spans[3].properties.unwrap().get("rows"), Some("42"));
    assert_eq!(spans[4].properties.unwrap().get("rows"), Some("42"));
    assert_eq!(spans[4].type_name, "TaggedEndAsyncNamedSpanEvent");

    // The generic decoder resolves `DynStringId` names the same way.
    let record = records(&objs.0, &obj_udts).next().unwrap().unwrap();
    let object = parse_object(&obj_udts[8], &obj_udts, record.payload, &deps).unwrap();
    assert_eq!(object.get_str("name"), Some("dyn span"));
    assert_eq!(
        object
            .get("thread_span_location")
            .and_then(Value::as_object)
            .and_then(|o| o.get_u32("line")),
        Some(17)
    );
}

#[test]
fn interop_logs() {
    let deps_udts = StreamKind::Log.dependencies_metadata();
    let obj_udts = StreamKind::Log.objects_metadata();
    let mut deps = Buf::default();
    deps.dynamic(0, &static_string(0x10, "legacy::target"))
        .dynamic(0, &static_string(0x20, "static interop message"))
        .dynamic(1, &string_dep(DYN | 2, 2, b"dyn::target"));
    let deps = parse_dependencies(&deps.0, &deps_udts).unwrap();
    let mut objs = Buf::default();
    // LogStaticStrInteropEvent {target: StringId @0, msg: StringId @16, time @32, level @40}
    objs.fixed(
        2,
        &Rec::default()
            .string_ref(0x10, 14)
            .string_ref(0x20, 22)
            .i64(11)
            .u32(2)
            .pad(4)
            .build(),
    )
    // LogStaticStrInteropEventV2 {msg: StringId @0, time @16, target: DynStringId @24, level @32}
    .fixed(
        3,
        &Rec::default()
            .string_ref(0x20, 22)
            .i64(12)
            .u64(DYN | 2)
            .u32(6)
            .pad(4)
            .build(),
    );
    let decoder = StreamDecoder::new(deps_udts, obj_udts);
    let logs: Vec<(u32, String, String, i64)> = decoder
        .events_of(&objs.0, &deps)
        .map(|e| match e.unwrap() {
            Event::Log(l) => (l.level, l.target.to_owned(), l.msg.into_owned(), l.time),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        logs,
        [
            (
                2,
                "legacy::target".into(),
                "static interop message".into(),
                11
            ),
            (6, "dyn::target".into(), "static interop message".into(), 12),
        ]
    );
}

#[test]
fn legacy_and_unreal_records() {
    let udt = |name: &str, size: usize, members: Vec<UdtMember>, is_reference: bool| Udt {
        name: Arc::from(name),
        size,
        members,
        is_reference,
    };
    let member = |name: &str, type_name: &str, offset: usize, size: usize, r: bool| UdtMember {
        name: Arc::from(name),
        type_name: Arc::from(type_name),
        offset,
        size,
        is_reference: r,
    };
    // Unreal spells primitive types `uint32`/`uint64`/`int64`.
    let deps_udts = vec![
        udt("StaticStringDependency", 0, vec![], false),
        udt(
            "LogMetadataDependency",
            32,
            vec![
                member("id", "uint64", 0, 8, false),
                member("fmt_str", "uint64", 8, 8, true),
                member("target", "uint64", 16, 8, true),
                member("level", "uint32", 24, 4, false),
                member("line", "uint32", 28, 4, false),
            ],
            false,
        ),
        udt("PropertySetDependency", 0, vec![], false),
        udt(
            "StaticStringRef",
            16,
            vec![member("id", "uint64", 0, 8, true)],
            true,
        ),
        udt(
            "Property",
            32,
            vec![
                member("name", "StaticStringRef", 0, 16, false),
                member("value", "StaticStringRef", 16, 16, false),
            ],
            false,
        ),
    ];
    let obj_udts = vec![
        udt("LogStringEvent", 0, vec![], false),
        udt("LogStringInteropEventV2", 0, vec![], false),
        udt("TaggedLogInteropEvent", 0, vec![], false),
        udt(
            "StringId",
            16,
            vec![member("id", "usize", 0, 8, true)],
            true,
        ),
        udt(
            "StaticStringRef",
            16,
            vec![member("id", "uint64", 0, 8, true)],
            true,
        ),
        udt("NetEvent", 0, vec![], false),
    ];
    let utf16: Vec<u8> = "Wide ✓ 𝄞"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut deps = Buf::default();
    deps.dynamic(0, &string_dep(1, 2, b"fmt {}"))
        .dynamic(0, &string_dep(2, 1, &utf16))
        // ANSI: decoded as UTF-8, lossily (0xE9 is `é` in Windows-1252).
        .dynamic(0, &string_dep(3, 0, b"caf\xe9"))
        .dynamic(0, &string_dep(4, 2, b"k"))
        .dynamic(2, &property_set(5, &[(4, 3)]))
        .fixed(
            1,
            &Rec::default()
                .u64(0x77)
                .u64(1)
                .u64(2)
                .u32(4)
                .u32(99)
                .build(),
        )
        .dynamic(0, &string_dep(6, 2, b"x"));
    let mut deps_buf = deps.0.clone();
    deps_buf.extend_from_slice(&[5]); // index 5 does not exist
    assert!(matches!(
        parse_dependencies(&deps_buf, &deps_udts),
        Err(NativeError::BadTypeIndex { index: 5, .. })
    ));
    let deps = parse_dependencies(&deps.0, &deps_udts).unwrap();
    assert_eq!(deps[&2].as_str(), Some("Wide ✓ 𝄞"));
    assert_eq!(deps[&3].as_str(), Some("caf\u{FFFD}"));
    assert_eq!(
        deps[&5].as_property_set().unwrap().get("k"),
        Some("caf\u{FFFD}")
    );

    let mut objs = Buf::default();
    // LogStringEvent: u64 desc, i64 time, rest = UTF-8 message.
    objs.dynamic(
        0,
        &Rec::default().u64(0x77).i64(1).bytes(b"legacy msg").build(),
    )
    // LogStringInteropEventV2: i64 time, u32 level, StringId target, rest = message.
    .dynamic(
        1,
        &Rec::default()
            .i64(2)
            .u32(3)
            .string_ref(2, 0)
            .bytes(b"legacy interop")
            .build(),
    )
    // TaggedLogInteropEvent: i64 time, u8 level, StaticStringRef target, u64 properties,
    // DynString msg (UTF-16 here).
    .dynamic(
        2,
        &Rec::default()
            .i64(3)
            .u8(5)
            .string_ref(3, 0)
            .u64(5)
            .dyn_str(1, &utf16)
            .build(),
    )
    .dynamic(5, b"unreal net event");
    let decoder = StreamDecoder::new(deps_udts, obj_udts.clone());
    let events: Vec<Event<'_>> = decoder
        .events_of(&objs.0, &deps)
        .collect::<Result<_, _>>()
        .unwrap();
    let Event::Log(a) = &events[0] else { panic!() };
    assert_eq!(
        (a.level, a.target, &*a.msg, a.line),
        (4, "Wide ✓ 𝄞", "legacy msg", Some(99))
    );
    let Event::Log(b) = &events[1] else { panic!() };
    assert_eq!(
        (b.level, b.target, &*b.msg),
        (3, "Wide ✓ 𝄞", "legacy interop")
    );
    let Event::Log(c) = &events[2] else { panic!() };
    assert_eq!((c.level, c.target, &*c.msg), (5, "caf\u{FFFD}", "Wide ✓ 𝄞"));
    assert!(matches!(c.msg, Cow::Owned(_)));
    assert_eq!(c.properties.unwrap().get("k"), Some("caf\u{FFFD}"));
    assert!(matches!(
        events[3],
        Event::Other {
            type_name: "NetEvent",
            payload: b"unreal net event"
        }
    ));

    // Generic decoding of the dynamic records, with upstream's member names.
    let all: Vec<Record<'_>> = records(&objs.0, &obj_udts).map(Result::unwrap).collect();
    let o = parse_object(&obj_udts[2], &obj_udts, all[2].payload, &deps).unwrap();
    let names: Vec<&str> = o.members.iter().map(|(n, _)| &**n).collect();
    assert_eq!(names, ["time", "level", "target", "properties", "msg"]);
    assert_eq!(o.get("level"), Some(&Value::U8(5)));
    let o = parse_object(&obj_udts[1], &obj_udts, all[1].payload, &deps).unwrap();
    assert_eq!(o.get("level"), Some(&Value::U32(3)));
    let o = parse_object(&obj_udts[5], &obj_udts, all[3].payload, &deps).unwrap();
    assert!(o.members.is_empty());
}

#[test]
fn duplicate_dependencies() {
    let udts = StreamKind::Log.dependencies_metadata();
    let mut same = Buf::default();
    same.dynamic(0, &static_string(1, "a"))
        .dynamic(1, &string_dep(1, 2, b"a"));
    assert_eq!(parse_dependencies(&same.0, &udts).unwrap().len(), 1);
    let mut conflict = Buf::default();
    conflict
        .dynamic(0, &static_string(1, "a"))
        .dynamic(0, &static_string(1, "b"));
    assert_eq!(
        parse_dependencies(&conflict.0, &udts),
        Err(NativeError::DuplicateDependency { id: 1 })
    );
}

#[test]
fn template_rendering() {
    let set = PropertySet {
        properties: vec![
            Property {
                name: "User".into(),
                value: "bob".into(),
            },
            Property {
                name: "user".into(),
                value: "alice".into(),
            },
            Property {
                name: "v".into(),
                value: "[1, 2]".into(),
            },
        ],
    };
    let cases = [
        ("plain", "plain"),
        ("{user} in", "alice in"),
        ("{USER}", "bob"),
        ("{v:?}", "[1, 2]"),
        ("a {{b}} c", "a {b} c"),
        ("{missing} {user", "{missing} {user"),
        ("}{", "}{"),
        ("{}", "{}"),
        ("é{user}é", "éaliceé"),
    ];
    for (fmt, expected) in cases {
        assert_eq!(render_template(fmt, &set), expected, "{fmt}");
    }
    assert!(matches!(render_template("plain", &set), Cow::Borrowed(_)));
    assert_eq!(parse_level("WARNING"), Some(3));
    assert_eq!(parse_level("6"), Some(6));
    assert_eq!(parse_level("7"), None);
    assert_eq!(parse_level("loud"), None);
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_owned())
}

fn map(entries: Vec<(&str, Cbor)>) -> Vec<u8> {
    let value = Cbor::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect());
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).unwrap();
    out
}

fn process_fields(parent: Option<Cbor>) -> Vec<(&'static str, Cbor)> {
    // Unreal's key order, which differs from the Rust sink's.
    let mut fields = vec![
        ("properties", Cbor::Map(vec![(text("k"), text("v"))])),
        ("start_ticks", Cbor::Integer(5.into())),
        ("start_time", text("2026-01-01T00:00:00.5Z")),
        ("tsc_frequency", Cbor::Integer(1_000_000_000.into())),
        ("cpu_brand", text("cpu")),
        ("distro", text("Windows")),
        ("computer", text("host")),
        ("realname", text("Real")),
        ("username", text("user")),
        ("exe", text("Game.exe")),
        ("process_id", text("{9B1DEB4D-3B7D-4BAD-9BDD-2B0D7B3DCB6D}")),
        ("unknown_future_key", Cbor::Bool(true)),
    ];
    if let Some(p) = parent {
        fields.push(("parent_process_id", p));
    }
    fields
}

#[test]
fn envelopes_from_other_producers() {
    for parent in [Some(text("")), Some(Cbor::Null), None] {
        let p = decode_process(&map(process_fields(parent))).unwrap();
        assert_eq!(p.process_id, "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d");
        assert_eq!(p.parent_process_id, None);
        assert_eq!(p.exe, "Game.exe");
        assert_eq!(p.start_time_nanos().unwrap(), 1_767_225_600_500_000_000);
    }
    let p = decode_process(&map(process_fields(Some(text(
        "urn:uuid:6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
    )))))
    .unwrap();
    assert_eq!(
        p.parent_process_id.as_deref(),
        Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    );
    // `None` encodes as null, as the Rust sink does.
    let mut p = p;
    p.parent_process_id = None;
    assert!(
        encode_process(&p)
            .windows(18)
            .any(|w| w == b"parent_process_id\xf6")
    );

    // Payload buffers as arrays of integers, and as indefinite-length byte strings.
    let frame = compress_frame(b"abc");
    let block = |payload: Cbor| {
        map(vec![
            ("payload", payload),
            ("nb_objects", Cbor::Integer(0.into())),
            ("object_offset", Cbor::Integer(0.into())),
            ("end_ticks", Cbor::Integer(2.into())),
            ("end_time", text("2026-01-01T00:00:01+01:00")),
            ("begin_ticks", Cbor::Integer(1.into())),
            ("begin_time", text("2026-01-01T00:00:00Z")),
            ("process_id", text("9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d")),
            ("stream_id", text("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d")),
            ("block_id", text("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d")),
        ])
    };
    let as_array = Cbor::Array(frame.iter().map(|b| Cbor::Integer((*b).into())).collect());
    let b = decode_block(&block(Cbor::Map(vec![
        (text("objects"), as_array.clone()),
        (text("dependencies"), as_array),
    ])))
    .unwrap();
    assert_eq!(b.payload.objects, frame);
    assert_eq!(
        b.end_time_nanos().unwrap() - b.begin_time_nanos().unwrap(),
        -3_599_000_000_000
    );
    let mut indefinite = map(vec![]);
    indefinite.clear();
    // {"dependencies": (_ h'..' h'..'), "objects": h'..'} by hand.
    indefinite.push(0xa2);
    indefinite.push(0x60 | 12);
    indefinite.extend_from_slice(b"dependencies");
    indefinite.push(0x5f);
    for chunk in frame.chunks(5) {
        indefinite.push(0x40 | chunk.len() as u8);
        indefinite.extend_from_slice(chunk);
    }
    indefinite.push(0xff);
    indefinite.push(0x60 | 7);
    indefinite.extend_from_slice(b"objects");
    indefinite.push(0x40 | frame.len() as u8);
    indefinite.extend_from_slice(&frame);
    let payload = decode_block_payload(&indefinite).unwrap();
    assert_eq!(payload.dependencies, frame);
    assert_eq!(payload.objects, frame);
}
