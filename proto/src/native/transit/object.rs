//! Generic decoding of records into [`Object`]s, and the layouts of the dynamic records.

use super::super::envelope::Udt;
use super::super::error::NativeError;
use super::super::limits::{MAX_NESTING, member_budget};
use super::plan::FieldKind;
use super::read::{Cursor, bytes_at, u64_at};
use super::value::{Dependencies, Dependency, Object, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Decodes one record (a payload yielded by [`super::records`]) of type `udt` into an object.
///
/// * Fixed-size types follow upstream's `parse_pod_instance`: each member is read at its
///   offset; `is_reference` members read a u64 id and take the dependency's value; primitive
///   types are read as such; any other type name is a nested type of `udts`, decoded in turn,
///   and when that type is a reference type its `id` member's value is taken instead.
///   A reference to a dependency that `deps` does not hold is an error, as upstream.
/// * Dynamic types are decoded by name (see [`DynKind`]); an unknown dynamic type gives an
///   object without members, as upstream.
///
/// The work is bounded by the record size: at most [`limits::member_budget`] members
/// (nested ones included) are decoded, nested at most [`limits::MAX_NESTING`] deep, so a
/// hostile type description cannot turn a small record into a large object.
///
/// This looks nested types up by scanning `udts`; to decode many records, build an
/// [`ObjectParser`] once instead.
///
/// [`limits::member_budget`]: super::super::limits::member_budget
/// [`limits::MAX_NESTING`]: super::super::limits::MAX_NESTING
pub fn parse_object(
    udt: &Udt,
    udts: &[Udt],
    payload: &[u8],
    deps: &Dependencies,
) -> Result<Object, NativeError> {
    ObjectParser {
        index: UdtIndex::scan(udts),
        layouts: RefLayouts::new(udts),
    }
    .parse(udt, payload, deps)
}

/// Looks types up by name: the first type of that name, as upstream's linear search.
#[derive(Debug, Clone)]
pub(crate) struct UdtIndex<'u> {
    udts: &'u [Udt],
    map: Option<HashMap<&'u str, &'u Udt>>,
}

impl<'u> UdtIndex<'u> {
    /// Scans the list on every lookup: for one-off use.
    pub(crate) fn scan(udts: &'u [Udt]) -> Self {
        Self { udts, map: None }
    }

    /// Hashes the names once: for repeated use.
    pub(crate) fn new(udts: &'u [Udt]) -> Self {
        let mut map = HashMap::with_capacity(udts.len());
        for udt in udts {
            map.entry(&*udt.name).or_insert(udt);
        }
        Self {
            udts,
            map: Some(map),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'u Udt> {
        match &self.map {
            Some(map) => map.get(name).copied(),
            None => self.udts.iter().find(|t| &*t.name == name),
        }
    }
}

/// The generic decoder of [`parse_object`], prepared once for the types of a stream.
#[derive(Debug, Clone)]
pub struct ObjectParser<'u> {
    index: UdtIndex<'u>,
    layouts: RefLayouts,
}

impl<'u> ObjectParser<'u> {
    /// Indexes `udts`, the metadata list the records' types come from.
    pub fn new(udts: &'u [Udt]) -> Self {
        Self {
            index: UdtIndex::new(udts),
            layouts: RefLayouts::new(udts),
        }
    }

    /// Decodes one record of type `udt`; see [`parse_object`].
    pub fn parse(
        &self,
        udt: &Udt,
        payload: &[u8],
        deps: &Dependencies,
    ) -> Result<Object, NativeError> {
        if udt.size == 0 {
            return match DynKind::from_name(&udt.name) {
                Some(kind) => {
                    let fields = decode_dynamic(kind, payload, &self.layouts)?;
                    fields.into_object(udt.name.clone(), deps)
                }
                None => Ok(Object {
                    type_name: udt.name.clone(),
                    members: Vec::new(),
                }),
            };
        }
        if payload.len() < udt.size {
            return Err(NativeError::truncated("record", 0, udt.size, payload.len()));
        }
        let mut budget = member_budget(payload.len());
        self.parse_pod(udt, payload, deps, 0, &mut budget)
    }

    fn parse_pod(
        &self,
        udt: &Udt,
        window: &[u8],
        deps: &Dependencies,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Object, NativeError> {
        if depth > MAX_NESTING {
            return Err(NativeError::NestingTooDeep(MAX_NESTING));
        }
        *budget = budget.checked_sub(udt.members.len()).ok_or_else(|| {
            NativeError::bad_udt(&udt.name, "too many members for the size of the record")
        })?;
        let mut members = Vec::with_capacity(udt.members.len());
        for m in &udt.members {
            let member_bytes = bytes_at(window, m.offset, m.size, "member").map_err(|_| {
                NativeError::bad_udt(
                    &udt.name,
                    format!(
                        "member `{}` ({} bytes at {}) exceeds the {}-byte record",
                        m.name,
                        m.size,
                        m.offset,
                        window.len()
                    ),
                )
            })?;
            let value = if m.is_reference {
                if m.size < 8 {
                    return Err(NativeError::bad_udt(
                        &udt.name,
                        format!("reference member `{}` is smaller than 8 bytes", m.name),
                    ));
                }
                let id = u64_at(member_bytes, 0, "reference")?;
                resolve(deps, id, || format!("{}.{}", udt.name, m.name))?.to_value()
            } else if let Some(kind) = FieldKind::primitive(&m.type_name) {
                read_primitive(kind, member_bytes).ok_or_else(|| {
                    NativeError::bad_udt(
                        &udt.name,
                        format!(
                            "member `{}` of type {} has {} bytes",
                            m.name, m.type_name, m.size
                        ),
                    )
                })?
            } else {
                let nested =
                    self.index
                        .get(&m.type_name)
                        .ok_or_else(|| NativeError::UnknownMemberType {
                            udt: udt.name.to_string(),
                            member: m.name.to_string(),
                            type_name: m.type_name.to_string(),
                        })?;
                let nested_window = bytes_at(window, m.offset, nested.size, "nested member")
                    .map_err(|_| {
                        NativeError::bad_udt(
                            &udt.name,
                            format!(
                                "nested member `{}` of type {} ({} bytes) exceeds the record",
                                m.name, nested.name, nested.size
                            ),
                        )
                    })?;
                let object = self.parse_pod(nested, nested_window, deps, depth + 1, budget)?;
                if nested.is_reference {
                    let mut members = object.members;
                    match members.iter().position(|(n, _)| &**n == "id") {
                        Some(at) => members.swap_remove(at).1,
                        None => {
                            return Err(NativeError::bad_udt(
                                &nested.name,
                                "reference type without an `id` member",
                            ));
                        }
                    }
                } else {
                    Value::Object(Arc::new(object))
                }
            };
            members.push((m.name.clone(), value));
        }
        Ok(Object {
            type_name: udt.name.clone(),
            members,
        })
    }
}

pub(crate) fn resolve(
    deps: &Dependencies,
    id: u64,
    context: impl FnOnce() -> String,
) -> Result<&Dependency, NativeError> {
    deps.get(&id).ok_or_else(|| NativeError::MissingDependency {
        id,
        context: context(),
    })
}

fn read_primitive(kind: FieldKind, bytes: &[u8]) -> Option<Value> {
    Some(match kind {
        FieldKind::U8 => Value::U8(u8::from_le_bytes(bytes.try_into().ok()?)),
        FieldKind::U32 => Value::U32(u32::from_le_bytes(bytes.try_into().ok()?)),
        FieldKind::U64 => Value::U64(u64::from_le_bytes(bytes.try_into().ok()?)),
        FieldKind::I32 => Value::I32(i32::from_le_bytes(bytes.try_into().ok()?)),
        FieldKind::I64 => Value::I64(i64::from_le_bytes(bytes.try_into().ok()?)),
        FieldKind::F64 => Value::F64(f64::from_le_bytes(bytes.try_into().ok()?)),
        FieldKind::Ref => Value::U64(u64::from_le_bytes(bytes.try_into().ok()?)),
    })
}

/// The dynamically sized record types Tarn decodes, with their layouts (all integers
/// little-endian, fields packed in this order; `DynString` is `u8 codec, u32 len, bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynKind {
    /// `LogStringEvent` (legacy): `u64 desc, i64 time`, then the rest of the record is the
    /// UTF-8 message (no codec header).
    LogStringEvent,
    /// `LogStringEventV2` (the Rust `LogStringEvent`): `u64 desc, i64 time, DynString msg`.
    LogStringEventV2,
    /// `LogStringInteropEventV2` (legacy): `i64 time, u32 level, StringId target` (the size of
    /// the stream's `StringId` type, 16), then the rest is the UTF-8 message.
    LogStringInteropEventV2,
    /// `LogStringInteropEventV3`: `i64 time, u8 level, StaticStringRef target` (the size of the
    /// stream's `StaticStringRef` type, 16: `u64 id, u32 len, u8 codec`, padding),
    /// `DynString msg`.
    LogStringInteropEventV3,
    /// `TaggedLogInteropEvent` (Unreal; the Rust sink since 0.33 for `tracing` events with
    /// fields): `i64 time, u8 level, StaticStringRef target, u64 properties, DynString msg`.
    TaggedLogInteropEvent,
    /// `TaggedLogString`: `u64 desc, u64 properties, i64 time, DynString msg`.
    TaggedLogString,
    /// `ImageEvent`: `i64 time, DynString name, DynString format, u32 len, len bytes`.
    ImageEvent,
}

impl DynKind {
    /// The kind for a UDT name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "LogStringEvent" => Self::LogStringEvent,
            "LogStringEventV2" => Self::LogStringEventV2,
            "LogStringInteropEventV2" => Self::LogStringInteropEventV2,
            "LogStringInteropEventV3" => Self::LogStringInteropEventV3,
            "TaggedLogInteropEvent" => Self::TaggedLogInteropEvent,
            "TaggedLogString" => Self::TaggedLogString,
            "ImageEvent" => Self::ImageEvent,
            _ => return None,
        })
    }
}

/// Size and `id` offset of a reference type embedded in a dynamic record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefLayout {
    pub(crate) size: usize,
    pub(crate) id_offset: usize,
}

impl RefLayout {
    /// Upstream's `StringId` and `StaticStringRef`: 16 bytes, id first.
    const DEFAULT: RefLayout = RefLayout {
        size: 16,
        id_offset: 0,
    };

    fn of(udts: &[Udt], name: &str) -> RefLayout {
        let Some(udt) = udts.iter().find(|t| &*t.name == name) else {
            return Self::DEFAULT;
        };
        match udt.member("id") {
            Some(id) if id.offset.checked_add(8).is_some_and(|end| end <= udt.size) => RefLayout {
                size: udt.size,
                id_offset: id.offset,
            },
            _ => Self::DEFAULT,
        }
    }
}

/// Layouts of the reference types that dynamic records embed, taken from the stream (upstream
/// requires them there; Tarn falls back to upstream's layout when they are missing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefLayouts {
    pub(crate) string_id: RefLayout,
    pub(crate) static_string_ref: RefLayout,
}

impl RefLayouts {
    pub(crate) fn new(udts: &[Udt]) -> Self {
        Self {
            string_id: RefLayout::of(udts, "StringId"),
            static_string_ref: RefLayout::of(udts, "StaticStringRef"),
        }
    }
}

/// The fields of a dynamic record, borrowed from the payload; references are still ids.
#[derive(Debug, Clone, Default)]
pub(crate) struct DynFields<'a> {
    pub(crate) kind: Option<DynKind>,
    pub(crate) time: i64,
    pub(crate) desc: Option<u64>,
    pub(crate) properties: Option<u64>,
    pub(crate) level: Option<u32>,
    pub(crate) target: Option<u64>,
    pub(crate) msg: Option<Cow<'a, str>>,
    pub(crate) name: Option<Cow<'a, str>>,
    pub(crate) format: Option<Cow<'a, str>>,
    pub(crate) data: Option<&'a [u8]>,
}

fn embedded_ref(cursor: &mut Cursor<'_>, layout: RefLayout) -> Result<u64, NativeError> {
    let window = cursor.take(layout.size, "embedded string reference")?;
    u64_at(window, layout.id_offset, "embedded string reference")
}

/// Decodes the payload of a dynamic record.
pub(crate) fn decode_dynamic<'a>(
    kind: DynKind,
    payload: &'a [u8],
    layouts: &RefLayouts,
) -> Result<DynFields<'a>, NativeError> {
    let mut c = Cursor::new(payload);
    let mut f = DynFields {
        kind: Some(kind),
        ..DynFields::default()
    };
    match kind {
        DynKind::LogStringEvent => {
            f.desc = Some(c.u64("desc")?);
            f.time = c.i64("time")?;
            f.msg = Some(String::from_utf8_lossy(c.rest()));
        }
        DynKind::LogStringEventV2 => {
            f.desc = Some(c.u64("desc")?);
            f.time = c.i64("time")?;
            f.msg = Some(c.dyn_string("msg")?);
        }
        DynKind::LogStringInteropEventV2 => {
            f.time = c.i64("time")?;
            f.level = Some(c.u32("level")?);
            f.target = Some(embedded_ref(&mut c, layouts.string_id)?);
            f.msg = Some(String::from_utf8_lossy(c.rest()));
        }
        DynKind::LogStringInteropEventV3 => {
            f.time = c.i64("time")?;
            f.level = Some(u32::from(c.u8("level")?));
            f.target = Some(embedded_ref(&mut c, layouts.static_string_ref)?);
            f.msg = Some(c.dyn_string("msg")?);
        }
        DynKind::TaggedLogInteropEvent => {
            f.time = c.i64("time")?;
            f.level = Some(u32::from(c.u8("level")?));
            f.target = Some(embedded_ref(&mut c, layouts.static_string_ref)?);
            f.properties = Some(c.u64("properties")?);
            f.msg = Some(c.dyn_string("msg")?);
        }
        DynKind::TaggedLogString => {
            f.desc = Some(c.u64("desc")?);
            f.properties = Some(c.u64("properties")?);
            f.time = c.i64("time")?;
            f.msg = Some(c.dyn_string("msg")?);
        }
        DynKind::ImageEvent => {
            f.time = c.i64("time")?;
            f.name = Some(c.dyn_string("name")?);
            f.format = Some(c.dyn_string("format")?);
            let len = c.u32("image length")? as usize;
            f.data = Some(c.take(len, "image data")?);
        }
    }
    Ok(f)
}

impl DynFields<'_> {
    /// Resolves the references and builds an object with upstream's member names and order.
    fn into_object(self, type_name: Arc<str>, deps: &Dependencies) -> Result<Object, NativeError> {
        let kind = self.kind;
        let name_for = |member: &str| format!("{type_name}.{member}");
        let mut members: Vec<(Arc<str>, Value)> = Vec::with_capacity(5);
        let mut push = |name: &str, value: Value| members.push((Arc::from(name), value));
        push("time", Value::I64(self.time));
        if let Some(level) = self.level {
            // `LogStringInteropEventV2` stores a u32 level, the others a u8.
            if kind == Some(DynKind::LogStringInteropEventV2) {
                push("level", Value::U32(level));
            } else {
                push("level", Value::U8(u8::try_from(level).unwrap_or(u8::MAX)));
            }
        }
        if let Some(id) = self.target {
            push(
                "target",
                resolve(deps, id, || name_for("target"))?.to_value(),
            );
        }
        if let Some(id) = self.desc {
            push("desc", resolve(deps, id, || name_for("desc"))?.to_value());
        }
        if let Some(id) = self.properties {
            push(
                "properties",
                resolve(deps, id, || name_for("properties"))?.to_value(),
            );
        }
        if let Some(msg) = self.msg {
            push("msg", Value::String(Arc::from(msg)));
        }
        if let Some(name) = self.name {
            push("name", Value::String(Arc::from(name)));
        }
        if let Some(format) = self.format {
            push("format", Value::String(Arc::from(format)));
        }
        if let Some(data) = self.data {
            push("data", Value::Bytes(Arc::from(data)));
        }
        Ok(Object { type_name, members })
    }
}
