//! The error type of the native codec.

use thiserror::Error;

/// Everything that can go wrong while decoding (or, rarely, encoding) the native protocol.
///
/// Every variant describes malformed or unsupported input: none of them is a bug of the
/// caller, and none of them is retryable. The gateway maps all of them to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NativeError {
    /// The body is not valid CBOR for the expected envelope.
    #[error("invalid CBOR {what}: {reason}")]
    Cbor {
        /// Which envelope was being decoded (`ProcessInfo`, `StreamInfo`, `Block`, `Vec<Udt>`).
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// Encoding an envelope as CBOR failed (it cannot, with the types of this crate).
    #[error("could not encode {what} as CBOR: {reason}")]
    CborEncode {
        /// Which envelope was being encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// A field that must hold a UUID holds something else.
    #[error("field `{field}` is not a UUID: {value:?}")]
    InvalidUuid {
        /// The envelope field.
        field: &'static str,
        /// The offending text (truncated to 64 characters).
        value: String,
    },
    /// A time string is not RFC 3339, or is outside the range of i64 nanoseconds.
    #[error("invalid RFC 3339 time {value:?}: {reason}")]
    InvalidTime {
        /// The offending text (truncated to 64 characters).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The input exceeds a sanity limit (see [`crate::native::limits`]).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The LZ4 frame is malformed or uses a feature that is not supported.
    #[error("invalid LZ4 frame: {0}")]
    Lz4(String),
    /// Decompression would produce more bytes than allowed.
    #[error("LZ4 frame decompresses to more than the limit of {limit} bytes")]
    DecompressionLimit {
        /// The limit that was given to the decoder.
        limit: usize,
    },
    /// A read went past the end of a buffer.
    #[error("truncated {what} at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset of the read in its buffer.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes available from `offset`.
        have: usize,
    },
    /// A record names a type index that the stream does not describe.
    #[error(
        "record at offset {offset} has type index {index}, but the stream describes {count} types"
    )]
    BadTypeIndex {
        /// The type index byte.
        index: u8,
        /// Number of types in the stream's metadata list.
        count: usize,
        /// Offset of the record header in the buffer.
        offset: usize,
    },
    /// A reference names a dependency that the block does not hold.
    #[error("dependency {id:#x} referenced by {context} is not in the block")]
    MissingDependency {
        /// The dependency id (a pointer value in the producing process).
        id: u64,
        /// The member or event that holds the reference.
        context: String,
    },
    /// Two different dependencies share one id.
    #[error("dependency id {id:#x} is defined twice with different contents")]
    DuplicateDependency {
        /// The id.
        id: u64,
    },
    /// A dependency resolved to the wrong kind of value (e.g. a string where a property set
    /// was expected).
    #[error("dependency {id:#x} referenced by {context} is not a {expected}")]
    DependencyType {
        /// The dependency id.
        id: u64,
        /// The member or event that holds the reference.
        context: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A type description is inconsistent (member outside the type, wrong size for its type,
    /// reference smaller than 8 bytes, reference type without an `id` member...).
    #[error("bad type description for {udt}: {reason}")]
    BadUdt {
        /// The type name.
        udt: String,
        /// What is wrong.
        reason: String,
    },
    /// A member's type is neither a primitive nor a type of the stream.
    #[error("member `{member}` of {udt} has unknown type {type_name:?}")]
    UnknownMemberType {
        /// The type name of the containing UDT.
        udt: String,
        /// The member name.
        member: String,
        /// The unknown type name.
        type_name: String,
    },
    /// A type that the decoder needs is not described by the stream.
    #[error("the stream does not describe the type {0}")]
    MissingUdt(&'static str),
    /// A type does not have a member that the decoder needs.
    #[error("{udt} has no usable member `{member}`")]
    MissingMember {
        /// The type name.
        udt: String,
        /// The member name.
        member: &'static str,
    },
    /// Nested types are nested deeper than the decoder allows (or recursive).
    #[error("types nested deeper than {0} levels")]
    NestingTooDeep(usize),
    /// A `DynString` has an unknown codec byte.
    #[error("unknown string codec {0} (expected 0 = ANSI, 1 = UTF-16LE, 2 = UTF-8)")]
    BadStringCodec(u8),
    /// A UTF-16 string has an odd number of bytes.
    #[error("UTF-16 string has an odd length of {0} bytes")]
    OddUtf16Length(usize),
    /// A property-set record is malformed.
    #[error("invalid property set {id:#x}: {reason}")]
    BadPropertySet {
        /// The set id.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A value needed by the caller has another type than expected.
    #[error("member `{member}` of {udt} is {found}, expected {expected}")]
    TypeMismatch {
        /// The type name.
        udt: String,
        /// The member name.
        member: String,
        /// What the caller expected.
        expected: &'static str,
        /// What the member holds.
        found: &'static str,
    },
}

impl NativeError {
    pub(crate) fn truncated(what: &'static str, offset: usize, need: usize, have: usize) -> Self {
        Self::Truncated {
            what,
            offset,
            need,
            have,
        }
    }

    pub(crate) fn bad_udt(udt: &str, reason: impl Into<String>) -> Self {
        Self::BadUdt {
            udt: udt.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Shortens user-provided text for error messages.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}
