//! Transit: the record format inside the LZ4 frames of a block.
//!
//! Each buffer (`dependencies`, `objects`) is a concatenation of records, written by
//! upstream's heterogeneous queues (`micromegas-transit`, `declare_queue_struct!`):
//!
//! ```text
//! u8   type index   position of the record's type in the stream's `dependencies_metadata`
//!                   (for `dependencies`) or `objects_metadata` (for `objects`)
//! then, when the type's size > 0:   size bytes, a memory copy of the Rust struct
//!       when the type's size == 0:  u32 length, then length bytes decoded by the type's reader
//! ```
//!
//! Everything is little-endian. Fixed-size records are raw struct copies with rustc's field
//! order and padding, so members are found through the offsets of the type description,
//! never by position. References (`&'static` descriptors, `*const u8` strings, members marked
//! `#[transit(reference)]`) are u64 ids: the address of the object in the producing process,
//! or (0.33) a block-scoped id with bit 63 set for strings and property sets built at run
//! time. Ids resolve against the block's dependencies, which are decoded first.
//!
//! # Fixed-size layouts sent by `micromegas-tracing` 0.33 (x86_64)
//!
//! `@n` is the offset; `ref` members hold a u64 dependency id. Readers must still take the
//! offsets from the stream's type descriptions: another compiler or producer may lay the same
//! members out differently.
//!
//! | type | size | members |
//! |---|---|---|
//! | `StringId` (reference type) | 16 | `id` ref @0 (a string), then the u32 byte length @8 |
//! | `StaticStringRef` (reference type) | 16 | `id` ref @0, then u32 length @8 and u8 codec @12 |
//! | `DynStringId` (reference type, 0.33) | 8 | `id` ref @0: a block-scoped string record |
//! | `Property` | 32 | `name: StaticStringRef` @0, `value: StaticStringRef` @16 |
//! | `LogMetadataRecord` | 48 | `id` u64 @0, `fmt_str` @8, `target` @16, `module_path` @24, `file` @32 (string refs), `line` u32 @40, `level` u32 @44 |
//! | `MetricMetadataDependency` | 48 | `id` @0, `name` @8, `unit` @16, `target` @24, `file` @32, `line` u32 @40, `lod` u32 @44 |
//! | `SpanRecord` | 48 | `id` @0, `name` @8, `target` @16, `module_path` @24, `file` @32, `line` u32 @40, `lod` u32 @44 |
//! | `SpanLocationRecord` | 40 | `id` @0, `target` @8, `module_path` @16, `file` @24, `line` u32 @32, `lod` u32 @36 |
//! | `LogStaticStrEvent` | 16 | `desc` ref @0, `time` i64 @8 |
//! | `TaggedLogStaticStrEvent`, `TaggedLogTemplateEvent` (0.33) | 24 | `desc` ref @0, `properties` ref @8, `time` @16 |
//! | `LogStaticStrInteropEvent` | 48 | `target: StringId` @0, `msg: StringId` @16, `time` @32, `level` u32 @40 |
//! | `LogStaticStrInteropEventV2` (0.33) | 40 | `msg: StringId` @0, `time` @16, `target: DynStringId` @24, `level` u32 @32 |
//! | `IntegerMetricEvent`, `FloatMetricEvent` | 24 | `desc` ref @0, `value` u64/f64 @8, `time` @16 |
//! | `TaggedIntegerMetricEvent`, `TaggedFloatMetricEvent` | 32 | `desc` @0, `properties` ref @8, `value` @16, `time` @24 |
//! | `{Begin,End}ThreadSpanEvent` | 16 | `thread_span_desc` ref @0, `time` @8 |
//! | `{Begin,End}ThreadNamedSpanEvent` | 32 | `thread_span_location` ref @0, `name: StringId` @8, `time` @24 |
//! | `{Begin,End}ThreadDynNamedSpanEvent` (0.33) | 24 | `thread_span_location` @0, `name: DynStringId` @8, `time` @16 |
//! | `{Begin,End}AsyncSpanEvent` | 40 | `span_desc` ref @0, `span_id` u64 @8, `parent_span_id` u64 @16, `time` @24, `depth` u32 @32 |
//! | `{Begin,End}AsyncNamedSpanEvent` | 56 | `span_location` @0, `name: StringId` @8, `span_id` @24, `parent_span_id` @32, `time` @40, `depth` @48 |
//! | `{Begin,End}AsyncDynNamedSpanEvent` (0.33) | 48 | `span_location` @0, `name: DynStringId` @8, `span_id` @16, `parent_span_id` @24, `time` @32, `depth` @40 |
//! | `TaggedEndThreadSpanEvent` (0.33) | 24 | `thread_span_desc` @0, `properties` ref @8, `time` @16 |
//! | `TaggedEndThreadNamedSpanEvent` (0.33) | 32 | `thread_span_location` @0, `name: DynStringId` @8, `properties` @16, `time` @24 |
//! | `TaggedEndAsyncSpanEvent` (0.33) | 48 | `span_desc` @0, `properties` @8, `span_id` @16, `parent_span_id` @24, `time` @32, `depth` @40 |
//! | `TaggedEndAsyncNamedSpanEvent` (0.33) | 56 | `span_location` @0, `name: DynStringId` @8, `properties` @16, `span_id` @24, `parent_span_id` @32, `time` @40, `depth` @48 |
//!
//! Dynamic records are described by [`DynKind`] (events) and [`parse_dependencies`]
//! (`StaticString`, `StaticStringDependency`, `PropertySetDependency`). Since 0.33 the
//! strings and property sets built at run time (dynamic span names, interop targets,
//! properties with run-time values, `imetric_dyn!` names) are `StaticStringDependency` and
//! `PropertySetDependency` records with ids `1 << 63 | offset << 1` (strings) and
//! `1 << 63 | offset << 1 | 1` (sets), appended after the static dependencies.
//!
//! # Layers
//!
//! From the bytes up:
//!
//! * [`records`]: framing only, yields `(type_index, payload)`.
//! * [`parse_dependencies`]: the dependency map (strings, property sets, descriptors).
//! * [`parse_object`]: a generic decoder following upstream's parser, into [`Object`]s, plus
//!   the readers of the dynamic record types ([`DynKind`]).
//! * [`Plan`] / [`Field`]: member accessors computed once per type, for reading fixed-size
//!   records without building objects.
//! * [`StreamDecoder`]: typed events ([`Event`]) of the standard kinds, with no allocation
//!   per event.
//! * [`LogBlockWriter`], [`MetricsBlockWriter`], [`ThreadBlockWriter`], [`ImageBlockWriter`]
//!   and [`StreamKind`]: the other direction, for Tarn's own instrumentation and for tests.
//!   [`StreamKind`] gives upstream 0.33's type descriptions, name for name and offset for
//!   offset, so upstream's analytics reads what the writers produce. The writers assign
//!   dependency ids per block (strings and property sets interned by content, descriptors by
//!   a caller-given key) and write every dependency before the records that reference it,
//!   as upstream's single-pass parser requires.
//!
//! Every read is bounds-checked; malformed input yields a [`NativeError`], never a panic,
//! and no allocation is sized from a length field before that length is checked against the
//! bytes actually present.
//!
//! [`NativeError`]: super::NativeError

mod deps;
mod events;
mod object;
mod plan;
mod read;
mod value;
mod write;

pub use deps::parse_dependencies;
pub use events::{
    AsyncSpan, BlockContent, Event, Events, Image, LogEntry, Measure, MeasureValue, SpanEvent,
    SpanPhase, StreamDecoder, parse_level, render_template,
};
pub use object::{DynKind, ObjectParser, parse_object};
pub use plan::{Field, FieldKind, Plan, Scalar, resolve_field};
pub use read::{Record, Records, codec, decode_string, records};
pub use value::{Dependencies, Dependency, Object, Property, PropertySet, Text, Value};
pub use write::{
    AsyncIds, BlockBuffers, ImageBlockWriter, LogBlockWriter, LogDesc, MetricDesc,
    MetricsBlockWriter, SpanDesc, SpanLocation, StreamKind, ThreadBlockWriter,
};
