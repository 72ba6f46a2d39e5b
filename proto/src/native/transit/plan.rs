//! Precomputed member accessors, for reading fixed-size records without building objects.

use super::super::envelope::{Udt, UdtMember};
use super::super::error::NativeError;
use super::object::UdtIndex;
use super::read::array_at;
use std::sync::Arc;

/// How a member is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `u8` / `uint8`.
    U8,
    /// `u32` / `uint32`.
    U32,
    /// `u64` / `uint64`.
    U64,
    /// `i32` / `int32`.
    I32,
    /// `i64` / `int64`.
    I64,
    /// `f64`.
    F64,
    /// A u64 dependency id: a member with `is_reference`, or the `id` of a member whose type
    /// is a reference UDT (`StringId`, `StaticStringRef`, `DynStringId`).
    Ref,
}

impl FieldKind {
    fn name(self) -> &'static str {
        match self {
            FieldKind::U8 => "u8",
            FieldKind::U32 => "u32",
            FieldKind::U64 => "u64",
            FieldKind::I32 => "i32",
            FieldKind::I64 => "i64",
            FieldKind::F64 => "f64",
            FieldKind::Ref => "a reference",
        }
    }

    fn size(self) -> usize {
        match self {
            FieldKind::U8 => 1,
            FieldKind::U32 | FieldKind::I32 => 4,
            FieldKind::U64 | FieldKind::I64 | FieldKind::F64 | FieldKind::Ref => 8,
        }
    }

    /// The primitive kind of a transit type name, as upstream's parser spells them (plus
    /// `i32`/`int32`).
    pub fn primitive(type_name: &str) -> Option<FieldKind> {
        Some(match type_name {
            "u8" | "uint8" => FieldKind::U8,
            "u32" | "uint32" => FieldKind::U32,
            "u64" | "uint64" => FieldKind::U64,
            "i32" | "int32" => FieldKind::I32,
            "i64" | "int64" => FieldKind::I64,
            "f64" => FieldKind::F64,
            _ => return None,
        })
    }
}

/// A scalar read through a [`Field`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// An unsigned integer (u8, u32, u64).
    Unsigned(u64),
    /// A signed integer (i32, i64).
    Signed(i64),
    /// A float.
    Float(f64),
    /// A dependency id.
    Ref(u64),
}

/// Where and how to read one member of a fixed-size record. Reads are bounds-checked and
/// allocate nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Byte offset in the record.
    pub offset: usize,
    /// Storage kind.
    pub kind: FieldKind,
}

impl Field {
    #[inline]
    fn raw8(&self, payload: &[u8]) -> Result<[u8; 8], NativeError> {
        array_at::<8>(payload, self.offset, "member")
    }

    #[inline]
    fn raw4(&self, payload: &[u8]) -> Result<[u8; 4], NativeError> {
        array_at::<4>(payload, self.offset, "member")
    }

    /// Reads the member, whatever its kind.
    #[inline]
    pub fn read(&self, payload: &[u8]) -> Result<Scalar, NativeError> {
        Ok(match self.kind {
            FieldKind::U8 => {
                Scalar::Unsigned(u64::from(array_at::<1>(payload, self.offset, "member")?[0]))
            }
            FieldKind::U32 => Scalar::Unsigned(u64::from(u32::from_le_bytes(self.raw4(payload)?))),
            FieldKind::U64 => Scalar::Unsigned(u64::from_le_bytes(self.raw8(payload)?)),
            FieldKind::I32 => Scalar::Signed(i64::from(i32::from_le_bytes(self.raw4(payload)?))),
            FieldKind::I64 => Scalar::Signed(i64::from_le_bytes(self.raw8(payload)?)),
            FieldKind::F64 => Scalar::Float(f64::from_le_bytes(self.raw8(payload)?)),
            FieldKind::Ref => Scalar::Ref(u64::from_le_bytes(self.raw8(payload)?)),
        })
    }

    /// Reads an integer member as i64 (a u64 is reinterpreted, as upstream does for times).
    #[inline]
    pub fn read_i64(&self, payload: &[u8]) -> Result<i64, NativeError> {
        match self.kind {
            FieldKind::I64 | FieldKind::U64 => Ok(i64::from_le_bytes(self.raw8(payload)?)),
            _ => match self.read(payload)? {
                Scalar::Unsigned(v) => Ok(v as i64),
                Scalar::Signed(v) => Ok(v),
                _ => Err(self.mismatch("an integer")),
            },
        }
    }

    /// Reads an unsigned integer member as u64 (a negative signed value is an error).
    #[inline]
    pub fn read_u64(&self, payload: &[u8]) -> Result<u64, NativeError> {
        match self.read(payload)? {
            Scalar::Unsigned(v) => Ok(v),
            Scalar::Signed(v) => {
                u64::try_from(v).map_err(|_| self.mismatch("a non-negative integer"))
            }
            _ => Err(self.mismatch("an integer")),
        }
    }

    /// Reads a `u8` or `u32` member.
    #[inline]
    pub fn read_u32(&self, payload: &[u8]) -> Result<u32, NativeError> {
        match self.kind {
            FieldKind::U32 => Ok(u32::from_le_bytes(self.raw4(payload)?)),
            FieldKind::U8 => Ok(u32::from(array_at::<1>(payload, self.offset, "member")?[0])),
            _ => Err(self.mismatch("u32")),
        }
    }

    /// Reads an `f64` member.
    #[inline]
    pub fn read_f64(&self, payload: &[u8]) -> Result<f64, NativeError> {
        match self.kind {
            FieldKind::F64 => Ok(f64::from_le_bytes(self.raw8(payload)?)),
            _ => Err(self.mismatch("f64")),
        }
    }

    /// Reads the dependency id of a reference member.
    #[inline]
    pub fn read_ref(&self, payload: &[u8]) -> Result<u64, NativeError> {
        match self.kind {
            FieldKind::Ref => Ok(u64::from_le_bytes(self.raw8(payload)?)),
            _ => Err(self.mismatch("a reference")),
        }
    }

    fn mismatch(&self, expected: &'static str) -> NativeError {
        NativeError::TypeMismatch {
            udt: String::from("record"),
            member: format!("at offset {}", self.offset),
            expected,
            found: self.kind.name(),
        }
    }
}

/// Resolves how to read `member` of the fixed-size type `udt`, whose nested types are looked up
/// in `udts`.
///
/// Follows upstream's rules: an `is_reference` member is a u64 id (at least 8 bytes); a
/// primitive type name is read as such (its size must match); a member whose type is a
/// reference UDT reads that UDT's `id` member. Non-reference nested types have no scalar
/// accessor (use [`super::parse_object`]).
pub fn resolve_field(udt: &Udt, member: &UdtMember, udts: &[Udt]) -> Result<Field, NativeError> {
    resolve_field_in(udt, member, &UdtIndex::scan(udts))
}

pub(crate) fn resolve_field_in(
    udt: &Udt,
    member: &UdtMember,
    udts: &UdtIndex<'_>,
) -> Result<Field, NativeError> {
    let bad = |reason: String| NativeError::bad_udt(&udt.name, reason);
    let end = member
        .offset
        .checked_add(member.size)
        .ok_or_else(|| bad(format!("member `{}` overflows", member.name)))?;
    if udt.size != 0 && end > udt.size {
        return Err(bad(format!(
            "member `{}` ends at {end}, past the type's {} bytes",
            member.name, udt.size
        )));
    }
    if member.is_reference {
        if member.size < 8 {
            return Err(bad(format!(
                "reference member `{}` has {} bytes, at least 8 are needed",
                member.name, member.size
            )));
        }
        return Ok(Field {
            offset: member.offset,
            kind: FieldKind::Ref,
        });
    }
    if let Some(kind) = FieldKind::primitive(&member.type_name) {
        if kind.size() != member.size {
            return Err(bad(format!(
                "member `{}` of type {} has {} bytes",
                member.name, member.type_name, member.size
            )));
        }
        return Ok(Field {
            offset: member.offset,
            kind,
        });
    }
    let nested = udts
        .get(&member.type_name)
        .ok_or_else(|| NativeError::UnknownMemberType {
            udt: udt.name.to_string(),
            member: member.name.to_string(),
            type_name: member.type_name.to_string(),
        })?;
    if !nested.is_reference {
        return Err(bad(format!(
            "member `{}` is a nested {} object, not a scalar",
            member.name, nested.name
        )));
    }
    let id = nested.member("id").ok_or_else(|| {
        NativeError::bad_udt(&nested.name, "reference type without an `id` member")
    })?;
    let nested_end = member.offset.checked_add(nested.size);
    let id_end = id.offset.checked_add(8);
    match (nested_end, id_end) {
        (Some(ne), Some(ie)) if (udt.size == 0 || ne <= udt.size) && ie <= nested.size => {}
        _ => {
            return Err(bad(format!(
                "reference member `{}` of type {} does not fit",
                member.name, nested.name
            )));
        }
    }
    Ok(Field {
        offset: member.offset + id.offset,
        kind: FieldKind::Ref,
    })
}

/// Accessors for every member of a fixed-size type, computed once per stream and used for
/// every record of that type.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The type name.
    pub type_name: Arc<str>,
    /// The record size.
    pub size: usize,
    fields: Vec<(Arc<str>, Result<Field, NativeError>)>,
}

impl Plan {
    /// Resolves every member of `udt`. A member that cannot be read as a scalar only fails
    /// when it is asked for, so that one odd member does not make the others unreadable.
    pub fn new(udt: &Udt, udts: &[Udt]) -> Self {
        Self::with_index(udt, &UdtIndex::scan(udts))
    }

    pub(crate) fn with_index(udt: &Udt, udts: &UdtIndex<'_>) -> Self {
        Self {
            type_name: udt.name.clone(),
            size: udt.size,
            fields: udt
                .members
                .iter()
                .map(|m| (m.name.clone(), resolve_field_in(udt, m, udts)))
                .collect(),
        }
    }

    /// The accessor of member `name`.
    pub fn field(&self, name: &'static str) -> Result<Field, NativeError> {
        match self.fields.iter().find(|(n, _)| &**n == name) {
            Some((_, Ok(field))) => Ok(*field),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(NativeError::MissingMember {
                udt: self.type_name.to_string(),
                member: name,
            }),
        }
    }

    /// The accessor of member `name`, or `None` when the type has no such member.
    pub fn optional_field(&self, name: &'static str) -> Result<Option<Field>, NativeError> {
        match self.fields.iter().find(|(n, _)| &**n == name) {
            Some((_, Ok(field))) => Ok(Some(*field)),
            Some((_, Err(e))) => Err(e.clone()),
            None => Ok(None),
        }
    }

    /// The first of `names` that the type has.
    pub fn field_of(&self, names: &[&'static str]) -> Result<Field, NativeError> {
        for name in names {
            if let Some(field) = self.optional_field(name)? {
                return Ok(field);
            }
        }
        Err(NativeError::MissingMember {
            udt: self.type_name.to_string(),
            member: names.first().copied().unwrap_or("?"),
        })
    }
}
