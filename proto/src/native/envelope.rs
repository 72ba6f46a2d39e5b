//! The CBOR envelopes of the three native routes.
//!
//! Each body is one CBOR map (RFC 8949) with text keys, as `ciborium` writes a serde struct.
//! Keys may come in any order (the Unreal producer uses another order than the Rust sink) and
//! unknown keys are ignored. Byte-level facts:
//!
//! * UUIDs are text in the hyphenated form. Decoding accepts any form `uuid::Uuid::parse_str`
//!   accepts (hyphenated, simple, braced, URN; any case) and stores the canonical lowercase
//!   hyphenated text, which is what upstream stores after its round trip through PostgreSQL.
//! * Times are RFC 3339 text, kept as sent; [`super::time`] converts them to nanoseconds, and
//!   decoding fails when they do not parse (upstream answers 400 then).
//! * Integers are CBOR integers (major types 0/1), booleans CBOR booleans, maps of strings
//!   CBOR maps of text to text, vectors CBOR arrays. CBOR tags are ignored.
//! * `BlockPayload.dependencies` and `.objects` are CBOR byte strings (major type 2) since
//!   upstream v0.29 (#1463), and arrays of integers 0..=255 (major type 4) before. Both forms
//!   are accepted forever; encoding always writes byte strings.

use super::error::{NativeError, excerpt};
use super::limits;
use super::time::parse_rfc3339_nanos;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Body of `POST /ingestion/insert_process` (upstream `micromegas_tracing::ProcessInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Canonical lowercase hyphenated UUID.
    pub process_id: String,
    /// Executable path.
    #[serde(default)]
    pub exe: String,
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Real name of the user.
    #[serde(default)]
    pub realname: String,
    /// Host name.
    #[serde(default)]
    pub computer: String,
    /// Operating system description.
    #[serde(default)]
    pub distro: String,
    /// CPU model.
    #[serde(default)]
    pub cpu_brand: String,
    /// Ticks per second; 0 means unknown (estimate it from the blocks).
    #[serde(default)]
    pub tsc_frequency: i64,
    /// RFC 3339 text, as sent. See [`ProcessInfo::start_time_nanos`].
    pub start_time: String,
    /// Absolute tick counter at startup. Block ticks are relative to it.
    pub start_ticks: i64,
    /// Canonical UUID of the parent process. Null, missing and `""` all decode to `None`;
    /// `None` encodes as CBOR null, as the Rust sink does.
    #[serde(default, deserialize_with = "de_opt_uuid_text")]
    pub parent_process_id: Option<String>,
    /// Process properties.
    #[serde(default, deserialize_with = "bounded::properties")]
    pub properties: BTreeMap<String, String>,
}

impl ProcessInfo {
    /// `start_time` in nanoseconds since the Unix epoch.
    pub fn start_time_nanos(&self) -> Result<i64, NativeError> {
        parse_rfc3339_nanos(&self.start_time)
    }
}

/// Body of `POST /ingestion/insert_stream` (upstream `micromegas_telemetry::StreamInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Canonical UUID of the process.
    pub process_id: String,
    /// Canonical UUID of the stream.
    pub stream_id: String,
    /// Types of the records in `BlockPayload.dependencies`; a record's type index is a
    /// position in this list.
    #[serde(default, deserialize_with = "bounded::udts")]
    pub dependencies_metadata: Vec<Udt>,
    /// Types of the records in `BlockPayload.objects`.
    #[serde(default, deserialize_with = "bounded::udts")]
    pub objects_metadata: Vec<Udt>,
    /// Stream tags: `log`, `metrics`, `cpu`, `image`, `net`...
    #[serde(default, deserialize_with = "bounded::tags")]
    pub tags: Vec<String>,
    /// Stream properties (`thread-id`, `thread-name` for `cpu` streams).
    #[serde(default, deserialize_with = "bounded::properties")]
    pub properties: BTreeMap<String, String>,
}

/// A transit type description (upstream `micromegas_transit::UserDefinedType`).
///
/// CBOR keys: `name`, `size`, `members`, `is_reference` (upstream's `secondary_udts` is never
/// serialized: the sink appends those types to the list instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Udt {
    /// Type name; the decoder dispatches on it.
    pub name: Arc<str>,
    /// Size in bytes of a fixed-size record; 0 for a dynamically sized one.
    pub size: usize,
    /// Members of a fixed-size type (empty for dynamic types).
    #[serde(default, deserialize_with = "bounded::members")]
    pub members: Vec<UdtMember>,
    /// A reference type (`StringId`, `StaticStringRef`, `DynStringId`): when it is the type of
    /// a member, that member's value is the dependency its `id` member points to.
    #[serde(default)]
    pub is_reference: bool,
}

/// A member of a [`Udt`] (upstream `micromegas_transit::Member`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdtMember {
    /// Member name; readers look members up by name.
    pub name: Arc<str>,
    /// `u8`, `u32`, `u64`, `i64`, `f64` (and their `uint8`... spellings), the name of another
    /// type of the stream, or anything at all for references.
    pub type_name: Arc<str>,
    /// Offset of the member in the record.
    pub offset: usize,
    /// Size of the member in bytes.
    pub size: usize,
    /// The member holds a u64 dependency id (a pointer in the producing process).
    #[serde(default)]
    pub is_reference: bool,
}

impl Udt {
    /// The member called `name`, if any.
    pub fn member(&self, name: &str) -> Option<&UdtMember> {
        self.members.iter().find(|m| &*m.name == name)
    }

    /// Whether records of this type carry a u32 length prefix.
    pub fn is_dynamic(&self) -> bool {
        self.size == 0
    }
}

/// Body of `POST /ingestion/insert_block` (upstream `micromegas_telemetry::block_wire_format::Block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Canonical UUID of the block (random v4 in the Rust sink).
    pub block_id: String,
    /// Canonical UUID of the stream.
    pub stream_id: String,
    /// Canonical UUID of the process.
    pub process_id: String,
    /// RFC 3339 text (`...123456789+00:00` from the Rust sink).
    pub begin_time: String,
    /// Ticks relative to `ProcessInfo.start_ticks`.
    pub begin_ticks: i64,
    /// RFC 3339 text.
    pub end_time: String,
    /// Ticks relative to `ProcessInfo.start_ticks`.
    pub end_ticks: i64,
    /// The two LZ4 frames.
    pub payload: BlockPayload,
    /// Number of objects in earlier blocks of the same stream.
    #[serde(default)]
    pub object_offset: i64,
    /// Number of objects in this block.
    #[serde(default)]
    pub nb_objects: i32,
}

impl Block {
    /// `begin_time` in nanoseconds since the Unix epoch.
    pub fn begin_time_nanos(&self) -> Result<i64, NativeError> {
        parse_rfc3339_nanos(&self.begin_time)
    }

    /// `end_time` in nanoseconds since the Unix epoch.
    pub fn end_time_nanos(&self) -> Result<i64, NativeError> {
        parse_rfc3339_nanos(&self.end_time)
    }
}

/// The payload of a block: two LZ4 frames holding transit records.
///
/// This is also what upstream stores as the object `blobs/{process}/{stream}/{block}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPayload {
    /// LZ4 frame of the dependency records (typed by `StreamInfo.dependencies_metadata`).
    #[serde(with = "byte_buf")]
    pub dependencies: Vec<u8>,
    /// LZ4 frame of the object records (typed by `StreamInfo.objects_metadata`).
    #[serde(with = "byte_buf")]
    pub objects: Vec<u8>,
}

/// Decodes the body of `insert_process`.
pub fn decode_process(body: &[u8]) -> Result<ProcessInfo, NativeError> {
    let mut info: ProcessInfo = from_cbor("ProcessInfo", body)?;
    info.process_id = canonical_uuid("process_id", &info.process_id)?;
    info.parent_process_id = match info.parent_process_id.take() {
        Some(p) => Some(canonical_uuid("parent_process_id", &p)?),
        None => None,
    };
    parse_rfc3339_nanos(&info.start_time)?;
    Ok(info)
}

/// Decodes the body of `insert_stream`, and checks the type descriptions against
/// [`super::limits`].
pub fn decode_stream(body: &[u8]) -> Result<StreamInfo, NativeError> {
    let mut info: StreamInfo = from_cbor("StreamInfo", body)?;
    info.process_id = canonical_uuid("process_id", &info.process_id)?;
    info.stream_id = canonical_uuid("stream_id", &info.stream_id)?;
    check_udts(&info.dependencies_metadata)?;
    check_udts(&info.objects_metadata)?;
    Ok(info)
}

/// Decodes the body of `insert_block`. The payload stays compressed: see
/// [`super::decompress_frame`].
pub fn decode_block(body: &[u8]) -> Result<Block, NativeError> {
    let mut block: Block = from_cbor("Block", body)?;
    block.block_id = canonical_uuid("block_id", &block.block_id)?;
    block.stream_id = canonical_uuid("stream_id", &block.stream_id)?;
    block.process_id = canonical_uuid("process_id", &block.process_id)?;
    parse_rfc3339_nanos(&block.begin_time)?;
    parse_rfc3339_nanos(&block.end_time)?;
    Ok(block)
}

/// Decodes a CBOR `BlockPayload` alone (what upstream stores in object storage).
pub fn decode_block_payload(bytes: &[u8]) -> Result<BlockPayload, NativeError> {
    from_cbor("BlockPayload", bytes)
}

/// Decodes a CBOR array of type descriptions (what upstream stores in
/// `streams.dependencies_metadata` / `objects_metadata`).
pub fn decode_udts(bytes: &[u8]) -> Result<Vec<Udt>, NativeError> {
    let bounded::UdtList(udts) = from_cbor("Vec<Udt>", bytes)?;
    check_udts(&udts)?;
    Ok(udts)
}

/// Encodes a `ProcessInfo` the way the Rust sink does (keys in declaration order).
pub fn encode_process(info: &ProcessInfo) -> Vec<u8> {
    to_cbor(info)
}

/// Encodes a `StreamInfo`.
pub fn encode_stream(info: &StreamInfo) -> Vec<u8> {
    to_cbor(info)
}

/// Encodes a `Block`, with the payload buffers as CBOR byte strings.
pub fn encode_block(block: &Block) -> Vec<u8> {
    to_cbor(block)
}

/// Encodes a `BlockPayload` alone.
pub fn encode_block_payload(payload: &BlockPayload) -> Vec<u8> {
    to_cbor(payload)
}

/// Encodes an array of type descriptions.
pub fn encode_udts(udts: &[Udt]) -> Vec<u8> {
    to_cbor(&udts)
}

fn from_cbor<T: de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, NativeError> {
    use ciborium::de::Error;
    ciborium::de::from_reader(body).map_err(|e| NativeError::Cbor {
        what,
        reason: match e {
            Error::Io(_) => "unexpected end of input".to_owned(),
            Error::Syntax(at) => format!("malformed CBOR at byte {at}"),
            Error::Semantic(Some(at), msg) => format!("{msg} (at byte {at})"),
            Error::Semantic(None, msg) => msg,
            Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
        },
    })
}

fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out)
        .expect("CBOR encoding of strings, integers, maps and bytes into a Vec cannot fail");
    out
}

fn check_udts(udts: &[Udt]) -> Result<(), NativeError> {
    if udts.len() > limits::MAX_UDTS {
        return Err(NativeError::LimitExceeded(format!(
            "{} type descriptions, at most {} are accepted",
            udts.len(),
            limits::MAX_UDTS
        )));
    }
    for udt in udts {
        if udt.members.len() > limits::MAX_MEMBERS {
            return Err(NativeError::LimitExceeded(format!(
                "type {} has {} members, at most {} are accepted",
                excerpt(&udt.name),
                udt.members.len(),
                limits::MAX_MEMBERS
            )));
        }
    }
    Ok(())
}

/// Checks that `text` is a UUID and returns its canonical lowercase hyphenated form.
///
/// Accepts the forms `uuid::Uuid::parse_str` accepts: 36-character hyphenated, 32 hex digits,
/// `{hyphenated}` and `urn:uuid:hyphenated`, in any case.
pub fn canonical_uuid(field: &'static str, text: &str) -> Result<String, NativeError> {
    let invalid = || NativeError::InvalidUuid {
        field,
        value: excerpt(text),
    };
    let (body, wrapped) = if let Some(rest) = text
        .get(..9)
        .filter(|p| p.eq_ignore_ascii_case("urn:uuid:"))
        .and_then(|_| text.get(9..))
    {
        (rest, true)
    } else if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        (inner, true)
    } else {
        (text, false)
    };
    let b = body.as_bytes();
    let mut hex = [0u8; 32];
    let mut n = 0;
    match b.len() {
        36 => {
            for (i, &c) in b.iter().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    if c != b'-' {
                        return Err(invalid());
                    }
                } else {
                    *hex.get_mut(n).ok_or_else(invalid)? = c;
                    n += 1;
                }
            }
        }
        // The simple form is only accepted bare.
        32 if !wrapped => {
            hex.copy_from_slice(b);
            n = 32;
        }
        _ => return Err(invalid()),
    }
    if n != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid());
    }
    let mut out = String::with_capacity(36);
    for (i, c) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(c.to_ascii_lowercase()));
    }
    Ok(out)
}

/// `parent_process_id`: null, `""` or a UUID string.
fn de_opt_uuid_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.filter(|t| !t.is_empty()))
}

/// Serde adapter for the payload buffers: writes a CBOR byte string, reads a byte string or
/// an array of integers.
mod byte_buf {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // `deserialize_byte_buf`, unlike `deserialize_bytes`, takes byte strings of any length
        // (including indefinite-length ones) and routes arrays to `visit_seq`.
        d.deserialize_byte_buf(ByteBufVisitor)
    }

    struct ByteBufVisitor;

    impl<'de> Visitor<'de> for ByteBufVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string or an array of integers 0..=255")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // The length comes from the (untrusted) array header: never reserve it blindly.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
            while let Some(byte) = seq.next_element::<u8>()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}

/// Deserializers that stop at the sanity limits of [`super::limits`] while decoding, so that
/// a body cannot make the decoder build millions of small values (each one many times the
/// size of its CBOR encoding) before the limits are checked.
mod bounded {
    use super::super::limits::{MAX_MEMBERS, MAX_PROPERTIES, MAX_TAGS, MAX_UDTS};
    use super::{Udt, UdtMember};
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    struct Seq<T> {
        max: usize,
        what: &'static str,
        item: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Seq<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {} {}", self.max, self.what)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(64));
            while let Some(item) = seq.next_element()? {
                if out.len() == self.max {
                    return Err(de::Error::custom(format!(
                        "more than {} {}",
                        self.max, self.what
                    )));
                }
                out.push(item);
            }
            Ok(out)
        }
    }

    fn seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(Seq {
            max,
            what,
            item: PhantomData,
        })
    }

    pub fn udts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Udt>, D::Error> {
        seq(d, MAX_UDTS, "type descriptions")
    }

    pub fn members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<UdtMember>, D::Error> {
        seq(d, MAX_MEMBERS, "members")
    }

    pub fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        seq(d, MAX_TAGS, "tags")
    }

    struct Map;

    impl<'de> Visitor<'de> for Map {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a map of at most {MAX_PROPERTIES} text properties")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            let mut n = 0usize;
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                n += 1;
                if n > MAX_PROPERTIES {
                    return Err(de::Error::custom(format!(
                        "more than {MAX_PROPERTIES} properties"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }

    pub fn properties<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        d.deserialize_map(Map)
    }

    /// A top-level array of type descriptions.
    pub struct UdtList(pub Vec<Udt>);

    impl<'de> Deserialize<'de> for UdtList {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            udts(d).map(UdtList)
        }
    }
}
