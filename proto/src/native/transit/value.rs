//! Decoded transit values.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// A member value produced by the generic decoder ([`super::parse_object`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `u8` / `uint8`.
    U8(u8),
    /// `u32` / `uint32`.
    U32(u32),
    /// `u64` / `uint64`.
    U64(u64),
    /// `i32` / `int32` (accepted by Tarn; upstream's parser rejects it).
    I32(i32),
    /// `i64` / `int64`.
    I64(i64),
    /// `f64`.
    F64(f64),
    /// A string: a resolved string dependency, or a string of a dynamic record.
    String(Arc<str>),
    /// Raw bytes (the `data` of an `ImageEvent`).
    Bytes(Arc<[u8]>),
    /// A nested object, or a resolved fixed-size dependency (`LogMetadataRecord`...).
    Object(Arc<Object>),
    /// A resolved `PropertySetDependency`.
    PropertySet(Arc<PropertySet>),
}

impl Value {
    /// A short name of the variant, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::U32(_) => "u32",
            Value::U64(_) => "u64",
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
            Value::String(_) => "a string",
            Value::Bytes(_) => "bytes",
            Value::Object(_) => "an object",
            Value::PropertySet(_) => "a property set",
        }
    }

    /// The value as u64, for unsigned integers and non-negative signed ones.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(u64::from(v)),
            Value::U32(v) => Some(u64::from(v)),
            Value::U64(v) => Some(v),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as i64. A `u64` is reinterpreted (two's complement), as upstream does for
    /// times.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(i64::from(v)),
            Value::U32(v) => Some(i64::from(v)),
            Value::U64(v) => Some(v as i64),
            Value::I32(v) => Some(i64::from(v)),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as u32, for `u8` and `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        match *self {
            Value::U8(v) => Some(u32::from(v)),
            Value::U32(v) => Some(v),
            _ => None,
        }
    }

    /// The value as f64 (only for `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The object, if the value is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The property set, if the value is one.
    pub fn as_property_set(&self) -> Option<&PropertySet> {
        match self {
            Value::PropertySet(p) => Some(p),
            _ => None,
        }
    }
}

/// A decoded record: its type name and its members, in the order of the type description
/// (or, for dynamic records, the order upstream's custom readers use).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The UDT name.
    pub type_name: Arc<str>,
    /// Member names and values.
    pub members: Vec<(Arc<str>, Value)>,
}

impl Object {
    /// The value of member `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    /// Member `name` as a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// Member `name` as u64.
    pub fn get_u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(Value::as_u64)
    }

    /// Member `name` as i64.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    /// Member `name` as u32.
    pub fn get_u32(&self, name: &str) -> Option<u32> {
        self.get(name).and_then(Value::as_u32)
    }

    /// Member `name` as f64.
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_f64)
    }
}

/// A name/value pair of a property set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Property {
    /// Property name.
    pub name: Arc<str>,
    /// Property value.
    pub value: Arc<str>,
}

/// A decoded `PropertySetDependency`: properties in wire order (upstream sorts them by
/// descending name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertySet {
    /// The properties.
    pub properties: Vec<Property>,
}

impl PropertySet {
    /// The value of the property called `name`, compared ASCII-case-insensitively like
    /// upstream's `property_get`; the first match wins.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| &*p.value)
    }

    /// Name/value pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties.iter().map(|p| (&*p.name, &*p.value))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.properties.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }
}

/// A dependency record of a block, keyed by its id in a [`Dependencies`] map.
#[derive(Debug, Clone, PartialEq)]
pub enum Dependency {
    /// `StaticString` or `StaticStringDependency`.
    String(Arc<str>),
    /// `PropertySetDependency`.
    PropertySet(Arc<PropertySet>),
    /// A fixed-size dependency (`LogMetadataRecord`, `MetricMetadataDependency`, `SpanRecord`,
    /// `SpanLocationRecord`, ...), decoded generically. Its members include `id`.
    Object(Arc<Object>),
}

impl Dependency {
    /// The dependency as the value of a member that references it.
    pub fn to_value(&self) -> Value {
        match self {
            Dependency::String(s) => Value::String(s.clone()),
            Dependency::PropertySet(p) => Value::PropertySet(p.clone()),
            Dependency::Object(o) => Value::Object(o.clone()),
        }
    }

    /// The string, if the dependency is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Dependency::String(s) => Some(s),
            _ => None,
        }
    }

    /// The object, if the dependency is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Dependency::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The property set, if the dependency is one.
    pub fn as_property_set(&self) -> Option<&PropertySet> {
        match self {
            Dependency::PropertySet(p) => Some(p),
            _ => None,
        }
    }
}

/// The dependencies of one block, by id.
pub type Dependencies = HashMap<u64, Dependency>;

/// Text borrowed from a block (a dependency or the record itself) when possible, owned when it
/// had to be transcoded (UTF-16, invalid UTF-8, a rendered template).
pub type Text<'a> = Cow<'a, str>;
