//! Bounded reads, strings and record framing.

use super::super::envelope::Udt;
use super::super::error::NativeError;
use std::borrow::Cow;

/// `len` bytes at `offset`, or a `Truncated` error.
#[inline]
pub(crate) fn bytes_at<'a>(
    buf: &'a [u8],
    offset: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], NativeError> {
    offset
        .checked_add(len)
        .and_then(|end| buf.get(offset..end))
        .ok_or_else(|| NativeError::truncated(what, offset, len, buf.len().saturating_sub(offset)))
}

#[inline]
pub(crate) fn array_at<const N: usize>(
    buf: &[u8],
    offset: usize,
    what: &'static str,
) -> Result<[u8; N], NativeError> {
    let bytes = bytes_at(buf, offset, N, what)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

#[inline]
pub(crate) fn u8_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u8, NativeError> {
    array_at::<1>(buf, offset, what).map(|[b]| b)
}

#[inline]
pub(crate) fn u32_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u32, NativeError> {
    array_at(buf, offset, what).map(u32::from_le_bytes)
}

#[inline]
pub(crate) fn u64_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u64, NativeError> {
    array_at(buf, offset, what).map(u64::from_le_bytes)
}

/// A forward reader over a record payload.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], NativeError> {
        let bytes = bytes_at(self.buf, self.pos, len, what)?;
        self.pos += len;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, NativeError> {
        let v = u8_at(self.buf, self.pos, what)?;
        self.pos += 1;
        Ok(v)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, NativeError> {
        let v = u32_at(self.buf, self.pos, what)?;
        self.pos += 4;
        Ok(v)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, NativeError> {
        let v = u64_at(self.buf, self.pos, what)?;
        self.pos += 8;
        Ok(v)
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, NativeError> {
        self.u64(what).map(|v| v as i64)
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// A `DynString`: `u8 codec, u32 byte length, bytes`.
    pub(crate) fn dyn_string(&mut self, what: &'static str) -> Result<Cow<'a, str>, NativeError> {
        let codec = self.u8(what)?;
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        decode_string(codec, bytes)
    }
}

/// String codecs of `DynString` and `StaticStringDependency`.
pub mod codec {
    /// ANSI (Windows-1252 on Unreal); decoded as UTF-8, lossily, as upstream does.
    pub const ANSI: u8 = 0;
    /// UTF-16, little-endian.
    pub const UTF16_LE: u8 = 1;
    /// UTF-8.
    pub const UTF8: u8 = 2;
}

/// Decodes string bytes with a transit codec byte.
///
/// ANSI and UTF-8 are decoded as UTF-8, replacing invalid sequences with U+FFFD (borrowing the
/// input when it is valid); UTF-16LE must have an even length, and unpaired surrogates become
/// U+FFFD. Any other codec is an error.
pub fn decode_string(codec: u8, bytes: &[u8]) -> Result<Cow<'_, str>, NativeError> {
    match codec {
        codec::ANSI | codec::UTF8 => Ok(String::from_utf8_lossy(bytes)),
        codec::UTF16_LE => {
            if !bytes.len().is_multiple_of(2) {
                return Err(NativeError::OddUtf16Length(bytes.len()));
            }
            let units = bytes
                .as_chunks::<2>()
                .0
                .iter()
                .map(|pair| u16::from_le_bytes(*pair));
            Ok(Cow::Owned(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            ))
        }
        other => Err(NativeError::BadStringCodec(other)),
    }
}

/// One record of a transit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Index of the record's type in the stream's metadata list.
    pub type_index: u8,
    /// The record's bytes: exactly `size` bytes for a fixed-size type, the bytes after the
    /// length prefix for a dynamic one.
    pub payload: &'a [u8],
    /// Offset of the record's type byte in the buffer.
    pub offset: usize,
}

/// Iterator over the records of a decompressed `dependencies` or `objects` buffer.
///
/// Framing: `u8 type_index`, then `size` bytes for a fixed-size type (UDT `size > 0`), or a
/// `u32` length and that many bytes for a dynamic one (`size == 0`). A framing error (unknown
/// type index, truncated record) is yielded once, then the iterator ends: the rest of the
/// buffer cannot be resynchronized.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    udts: &'a [Udt],
    buf: &'a [u8],
    pos: usize,
}

/// Iterates over the records of `buf`, whose type indexes point into `udts`.
pub fn records<'a>(buf: &'a [u8], udts: &'a [Udt]) -> Records<'a> {
    Records { udts, buf, pos: 0 }
}

impl<'a> Records<'a> {
    fn next_record(&mut self) -> Result<Record<'a>, NativeError> {
        let offset = self.pos;
        let type_index = u8_at(self.buf, offset, "record type index")?;
        let udt = self
            .udts
            .get(usize::from(type_index))
            .ok_or(NativeError::BadTypeIndex {
                index: type_index,
                count: self.udts.len(),
                offset,
            })?;
        let (start, len) = if udt.size == 0 {
            let len = u32_at(self.buf, offset + 1, "record length")? as usize;
            (offset + 5, len)
        } else {
            (offset + 1, udt.size)
        };
        let payload = bytes_at(self.buf, start, len, "record")?;
        self.pos = start + len;
        Ok(Record {
            type_index,
            payload,
            offset,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, NativeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let record = self.next_record();
        if record.is_err() {
            // Stop: nothing after a framing error can be trusted.
            self.pos = self.buf.len();
        }
        Some(record)
    }
}
