//! The Micromegas native protocol: what `micromegas-telemetry-sink` (0.33 and older), the
//! Unreal and C producers send to `/ingestion/insert_{process,stream,block}`, and what
//! `tarn-tracing` sends. Decoding and encoding only; no I/O.
//!
//! # Layers
//!
//! 1. **Envelopes** ([`envelope`]: [`ProcessInfo`], [`StreamInfo`] with its [`Udt`] type
//!    descriptions, [`Block`] with its [`BlockPayload`]): one CBOR map per request body. Key
//!    order is free, unknown keys are ignored, UUIDs are canonicalized, times are RFC 3339
//!    text ([`time`]), payload buffers are byte strings or (before upstream 0.29) arrays of
//!    integers.
//! 2. **LZ4 frames** ([`lz4`]: [`decompress_frame`], [`compress_frame`]): each payload
//!    buffer is one LZ4 frame; decoding never allocates past a caller-given limit.
//! 3. **Transit records** ([`transit`]): each decompressed buffer is a sequence of
//!    `u8 type index` + record; fixed-size records are read through member offsets of the
//!    stream's type descriptions, dynamic ones carry a u32 length. References are u64 ids
//!    resolved against the block's dependencies.
//! 4. **Events** ([`StreamDecoder`], [`Event`]): logs, measures, span begin/end, images,
//!    with the semantics upstream's analytics gives them.
//!
//! # What a block of each stream holds (upstream 0.33)
//!
//! | stream tag | object types (type index order) | dependency types |
//! |---|---|---|
//! | `log` | `LogStaticStrEvent`, `LogStringEventV2`*, `LogStaticStrInteropEvent`, `LogStaticStrInteropEventV2`, `LogStringInteropEventV3`*, `TaggedLogString`*, `TaggedLogStaticStrEvent`, `TaggedLogInteropEvent`*, `TaggedLogTemplateEvent` | `StaticString`*, `StaticStringDependency`*, `LogMetadataRecord`, `PropertySetDependency`* |
//! | `metrics` | `IntegerMetricEvent`, `FloatMetricEvent`, `TaggedFloatMetricEvent`, `TaggedIntegerMetricEvent` | `StaticString`*, `StaticStringDependency`*, `MetricMetadataDependency`, `PropertySetDependency`* |
//! | `cpu` | `{Begin,End}Thread[Named]SpanEvent`, `{Begin,End}Async[Named]SpanEvent`, `{Begin,End}{Thread,Async}DynNamedSpanEvent`, `TaggedEnd{Thread,Async}[Named]SpanEvent` | `SpanRecord`, `SpanLocationRecord`, `StaticString`*, `StaticStringDependency`*, `PropertySetDependency`* |
//! | `image` | `ImageEvent`* | none |
//!
//! (* dynamically sized.) The member types `StringId`, `DynStringId`, `StaticStringRef` and
//! `Property` follow the queue types in each list. Releases before 0.33 send a prefix of
//! these lists (0.28: no `LogStaticStrInteropEventV2`, tagged/template/dyn-named/tagged-end
//! types, no `DynStringId`); older producers also send `LogStringEvent` and
//! `LogStringInteropEventV2`, which are decoded too.
//!
//! # Example
//!
//! ```
//! use tarn_proto::native::*;
//!
//! // A producer (here the block writer) ...
//! let desc = LogDesc { key: 1, level: 4, fmt_str: "hello", target: "app", module_path: "app",
//!                      file: "src/main.rs", line: 3 };
//! let mut writer = LogBlockWriter::new();
//! writer.log_static(&desc, 1_000);
//! let stream = StreamKind::Log.stream_info(
//!     "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d".into(),
//!     "1c9a7f0e-4f9b-4c4a-8f39-3f3f8e0c2a11".into(),
//!     Default::default(),
//! );
//! let stream_body = encode_stream(&stream);
//!
//! // ... and the gateway.
//! let stream = decode_stream(&stream_body)?;
//! let decoder = StreamDecoder::from_stream(&stream);
//! let content = decoder.decode_payload(&writer.finish().to_payload(), 64 << 20)?;
//! for event in decoder.events(&content) {
//!     if let Event::Log(log) = event? {
//!         assert_eq!((log.level, log.target, &*log.msg), (4, "app", "hello"));
//!     }
//! }
//! # Ok::<(), NativeError>(())
//! ```

pub mod envelope;
mod error;
pub mod lz4;
pub mod time;
pub mod transit;

pub use envelope::*;
pub use error::NativeError;
pub use lz4::{compress_frame, decompress_frame};
pub use transit::*;

/// Sanity limits applied to untrusted stream metadata.
pub mod limits {
    /// Most type descriptions accepted in one metadata list (a record's type index is a `u8`,
    /// so only the first 256 are addressable anyway).
    pub const MAX_UDTS: usize = 1024;
    /// Most members accepted in one type description (real ones have fewer than 10).
    pub const MAX_MEMBERS: usize = 256;
    /// Most tags accepted on a stream.
    pub const MAX_TAGS: usize = 1024;
    /// Most properties accepted on a process or a stream.
    pub const MAX_PROPERTIES: usize = 4096;
    /// Deepest nesting of member types followed by the generic decoder.
    pub const MAX_NESTING: usize = 8;
    /// Most members (nested ones included) of all the fixed-size dependencies of one block
    /// (a real block has a few hundred).
    pub const MAX_DEPENDENCY_MEMBERS: usize = 1 << 20;

    /// Most members (nested ones included) the generic decoder decodes for a record of
    /// `len` bytes: 16 plus one per two bytes. Real records need one per 7 bytes or so; the
    /// bound keeps the decoded size proportional to the input whatever the type says.
    pub const fn member_budget(len: usize) -> usize {
        16 + len / 2
    }
}
