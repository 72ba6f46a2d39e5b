//! Writing transit buffers: the stream type descriptions and the record bytes of the
//! standard event kinds, as `micromegas-tracing` 0.33 writes them.
//!
//! The type descriptions ([`StreamKind::dependencies_metadata`],
//! [`StreamKind::objects_metadata`]) are upstream 0.33's, name for name, member for member,
//! offset for offset (as rustc laid the structs out on x86_64), in upstream's queue order, so
//! that upstream's analytics and Tarn's decoder read what these writers produce.
//!
//! Dependency ids are assigned by the writer, per block: strings and property sets are
//! interned by content, descriptors by the `key` the caller gives them (any u64 that
//! identifies the call site, typically the address of a static). Every record a dependency
//! references is written before it, as upstream's single-pass parser requires.

use super::super::envelope::{BlockPayload, StreamInfo, Udt, UdtMember};
use super::super::lz4::compress_frame;
use super::read::codec;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// The kinds of streams a process sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Tag `log`: log entries.
    Log,
    /// Tag `metrics`: metric points.
    Metrics,
    /// Tag `cpu`: spans of one thread (and the async spans it polled).
    Thread,
    /// Tag `image`: images.
    Image,
}

fn member(
    name: &str,
    type_name: &str,
    offset: usize,
    size: usize,
    is_reference: bool,
) -> UdtMember {
    UdtMember {
        name: Arc::from(name),
        type_name: Arc::from(type_name),
        offset,
        size,
        is_reference,
    }
}

fn udt(name: &str, size: usize, members: Vec<UdtMember>, is_reference: bool) -> Udt {
    Udt {
        name: Arc::from(name),
        size,
        members,
        is_reference,
    }
}

fn dynamic(name: &str) -> Udt {
    udt(name, 0, Vec::new(), false)
}

const PTR: &str = "* const u8";
const LOG_DESC: &str = "& 'static LogMetadata < 'static >";
const METRIC_DESC: &str = "& 'static StaticMetricMetadata";
const SPAN_DESC: &str = "& 'static SpanMetadata";
const SPAN_LOCATION: &str = "& 'static SpanLocation";

fn static_string_ref() -> Udt {
    udt(
        "StaticStringRef",
        16,
        vec![member("id", "usize", 0, 8, true)],
        true,
    )
}

fn string_id() -> Udt {
    udt(
        "StringId",
        16,
        vec![member("id", "usize", 0, 8, true)],
        true,
    )
}

fn dyn_string_id() -> Udt {
    udt(
        "DynStringId",
        8,
        vec![member("id", "u64", 0, 8, true)],
        true,
    )
}

fn property() -> Udt {
    udt(
        "Property",
        32,
        vec![
            member("name", "StaticStringRef", 0, 16, false),
            member("value", "StaticStringRef", 16, 16, false),
        ],
        false,
    )
}

/// `{id, <ptr members...>, line: u32, <last>: u32}`, 8 + 8n + 8 bytes.
fn descriptor(name: &str, ptrs: &[&str], last: &str) -> Udt {
    let mut members = vec![member("id", "u64", 0, 8, false)];
    let mut offset = 8;
    for p in ptrs {
        members.push(member(p, PTR, offset, 8, true));
        offset += 8;
    }
    members.push(member("line", "u32", offset, 4, false));
    members.push(member(last, "u32", offset + 4, 4, false));
    udt(name, offset + 8, members, false)
}

fn span_record() -> Udt {
    descriptor(
        "SpanRecord",
        &["name", "target", "module_path", "file"],
        "lod",
    )
}

fn span_location_record() -> Udt {
    descriptor(
        "SpanLocationRecord",
        &["target", "module_path", "file"],
        "lod",
    )
}

/// `{desc: ref @0, time: i64 @8}`.
fn desc_time(name: &str, desc_member: &str, desc_type: &str) -> Udt {
    udt(
        name,
        16,
        vec![
            member(desc_member, desc_type, 0, 8, true),
            member("time", "i64", 8, 8, false),
        ],
        false,
    )
}

/// `{desc @0, properties @8, time @16}`.
fn tagged_desc_time(name: &str, desc_member: &str, desc_type: &str) -> Udt {
    udt(
        name,
        24,
        vec![
            member(desc_member, desc_type, 0, 8, true),
            member("properties", "PropertySetId", 8, 8, true),
            member("time", "i64", 16, 8, false),
        ],
        false,
    )
}

fn metric(name: &str, value_type: &str, tagged: bool) -> Udt {
    let mut members = vec![member("desc", METRIC_DESC, 0, 8, true)];
    let mut offset = 8;
    if tagged {
        members.push(member("properties", "PropertySetId", 8, 8, true));
        offset = 16;
    }
    members.push(member("value", value_type, offset, 8, false));
    members.push(member("time", "i64", offset + 8, 8, false));
    udt(name, offset + 16, members, false)
}

/// Named thread span: `{location @0, name: StringId @8 (16 bytes), time @24}`, or with a
/// `DynStringId` name: `{location @0, name @8 (8 bytes), time @16}`.
fn thread_named(name: &str, name_type: &str) -> Udt {
    let name_size = if name_type == "StringId" { 16 } else { 8 };
    udt(
        name,
        16 + name_size,
        vec![
            member("thread_span_location", SPAN_LOCATION, 0, 8, true),
            member("name", name_type, 8, name_size, false),
            member("time", "i64", 8 + name_size, 8, false),
        ],
        false,
    )
}

/// Async span: `[desc or location + name], [properties], span_id, parent_span_id, time, depth`.
/// Each is 8 bytes except `depth` (u32, last, padded to 8).
fn async_span(name: &str, named: Option<&str>, tagged: bool) -> Udt {
    let mut members = Vec::new();
    let mut offset = 8;
    match named {
        Some(name_type) => {
            let name_size = if name_type == "StringId" { 16 } else { 8 };
            members.push(member("span_location", SPAN_LOCATION, 0, 8, true));
            members.push(member("name", name_type, 8, name_size, false));
            offset += name_size;
        }
        None => members.push(member("span_desc", SPAN_DESC, 0, 8, true)),
    }
    if tagged {
        members.push(member("properties", "PropertySetId", offset, 8, true));
        offset += 8;
    }
    members.push(member("span_id", "u64", offset, 8, false));
    members.push(member("parent_span_id", "u64", offset + 8, 8, false));
    members.push(member("depth", "u32", offset + 24, 4, false));
    members.push(member("time", "i64", offset + 16, 8, false));
    udt(name, offset + 32, members, false)
}

impl StreamKind {
    /// The stream tag.
    pub fn tag(self) -> &'static str {
        match self {
            StreamKind::Log => "log",
            StreamKind::Metrics => "metrics",
            StreamKind::Thread => "cpu",
            StreamKind::Image => "image",
        }
    }

    /// Upstream 0.33's `dependencies_metadata` for this kind of stream.
    pub fn dependencies_metadata(self) -> Vec<Udt> {
        match self {
            StreamKind::Log => vec![
                dynamic("StaticString"),
                dynamic("StaticStringDependency"),
                descriptor(
                    "LogMetadataRecord",
                    &["fmt_str", "target", "module_path", "file"],
                    "level",
                ),
                dynamic("PropertySetDependency"),
                static_string_ref(),
                property(),
            ],
            StreamKind::Metrics => vec![
                dynamic("StaticString"),
                dynamic("StaticStringDependency"),
                descriptor(
                    "MetricMetadataDependency",
                    &["name", "unit", "target", "file"],
                    "lod",
                ),
                dynamic("PropertySetDependency"),
                static_string_ref(),
                property(),
            ],
            StreamKind::Thread => vec![
                span_record(),
                span_location_record(),
                dynamic("StaticString"),
                dynamic("StaticStringDependency"),
                dynamic("PropertySetDependency"),
                static_string_ref(),
                property(),
            ],
            StreamKind::Image => Vec::new(),
        }
    }

    /// Upstream 0.33's `objects_metadata` for this kind of stream (queue types in queue order,
    /// then the member types).
    pub fn objects_metadata(self) -> Vec<Udt> {
        match self {
            StreamKind::Log => vec![
                desc_time("LogStaticStrEvent", "desc", LOG_DESC),
                dynamic("LogStringEventV2"),
                udt(
                    "LogStaticStrInteropEvent",
                    48,
                    vec![
                        member("time", "i64", 32, 8, false),
                        member("level", "u32", 40, 4, false),
                        member("target", "StringId", 0, 16, false),
                        member("msg", "StringId", 16, 16, false),
                    ],
                    false,
                ),
                udt(
                    "LogStaticStrInteropEventV2",
                    40,
                    vec![
                        member("time", "i64", 16, 8, false),
                        member("level", "u32", 32, 4, false),
                        member("target", "DynStringId", 24, 8, false),
                        member("msg", "StringId", 0, 16, false),
                    ],
                    false,
                ),
                dynamic("LogStringInteropEventV3"),
                dynamic("TaggedLogString"),
                tagged_desc_time("TaggedLogStaticStrEvent", "desc", LOG_DESC),
                dynamic("TaggedLogInteropEvent"),
                tagged_desc_time("TaggedLogTemplateEvent", "desc", LOG_DESC),
                dyn_string_id(),
                static_string_ref(),
                string_id(),
            ],
            StreamKind::Metrics => vec![
                metric("IntegerMetricEvent", "u64", false),
                metric("FloatMetricEvent", "f64", false),
                metric("TaggedFloatMetricEvent", "f64", true),
                metric("TaggedIntegerMetricEvent", "u64", true),
            ],
            StreamKind::Thread => vec![
                desc_time("BeginThreadSpanEvent", "thread_span_desc", SPAN_DESC),
                desc_time("EndThreadSpanEvent", "thread_span_desc", SPAN_DESC),
                thread_named("BeginThreadNamedSpanEvent", "StringId"),
                thread_named("EndThreadNamedSpanEvent", "StringId"),
                async_span("BeginAsyncSpanEvent", None, false),
                async_span("EndAsyncSpanEvent", None, false),
                async_span("BeginAsyncNamedSpanEvent", Some("StringId"), false),
                async_span("EndAsyncNamedSpanEvent", Some("StringId"), false),
                thread_named("BeginThreadDynNamedSpanEvent", "DynStringId"),
                thread_named("EndThreadDynNamedSpanEvent", "DynStringId"),
                async_span("BeginAsyncDynNamedSpanEvent", Some("DynStringId"), false),
                async_span("EndAsyncDynNamedSpanEvent", Some("DynStringId"), false),
                tagged_desc_time("TaggedEndThreadSpanEvent", "thread_span_desc", SPAN_DESC),
                udt(
                    "TaggedEndThreadNamedSpanEvent",
                    32,
                    vec![
                        member("thread_span_location", SPAN_LOCATION, 0, 8, true),
                        member("name", "DynStringId", 8, 8, false),
                        member("properties", "PropertySetId", 16, 8, true),
                        member("time", "i64", 24, 8, false),
                    ],
                    false,
                ),
                async_span("TaggedEndAsyncSpanEvent", None, true),
                async_span("TaggedEndAsyncNamedSpanEvent", Some("DynStringId"), true),
                string_id(),
                dyn_string_id(),
            ],
            StreamKind::Image => vec![dynamic("ImageEvent")],
        }
    }

    /// A `StreamInfo` for a new stream of this kind.
    pub fn stream_info(
        self,
        process_id: String,
        stream_id: String,
        properties: BTreeMap<String, String>,
    ) -> StreamInfo {
        StreamInfo {
            process_id,
            stream_id,
            dependencies_metadata: self.dependencies_metadata(),
            objects_metadata: self.objects_metadata(),
            tags: vec![self.tag().to_owned()],
            properties,
        }
    }
}

// Type indexes in the lists above.
mod index {
    pub const LOG_STATIC_STRING_DEPENDENCY: u8 = 1;
    pub const LOG_METADATA: u8 = 2;
    pub const LOG_PROPERTY_SET: u8 = 3;
    pub const LOG_STATIC: u8 = 0;
    pub const LOG_STRING: u8 = 1;
    pub const LOG_INTEROP_STRING: u8 = 4;
    pub const LOG_TAGGED_STRING: u8 = 5;
    pub const LOG_TAGGED_STATIC: u8 = 6;
    pub const LOG_TAGGED_INTEROP: u8 = 7;
    pub const LOG_TEMPLATE: u8 = 8;

    pub const METRIC_STATIC_STRING_DEPENDENCY: u8 = 1;
    pub const METRIC_METADATA: u8 = 2;
    pub const METRIC_PROPERTY_SET: u8 = 3;
    pub const METRIC_INT: u8 = 0;
    pub const METRIC_FLOAT: u8 = 1;
    pub const METRIC_TAGGED_FLOAT: u8 = 2;
    pub const METRIC_TAGGED_INT: u8 = 3;

    pub const THREAD_SPAN_RECORD: u8 = 0;
    pub const THREAD_SPAN_LOCATION: u8 = 1;
    pub const THREAD_STATIC_STRING_DEPENDENCY: u8 = 3;
    pub const THREAD_PROPERTY_SET: u8 = 4;
    pub const BEGIN_THREAD: u8 = 0;
    pub const END_THREAD: u8 = 1;
    pub const BEGIN_THREAD_NAMED: u8 = 2;
    pub const END_THREAD_NAMED: u8 = 3;
    pub const BEGIN_ASYNC: u8 = 4;
    pub const END_ASYNC: u8 = 5;
    pub const BEGIN_ASYNC_NAMED: u8 = 6;
    pub const END_ASYNC_NAMED: u8 = 7;
    pub const TAGGED_END_THREAD: u8 = 12;
    pub const TAGGED_END_ASYNC: u8 = 14;

    pub const IMAGE: u8 = 0;
}

/// Descriptor of a log call site (upstream `LogMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDesc<'s> {
    /// Identifies the call site within the process (e.g. the address of a static).
    pub key: u64,
    /// 1 = fatal ... 6 = trace.
    pub level: u32,
    /// The format string; the message of static logs.
    pub fmt_str: &'s str,
    /// Target.
    pub target: &'s str,
    /// Module path.
    pub module_path: &'s str,
    /// Source file.
    pub file: &'s str,
    /// Source line.
    pub line: u32,
}

/// Descriptor of a metric call site (upstream `StaticMetricMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDesc<'s> {
    /// Identifies the call site within the process.
    pub key: u64,
    /// Metric name.
    pub name: &'s str,
    /// Unit.
    pub unit: &'s str,
    /// Target.
    pub target: &'s str,
    /// Source file.
    pub file: &'s str,
    /// Source line.
    pub line: u32,
    /// Level of detail (1 = min, 2 = med, 3 = max).
    pub lod: u32,
}

/// Descriptor of a span with a static name (upstream `SpanMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanDesc<'s> {
    /// Identifies the call site within the process.
    pub key: u64,
    /// Span name.
    pub name: &'s str,
    /// Target.
    pub target: &'s str,
    /// Module path.
    pub module_path: &'s str,
    /// Source file.
    pub file: &'s str,
    /// Source line.
    pub line: u32,
    /// Level of detail.
    pub lod: u32,
}

/// Location of a span whose name is given per event (upstream `SpanLocation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLocation<'s> {
    /// Identifies the call site within the process.
    pub key: u64,
    /// Target.
    pub target: &'s str,
    /// Module path.
    pub module_path: &'s str,
    /// Source file.
    pub file: &'s str,
    /// Source line.
    pub line: u32,
    /// Level of detail.
    pub lod: u32,
}

/// Identity of an async span, for the writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncIds {
    /// Process-wide span id.
    pub span_id: u64,
    /// Parent span id (0 for none).
    pub parent_span_id: u64,
    /// Nesting depth.
    pub depth: u32,
}

/// The two uncompressed buffers of a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockBuffers {
    /// Dependency records.
    pub dependencies: Vec<u8>,
    /// Object records.
    pub objects: Vec<u8>,
    /// Number of object records.
    pub nb_objects: u32,
}

impl BlockBuffers {
    /// Compresses both buffers into LZ4 frames.
    pub fn to_payload(&self) -> BlockPayload {
        BlockPayload {
            dependencies: compress_frame(&self.dependencies),
            objects: compress_frame(&self.objects),
        }
    }
}

/// Largest string written: the wire format measures strings with a u32.
const MAX_TEXT: usize = (u32::MAX as usize) - 64;

/// `s`, cut to the wire format's maximum at a character boundary.
fn fit(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The multiply-rotate hash of rustc (`FxHasher`): the writers' tables are keyed by the
/// producing process's own strings and addresses, so a keyed hash buys nothing there and
/// costs a fair share of the time per event.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let (chunks, rest) = bytes.as_chunks::<8>();
        for chunk in chunks {
            self.add(u64::from_le_bytes(*chunk));
        }
        let mut tail = [0u8; 8];
        if let Some(dst) = tail.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        self.add(u64::from_le_bytes(tail) ^ (rest.len() as u64) << 56);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// What all the block writers share: the buffers and the interning tables.
#[derive(Debug, Default)]
struct Core {
    deps: Vec<u8>,
    objects: Vec<u8>,
    nb_objects: u32,
    next_id: u64,
    strings: FxMap<Box<str>, u64>,
    sets: FxMap<Vec<(u64, u64)>, u64>,
    descriptors: FxMap<u64, u64>,
}

impl Core {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn intern_str(&mut self, string_type: u8, s: &str) -> u64 {
        let s = fit(s);
        if let Some(id) = self.strings.get(s) {
            return *id;
        }
        let id = self.new_id();
        // StaticStringDependency: u64 id, u8 codec, u32 len, bytes.
        self.deps.push(string_type);
        self.deps
            .extend_from_slice(&len32(8 + 1 + 4 + s.len()).to_le_bytes());
        self.deps.extend_from_slice(&id.to_le_bytes());
        self.deps.push(codec::UTF8);
        self.deps.extend_from_slice(&len32(s.len()).to_le_bytes());
        self.deps.extend_from_slice(s.as_bytes());
        self.strings.insert(s.into(), id);
        id
    }

    fn property_set(&mut self, string_type: u8, set_type: u8, props: &[(&str, &str)]) -> u64 {
        let refs: Vec<(u64, u64, u32, u32)> = props
            .iter()
            .map(|(name, value)| {
                let (name, value) = (fit(name), fit(value));
                (
                    self.intern_str(string_type, name),
                    self.intern_str(string_type, value),
                    len32(name.len()),
                    len32(value.len()),
                )
            })
            .collect();
        let key: Vec<(u64, u64)> = refs.iter().map(|r| (r.0, r.1)).collect();
        if let Some(id) = self.sets.get(&key) {
            return *id;
        }
        let id = self.new_id();
        // PropertySetDependency: u64 id, u32 count, count x Property (32 bytes).
        self.deps.push(set_type);
        self.deps
            .extend_from_slice(&len32(12 + 32 * refs.len()).to_le_bytes());
        self.deps.extend_from_slice(&id.to_le_bytes());
        self.deps
            .extend_from_slice(&len32(refs.len()).to_le_bytes());
        for (name, value, name_len, value_len) in refs {
            for (sid, len) in [(name, name_len), (value, value_len)] {
                // StaticStringRef: u64 id, u32 len, u8 codec, 3 bytes of padding.
                let mut r = [0u8; 16];
                put(&mut r, 0, &sid.to_le_bytes());
                put(&mut r, 8, &len.to_le_bytes());
                put(&mut r, 12, &[codec::UTF8]);
                self.deps.extend_from_slice(&r);
            }
        }
        self.sets.insert(key, id);
        id
    }

    /// Writes a descriptor record once per block: `{id, ptrs..., line, last}`.
    fn descriptor(
        &mut self,
        string_type: u8,
        record_type: u8,
        key: u64,
        strings: &[&str],
        line: u32,
        last: u32,
    ) -> u64 {
        if let Some(id) = self.descriptors.get(&key) {
            return *id;
        }
        let ids: Vec<u64> = strings
            .iter()
            .map(|s| self.intern_str(string_type, s))
            .collect();
        let id = self.new_id();
        self.deps.push(record_type);
        self.deps.extend_from_slice(&id.to_le_bytes());
        for sid in ids {
            self.deps.extend_from_slice(&sid.to_le_bytes());
        }
        self.deps.extend_from_slice(&line.to_le_bytes());
        self.deps.extend_from_slice(&last.to_le_bytes());
        self.descriptors.insert(key, id);
        id
    }

    fn object(&mut self, type_index: u8, record: &[u8]) {
        self.objects.push(type_index);
        self.objects.extend_from_slice(record);
        self.nb_objects = self.nb_objects.saturating_add(1);
    }

    fn dynamic_object(&mut self, type_index: u8, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.objects.push(type_index);
        self.objects.extend_from_slice(&len32(len).to_le_bytes());
        for p in parts {
            self.objects.extend_from_slice(p);
        }
        self.nb_objects = self.nb_objects.saturating_add(1);
    }

    fn finish(self) -> BlockBuffers {
        BlockBuffers {
            dependencies: self.deps,
            objects: self.objects,
            nb_objects: self.nb_objects,
        }
    }
}

fn put(record: &mut [u8], offset: usize, bytes: &[u8]) {
    if let Some(slot) = record.get_mut(offset..offset + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

/// `u8 codec (UTF-8), u32 len, bytes`.
fn dyn_string_header(s: &str) -> [u8; 5] {
    let mut h = [0u8; 5];
    h[0] = codec::UTF8;
    put(&mut h, 1, &len32(s.len()).to_le_bytes());
    h
}

/// Writes the records of one block of a `log` stream.
#[derive(Debug, Default)]
pub struct LogBlockWriter {
    core: Core,
}

impl LogBlockWriter {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    fn desc(&mut self, desc: &LogDesc<'_>) -> u64 {
        self.core.descriptor(
            index::LOG_STATIC_STRING_DEPENDENCY,
            index::LOG_METADATA,
            desc.key,
            &[desc.fmt_str, desc.target, desc.module_path, desc.file],
            desc.line,
            desc.level,
        )
    }

    /// Interns a property set (names and values copied into the block) and returns its id,
    /// for the `properties` argument of the tagged writers.
    pub fn property_set(&mut self, properties: &[(&str, &str)]) -> u64 {
        self.core.property_set(
            index::LOG_STATIC_STRING_DEPENDENCY,
            index::LOG_PROPERTY_SET,
            properties,
        )
    }

    /// A log whose message is the format string (`LogStaticStrEvent`).
    pub fn log_static(&mut self, desc: &LogDesc<'_>, time: i64) {
        let d = self.desc(desc);
        let mut r = [0u8; 16];
        put(&mut r, 0, &d.to_le_bytes());
        put(&mut r, 8, &time.to_le_bytes());
        self.core.object(index::LOG_STATIC, &r);
    }

    /// A formatted log (`LogStringEventV2`: `u64 desc, i64 time, DynString msg`).
    pub fn log_string(&mut self, desc: &LogDesc<'_>, time: i64, msg: &str) {
        let d = self.desc(desc);
        let msg = fit(msg);
        self.core.dynamic_object(
            index::LOG_STRING,
            &[
                &d.to_le_bytes(),
                &time.to_le_bytes(),
                &dyn_string_header(msg),
                msg.as_bytes(),
            ],
        );
    }

    /// A log with properties whose message is the format string (`TaggedLogStaticStrEvent`).
    pub fn log_tagged_static(&mut self, desc: &LogDesc<'_>, properties: u64, time: i64) {
        self.tagged_pod(index::LOG_TAGGED_STATIC, desc, properties, time);
    }

    /// A log whose message is the format string rendered with its properties
    /// (`TaggedLogTemplateEvent`).
    pub fn log_template(&mut self, desc: &LogDesc<'_>, properties: u64, time: i64) {
        self.tagged_pod(index::LOG_TEMPLATE, desc, properties, time);
    }

    fn tagged_pod(&mut self, type_index: u8, desc: &LogDesc<'_>, properties: u64, time: i64) {
        let d = self.desc(desc);
        let mut r = [0u8; 24];
        put(&mut r, 0, &d.to_le_bytes());
        put(&mut r, 8, &properties.to_le_bytes());
        put(&mut r, 16, &time.to_le_bytes());
        self.core.object(type_index, &r);
    }

    /// A formatted log with properties (`TaggedLogString`:
    /// `u64 desc, u64 properties, i64 time, DynString msg`).
    pub fn log_tagged_string(&mut self, desc: &LogDesc<'_>, properties: u64, time: i64, msg: &str) {
        let d = self.desc(desc);
        let msg = fit(msg);
        self.core.dynamic_object(
            index::LOG_TAGGED_STRING,
            &[
                &d.to_le_bytes(),
                &properties.to_le_bytes(),
                &time.to_le_bytes(),
                &dyn_string_header(msg),
                msg.as_bytes(),
            ],
        );
    }

    /// A log from another logging framework, without a static descriptor
    /// (`LogStringInteropEventV3`: `i64 time, u8 level, StaticStringRef target, DynString msg`).
    pub fn log_interop(&mut self, time: i64, level: u8, target: &str, msg: &str) {
        let target_ref = self.static_string_ref(target);
        let msg = fit(msg);
        self.core.dynamic_object(
            index::LOG_INTEROP_STRING,
            &[
                &time.to_le_bytes(),
                &[level],
                &target_ref,
                &dyn_string_header(msg),
                msg.as_bytes(),
            ],
        );
    }

    /// Like [`LogBlockWriter::log_interop`], with properties (`TaggedLogInteropEvent`:
    /// `i64 time, u8 level, StaticStringRef target, u64 properties, DynString msg`).
    pub fn log_interop_tagged(
        &mut self,
        time: i64,
        level: u8,
        target: &str,
        properties: u64,
        msg: &str,
    ) {
        let target_ref = self.static_string_ref(target);
        let msg = fit(msg);
        self.core.dynamic_object(
            index::LOG_TAGGED_INTEROP,
            &[
                &time.to_le_bytes(),
                &[level],
                &target_ref,
                &properties.to_le_bytes(),
                &dyn_string_header(msg),
                msg.as_bytes(),
            ],
        );
    }

    fn static_string_ref(&mut self, s: &str) -> [u8; 16] {
        let s = fit(s);
        let id = self.core.intern_str(index::LOG_STATIC_STRING_DEPENDENCY, s);
        let mut r = [0u8; 16];
        put(&mut r, 0, &id.to_le_bytes());
        put(&mut r, 8, &len32(s.len()).to_le_bytes());
        put(&mut r, 12, &[codec::UTF8]);
        r
    }

    /// Number of object records written.
    pub fn nb_objects(&self) -> u32 {
        self.core.nb_objects
    }

    /// Bytes written so far (both buffers).
    pub fn len_bytes(&self) -> usize {
        self.core.deps.len() + self.core.objects.len()
    }

    /// The buffers.
    pub fn finish(self) -> BlockBuffers {
        self.core.finish()
    }
}

/// Writes the records of one block of a `metrics` stream.
#[derive(Debug, Default)]
pub struct MetricsBlockWriter {
    core: Core,
}

impl MetricsBlockWriter {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    fn desc(&mut self, desc: &MetricDesc<'_>) -> u64 {
        self.core.descriptor(
            index::METRIC_STATIC_STRING_DEPENDENCY,
            index::METRIC_METADATA,
            desc.key,
            &[desc.name, desc.unit, desc.target, desc.file],
            desc.line,
            desc.lod,
        )
    }

    /// Interns a property set and returns its id. A metric whose name or unit is only known
    /// at run time sends them as the `name` and `unit` properties (with an empty name and unit
    /// in its descriptor), as upstream's `imetric_dyn!` does.
    pub fn property_set(&mut self, properties: &[(&str, &str)]) -> u64 {
        self.core.property_set(
            index::METRIC_STATIC_STRING_DEPENDENCY,
            index::METRIC_PROPERTY_SET,
            properties,
        )
    }

    fn point(
        &mut self,
        type_index: u8,
        desc: &MetricDesc<'_>,
        properties: Option<u64>,
        value: [u8; 8],
        time: i64,
    ) {
        let d = self.desc(desc);
        let mut r = [0u8; 32];
        put(&mut r, 0, &d.to_le_bytes());
        let mut offset = 8;
        if let Some(p) = properties {
            put(&mut r, 8, &p.to_le_bytes());
            offset = 16;
        }
        put(&mut r, offset, &value);
        put(&mut r, offset + 8, &time.to_le_bytes());
        self.core
            .object(type_index, r.get(..offset + 16).unwrap_or_default());
    }

    /// `IntegerMetricEvent`.
    pub fn int_metric(&mut self, desc: &MetricDesc<'_>, value: u64, time: i64) {
        self.point(index::METRIC_INT, desc, None, value.to_le_bytes(), time);
    }

    /// `FloatMetricEvent`.
    pub fn float_metric(&mut self, desc: &MetricDesc<'_>, value: f64, time: i64) {
        self.point(index::METRIC_FLOAT, desc, None, value.to_le_bytes(), time);
    }

    /// `TaggedIntegerMetricEvent`.
    pub fn tagged_int_metric(
        &mut self,
        desc: &MetricDesc<'_>,
        properties: u64,
        value: u64,
        time: i64,
    ) {
        self.point(
            index::METRIC_TAGGED_INT,
            desc,
            Some(properties),
            value.to_le_bytes(),
            time,
        );
    }

    /// `TaggedFloatMetricEvent`.
    pub fn tagged_float_metric(
        &mut self,
        desc: &MetricDesc<'_>,
        properties: u64,
        value: f64,
        time: i64,
    ) {
        self.point(
            index::METRIC_TAGGED_FLOAT,
            desc,
            Some(properties),
            value.to_le_bytes(),
            time,
        );
    }

    /// Number of object records written.
    pub fn nb_objects(&self) -> u32 {
        self.core.nb_objects
    }

    /// Bytes written so far (both buffers).
    pub fn len_bytes(&self) -> usize {
        self.core.deps.len() + self.core.objects.len()
    }

    /// The buffers.
    pub fn finish(self) -> BlockBuffers {
        self.core.finish()
    }
}

/// Writes the records of one block of a thread (`cpu`) stream.
#[derive(Debug, Default)]
pub struct ThreadBlockWriter {
    core: Core,
}

impl ThreadBlockWriter {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    fn desc(&mut self, desc: &SpanDesc<'_>) -> u64 {
        self.core.descriptor(
            index::THREAD_STATIC_STRING_DEPENDENCY,
            index::THREAD_SPAN_RECORD,
            desc.key,
            &[desc.name, desc.target, desc.module_path, desc.file],
            desc.line,
            desc.lod,
        )
    }

    fn location(&mut self, location: &SpanLocation<'_>) -> u64 {
        self.core.descriptor(
            index::THREAD_STATIC_STRING_DEPENDENCY,
            index::THREAD_SPAN_LOCATION,
            location.key,
            &[location.target, location.module_path, location.file],
            location.line,
            location.lod,
        )
    }

    /// `StringId`: `u64 id, u32 len`, padding to 16 bytes.
    fn string_id(&mut self, name: &str) -> [u8; 16] {
        let name = fit(name);
        let id = self
            .core
            .intern_str(index::THREAD_STATIC_STRING_DEPENDENCY, name);
        let mut r = [0u8; 16];
        put(&mut r, 0, &id.to_le_bytes());
        put(&mut r, 8, &len32(name.len()).to_le_bytes());
        r
    }

    /// Interns a property set and returns its id, for the tagged end events.
    pub fn property_set(&mut self, properties: &[(&str, &str)]) -> u64 {
        self.core.property_set(
            index::THREAD_STATIC_STRING_DEPENDENCY,
            index::THREAD_PROPERTY_SET,
            properties,
        )
    }

    fn desc_time(&mut self, type_index: u8, desc: &SpanDesc<'_>, time: i64) {
        let d = self.desc(desc);
        let mut r = [0u8; 16];
        put(&mut r, 0, &d.to_le_bytes());
        put(&mut r, 8, &time.to_le_bytes());
        self.core.object(type_index, &r);
    }

    /// `BeginThreadSpanEvent`.
    pub fn begin_thread_span(&mut self, desc: &SpanDesc<'_>, time: i64) {
        self.desc_time(index::BEGIN_THREAD, desc, time);
    }

    /// `EndThreadSpanEvent`.
    pub fn end_thread_span(&mut self, desc: &SpanDesc<'_>, time: i64) {
        self.desc_time(index::END_THREAD, desc, time);
    }

    /// `TaggedEndThreadSpanEvent`: the end of a thread span, with the span's properties.
    pub fn end_thread_span_tagged(&mut self, desc: &SpanDesc<'_>, properties: u64, time: i64) {
        let d = self.desc(desc);
        let mut r = [0u8; 24];
        put(&mut r, 0, &d.to_le_bytes());
        put(&mut r, 8, &properties.to_le_bytes());
        put(&mut r, 16, &time.to_le_bytes());
        self.core.object(index::TAGGED_END_THREAD, &r);
    }

    fn named(&mut self, type_index: u8, location: &SpanLocation<'_>, name: &str, time: i64) {
        let l = self.location(location);
        let name = self.string_id(name);
        let mut r = [0u8; 32];
        put(&mut r, 0, &l.to_le_bytes());
        put(&mut r, 8, &name);
        put(&mut r, 24, &time.to_le_bytes());
        self.core.object(type_index, &r);
    }

    /// `BeginThreadNamedSpanEvent` (the name is copied into the block).
    pub fn begin_thread_named_span(&mut self, location: &SpanLocation<'_>, name: &str, time: i64) {
        self.named(index::BEGIN_THREAD_NAMED, location, name, time);
    }

    /// `EndThreadNamedSpanEvent`.
    pub fn end_thread_named_span(&mut self, location: &SpanLocation<'_>, name: &str, time: i64) {
        self.named(index::END_THREAD_NAMED, location, name, time);
    }

    fn async_tail(r: &mut [u8], offset: usize, ids: &AsyncIds, time: i64) {
        put(r, offset, &ids.span_id.to_le_bytes());
        put(r, offset + 8, &ids.parent_span_id.to_le_bytes());
        put(r, offset + 16, &time.to_le_bytes());
        put(r, offset + 24, &ids.depth.to_le_bytes());
    }

    fn async_desc(&mut self, type_index: u8, desc: &SpanDesc<'_>, ids: &AsyncIds, time: i64) {
        let d = self.desc(desc);
        let mut r = [0u8; 40];
        put(&mut r, 0, &d.to_le_bytes());
        Self::async_tail(&mut r, 8, ids, time);
        self.core.object(type_index, &r);
    }

    /// `BeginAsyncSpanEvent`.
    pub fn begin_async_span(&mut self, desc: &SpanDesc<'_>, ids: &AsyncIds, time: i64) {
        self.async_desc(index::BEGIN_ASYNC, desc, ids, time);
    }

    /// `EndAsyncSpanEvent`.
    pub fn end_async_span(&mut self, desc: &SpanDesc<'_>, ids: &AsyncIds, time: i64) {
        self.async_desc(index::END_ASYNC, desc, ids, time);
    }

    /// `TaggedEndAsyncSpanEvent`: the end of an async span, with the span's properties.
    pub fn end_async_span_tagged(
        &mut self,
        desc: &SpanDesc<'_>,
        properties: u64,
        ids: &AsyncIds,
        time: i64,
    ) {
        let d = self.desc(desc);
        let mut r = [0u8; 48];
        put(&mut r, 0, &d.to_le_bytes());
        put(&mut r, 8, &properties.to_le_bytes());
        Self::async_tail(&mut r, 16, ids, time);
        self.core.object(index::TAGGED_END_ASYNC, &r);
    }

    fn async_named(
        &mut self,
        type_index: u8,
        location: &SpanLocation<'_>,
        name: &str,
        ids: &AsyncIds,
        time: i64,
    ) {
        let l = self.location(location);
        let name = self.string_id(name);
        let mut r = [0u8; 56];
        put(&mut r, 0, &l.to_le_bytes());
        put(&mut r, 8, &name);
        Self::async_tail(&mut r, 24, ids, time);
        self.core.object(type_index, &r);
    }

    /// `BeginAsyncNamedSpanEvent` (the name is copied into the block).
    pub fn begin_async_named_span(
        &mut self,
        location: &SpanLocation<'_>,
        name: &str,
        ids: &AsyncIds,
        time: i64,
    ) {
        self.async_named(index::BEGIN_ASYNC_NAMED, location, name, ids, time);
    }

    /// `EndAsyncNamedSpanEvent`.
    pub fn end_async_named_span(
        &mut self,
        location: &SpanLocation<'_>,
        name: &str,
        ids: &AsyncIds,
        time: i64,
    ) {
        self.async_named(index::END_ASYNC_NAMED, location, name, ids, time);
    }

    /// Number of object records written.
    pub fn nb_objects(&self) -> u32 {
        self.core.nb_objects
    }

    /// Bytes written so far (both buffers).
    pub fn len_bytes(&self) -> usize {
        self.core.deps.len() + self.core.objects.len()
    }

    /// The buffers.
    pub fn finish(self) -> BlockBuffers {
        self.core.finish()
    }
}

/// Writes the records of one block of an `image` stream.
#[derive(Debug, Default)]
pub struct ImageBlockWriter {
    core: Core,
}

impl ImageBlockWriter {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ImageEvent`: `i64 time, DynString name, DynString format, u32 len, bytes`. Data past
    /// 4 GiB is cut.
    pub fn image(&mut self, time: i64, name: &str, format: &str, data: &[u8]) {
        let (name, format) = (fit(name), fit(format));
        let data = data.get(..data.len().min(MAX_TEXT)).unwrap_or_default();
        self.core.dynamic_object(
            index::IMAGE,
            &[
                &time.to_le_bytes(),
                &dyn_string_header(name),
                name.as_bytes(),
                &dyn_string_header(format),
                format.as_bytes(),
                &len32(data.len()).to_le_bytes(),
                data,
            ],
        );
    }

    /// Number of object records written.
    pub fn nb_objects(&self) -> u32 {
        self.core.nb_objects
    }

    /// The buffers.
    pub fn finish(self) -> BlockBuffers {
        self.core.finish()
    }
}
