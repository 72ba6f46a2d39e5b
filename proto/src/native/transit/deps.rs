//! Dependency records.

use super::super::envelope::Udt;
use super::super::error::NativeError;
use super::super::limits::MAX_DEPENDENCY_MEMBERS;
use super::object::ObjectParser;
use super::plan::{Field, FieldKind, resolve_field};
use super::read::{Cursor, decode_string, records};
use super::value::{Dependencies, Dependency, Property, PropertySet};
use std::sync::Arc;

/// Decodes a decompressed `dependencies` buffer into a map from dependency id to value.
///
/// Record types, by UDT name:
///
/// * `StaticString` (dynamic): `u64 id`, then the rest of the record is the UTF-8 text.
/// * `StaticStringDependency` (dynamic): `u64 id, u8 codec, u32 len, len bytes` (codec 0 ANSI,
///   1 UTF-16LE, 2 UTF-8).
/// * `PropertySetDependency` (dynamic): `u64 id, u32 count`, then `count` records of the
///   stream's `Property` type (32 bytes upstream: `name` and `value`, each a `StaticStringRef`
///   `{u64 id, u32 len, u8 codec}` whose id names a string dependency).
/// * Any fixed-size type (`LogMetadataRecord`, `MetricMetadataDependency`, `SpanRecord`,
///   `SpanLocationRecord`, ...): decoded with [`parse_object`](crate::native::parse_object); it must have an `id` member.
/// * Unknown dynamic types are skipped (upstream rejects the block).
///
/// Strings are decoded first, then the other records in buffer order, so a property set or a
/// descriptor may come before the strings it references (upstream needs them after). An id
/// defined twice with different contents is an error; the same contents twice are accepted.
pub fn parse_dependencies(buf: &[u8], udts: &[Udt]) -> Result<Dependencies, NativeError> {
    let mut deps = Dependencies::new();
    let mut others = false;
    for record in records(buf, udts) {
        let record = record?;
        let Some(udt) = udts.get(usize::from(record.type_index)) else {
            continue;
        };
        match &*udt.name {
            "StaticString" => {
                let mut c = Cursor::new(record.payload);
                let id = c.u64("StaticString id")?;
                let text = String::from_utf8_lossy(c.rest());
                insert(&mut deps, id, Dependency::String(Arc::from(text)))?;
            }
            "StaticStringDependency" => {
                let mut c = Cursor::new(record.payload);
                let id = c.u64("StaticStringDependency id")?;
                let codec = c.u8("StaticStringDependency codec")?;
                let len = c.u32("StaticStringDependency length")? as usize;
                let bytes = c.take(len, "StaticStringDependency text")?;
                let text = decode_string(codec, bytes)?;
                insert(&mut deps, id, Dependency::String(Arc::from(text)))?;
            }
            _ => others = true,
        }
    }
    if !others {
        return Ok(deps);
    }
    // Only an error when the block holds a property set.
    let property_layout = PropertyLayout::new(udts);
    let parser = ObjectParser::new(udts);
    let mut members_left = MAX_DEPENDENCY_MEMBERS;
    for record in records(buf, udts) {
        let record = record?;
        let Some(udt) = udts.get(usize::from(record.type_index)) else {
            continue;
        };
        match &*udt.name {
            "StaticString" | "StaticStringDependency" => {}
            "PropertySetDependency" => {
                let layout = property_layout.as_ref().map_err(Clone::clone)?;
                let (id, set) = parse_property_set(record.payload, layout, &deps)?;
                insert(&mut deps, id, Dependency::PropertySet(Arc::new(set)))?;
            }
            _ if udt.size == 0 => {}
            _ => {
                let object = parser.parse(udt, record.payload, &deps)?;
                members_left = members_left
                    .checked_sub(object.members.len())
                    .ok_or_else(|| {
                        NativeError::LimitExceeded(format!(
                            "more than {MAX_DEPENDENCY_MEMBERS} dependency members in one block"
                        ))
                    })?;
                let id = object
                    .get_u64("id")
                    .ok_or_else(|| NativeError::MissingMember {
                        udt: udt.name.to_string(),
                        member: "id",
                    })?;
                insert(&mut deps, id, Dependency::Object(Arc::new(object)))?;
            }
        }
    }
    Ok(deps)
}

fn insert(deps: &mut Dependencies, id: u64, value: Dependency) -> Result<(), NativeError> {
    match deps.get(&id) {
        Some(existing) if *existing != value => Err(NativeError::DuplicateDependency { id }),
        Some(_) => Ok(()),
        None => {
            deps.insert(id, value);
            Ok(())
        }
    }
}

/// Where the name and value ids are in a `Property` record.
#[derive(Debug, Clone, Copy)]
struct PropertyLayout {
    size: usize,
    name: Field,
    value: Field,
}

impl PropertyLayout {
    fn new(udts: &[Udt]) -> Result<Self, NativeError> {
        let Some(udt) = udts.iter().find(|t| &*t.name == "Property") else {
            // Upstream's layout: two 16-byte `StaticStringRef`s, id first.
            return Ok(Self {
                size: 32,
                name: Field {
                    offset: 0,
                    kind: FieldKind::Ref,
                },
                value: Field {
                    offset: 16,
                    kind: FieldKind::Ref,
                },
            });
        };
        if udt.size == 0 {
            return Err(NativeError::bad_udt(
                &udt.name,
                "Property must have a fixed size",
            ));
        }
        let field = |member: &'static str| -> Result<Field, NativeError> {
            let m = udt
                .member(member)
                .ok_or_else(|| NativeError::MissingMember {
                    udt: udt.name.to_string(),
                    member,
                })?;
            let field = resolve_field(udt, m, udts)?;
            if field.kind != FieldKind::Ref {
                return Err(NativeError::bad_udt(
                    &udt.name,
                    format!("member `{member}` is not a string reference"),
                ));
            }
            Ok(field)
        };
        Ok(Self {
            size: udt.size,
            name: field("name")?,
            value: field("value")?,
        })
    }
}

fn parse_property_set(
    payload: &[u8],
    layout: &PropertyLayout,
    deps: &Dependencies,
) -> Result<(u64, PropertySet), NativeError> {
    let mut c = Cursor::new(payload);
    let id = c.u64("PropertySetDependency id")?;
    let count = c.u32("PropertySetDependency count")? as usize;
    let bad = |reason: String| NativeError::BadPropertySet { id, reason };
    let room = c.rest().len() / layout.size.max(1);
    if count > room {
        return Err(bad(format!(
            "{count} properties of {} bytes do not fit in {} bytes",
            layout.size,
            c.rest().len()
        )));
    }
    let mut properties = Vec::with_capacity(count);
    for i in 0..count {
        let window = c.take(layout.size, "Property")?;
        let string = |field: Field, what: &'static str| -> Result<Arc<str>, NativeError> {
            let sid = field.read_ref(window)?;
            match deps.get(&sid) {
                Some(Dependency::String(s)) => Ok(s.clone()),
                Some(_) => Err(NativeError::DependencyType {
                    id: sid,
                    context: format!("property {i} {what} of set {id:#x}"),
                    expected: "string",
                }),
                None => Err(NativeError::MissingDependency {
                    id: sid,
                    context: format!("property {i} {what} of set {id:#x}"),
                }),
            }
        };
        properties.push(Property {
            name: string(layout.name, "name")?,
            value: string(layout.value, "value")?,
        });
    }
    Ok((id, PropertySet { properties }))
}
