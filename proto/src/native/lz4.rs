//! LZ4 frames (the format of `BlockPayload.dependencies` and `.objects`).
//!
//! Producers write one LZ4 frame per buffer (the Rust sink with the C `lz4` crate at level 10,
//! Unreal with `LZ4F_compressFrame`); an empty buffer is still a frame. The frame format
//! (<https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md>), little-endian:
//!
//! ```text
//! magic    u32   0x184D2204
//! FLG      u8    version (bits 7-6, must be 01), block independence (5), block checksums (4),
//!                content size present (3), content checksum (2), reserved (1), dictionary id (0)
//! BD       u8    block max size (bits 6-4: 4 = 64 KiB, 5 = 256 KiB, 6 = 1 MiB, 7 = 4 MiB)
//! [size]   u64   content size, when FLG bit 3
//! [dict]   u32   dictionary id, when FLG bit 0 (not supported, as in upstream)
//! HC       u8    (xxh32(FLG..last descriptor byte) >> 8) & 0xFF
//! blocks   u32 header (bit 31 = stored uncompressed, bits 0-30 = size; 0 ends the frame),
//!          data, [u32 xxh32 of the data, when FLG bit 4]
//! [check]  u32   xxh32 of the whole content, when FLG bit 2
//! ```
//!
//! Blocks use the LZ4 block format; in linked mode (FLG bit 5 clear, the C default) a block
//! may copy from the 64 KiB decoded before it. Skippable frames (magic 0x184D2A50..=5F) are
//! skipped, and further frames are decoded and appended, as `lz4 -d` does.
//!
//! The decoder is written here rather than taken from `lz4_flex::frame::FrameDecoder`, whose
//! buffers are sized from the (untrusted) header: this one decodes straight into the output,
//! which never grows past the caller's limit, so a hostile frame costs at most `limit` bytes
//! of memory. Block decoding is `lz4_flex`'s (safe) block decoder, and compression is
//! `lz4_flex::frame::FrameEncoder`.

use super::error::NativeError;
use lz4_flex::block::{DecompressError, decompress_into, decompress_into_with_dict};
use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
use std::hash::Hasher;
use std::io::Write;
use twox_hash::XxHash32;

const MAGIC: u32 = 0x184D_2204;
const LEGACY_MAGIC: u32 = 0x184C_2102;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const WINDOW: usize = 64 * 1024;

/// Decompresses LZ4 frame data, failing with [`NativeError::DecompressionLimit`] as soon as
/// the output would exceed `limit` bytes.
///
/// Memory use is bounded by the output actually produced, plus at most one block (and never
/// more than `limit` in total), whatever the headers claim. Checksums, when present, are
/// verified. An empty input decodes to an empty output.
pub fn decompress_frame(input: &[u8], limit: usize) -> Result<Vec<u8>, NativeError> {
    let mut out = Vec::new();
    // `out[..filled]` is the decoded content; `out` may be longer (zeroed scratch space for
    // the block being decoded), so that the space is zeroed only once.
    let mut filled = 0;
    let mut reader = Reader { input, pos: 0 };
    let mut frames = 0usize;
    while reader.pos < input.len() {
        let magic = reader.u32("frame magic")?;
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            let size = reader.u32("skippable frame size")?;
            reader.take(size as usize, "skippable frame")?;
            continue;
        }
        if magic == LEGACY_MAGIC {
            return Err(lz4_err("legacy LZ4 frames are not supported"));
        }
        if magic != MAGIC {
            return Err(lz4_err(if frames == 0 {
                format!("bad magic number {magic:#010x}")
            } else {
                format!("bad magic number {magic:#010x} after frame {frames}")
            }));
        }
        frames += 1;
        decode_frame(&mut reader, &mut out, &mut filled, limit)?;
    }
    out.truncate(filled);
    Ok(out)
}

fn decode_frame(
    reader: &mut Reader<'_>,
    out: &mut Vec<u8>,
    filled: &mut usize,
    limit: usize,
) -> Result<(), NativeError> {
    let descriptor_start = reader.pos;
    let flg = reader.u8("frame descriptor")?;
    let bd = reader.u8("frame descriptor")?;
    if flg >> 6 != 0b01 {
        return Err(lz4_err(format!("unsupported frame version {}", flg >> 6)));
    }
    if flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
        return Err(lz4_err("reserved bits set in the frame descriptor"));
    }
    let independent = flg & 0b10_0000 != 0;
    let block_checksums = flg & 0b1_0000 != 0;
    let has_content_size = flg & 0b1000 != 0;
    let content_checksum = flg & 0b100 != 0;
    if flg & 1 != 0 {
        return Err(lz4_err("dictionaries are not supported"));
    }
    let max_block = match (bd >> 4) & 0b111 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        other => return Err(lz4_err(format!("invalid block maximum size code {other}"))),
    };
    let content_size = if has_content_size {
        Some(reader.u64("content size")?)
    } else {
        None
    };
    let descriptor = reader
        .input
        .get(descriptor_start..reader.pos)
        .ok_or_else(|| lz4_err("frame descriptor out of bounds"))?;
    let expected_hc = ((XxHash32::oneshot(0, descriptor) >> 8) & 0xFF) as u8;
    let hc = reader.u8("header checksum")?;
    if hc != expected_hc {
        return Err(lz4_err("frame header checksum mismatch"));
    }
    let frame_start = *filled;
    if let Some(size) = content_size {
        let end = u64::try_from(frame_start)
            .unwrap_or(u64::MAX)
            .saturating_add(size);
        if end > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Err(NativeError::DecompressionLimit { limit });
        }
    }
    loop {
        let header = reader.u32("block header")?;
        if header == 0 {
            break;
        }
        let stored = header & 0x8000_0000 != 0;
        let size = (header & 0x7FFF_FFFF) as usize;
        if size > max_block {
            return Err(lz4_err(format!(
                "block of {size} bytes exceeds the frame's maximum of {max_block}"
            )));
        }
        let data = reader.take(size, "block data")?;
        if block_checksums {
            let expected = reader.u32("block checksum")?;
            if XxHash32::oneshot(0, data) != expected {
                return Err(lz4_err("block checksum mismatch"));
            }
        }
        let room = limit.saturating_sub(*filled);
        if stored {
            if size > room {
                return Err(NativeError::DecompressionLimit { limit });
            }
            // Copied into the scratch space (never truncated away, so that alternating
            // stored and compressed blocks cannot make the output be zeroed again and again).
            let end = *filled + size;
            if out.len() < end {
                out.resize(end, 0);
            }
            out.get_mut(*filled..end)
                .ok_or_else(|| lz4_err("output window out of bounds"))?
                .copy_from_slice(data);
            *filled = end;
            continue;
        }
        // Room for one block, capped by the limit. When the cap binds and the block does not
        // fit, the decoder reports `OutputTooSmall`, which means the limit was hit.
        let capped = room < max_block;
        let want = filled.saturating_add(max_block.min(room));
        if out.len() < want {
            out.resize(want, 0);
        }
        let (before, after) = out.split_at_mut(*filled);
        let dict = if independent {
            &[][..]
        } else {
            // Linked blocks may copy from the last 64 KiB of this frame's output.
            let from = before.len().saturating_sub(WINDOW).max(frame_start);
            before.get(from..).unwrap_or_default()
        };
        let target = after
            .get_mut(..want - *filled)
            .ok_or_else(|| lz4_err("output window out of bounds"))?;
        let decoded = if dict.is_empty() {
            decompress_into(data, target)
        } else {
            decompress_into_with_dict(data, target, dict)
        };
        let written = match decoded {
            Ok(n) => n,
            Err(DecompressError::OutputTooSmall { .. }) if capped => {
                return Err(NativeError::DecompressionLimit { limit });
            }
            Err(e) => return Err(lz4_err(format!("corrupt block: {e}"))),
        };
        *filled += written;
    }
    let content = out
        .get(frame_start..*filled)
        .ok_or_else(|| lz4_err("output out of bounds"))?;
    if let Some(size) = content_size
        && content.len() as u64 != size
    {
        return Err(lz4_err(format!(
            "content size is {} bytes, the header says {size}",
            content.len()
        )));
    }
    if content_checksum {
        let expected = reader.u32("content checksum")?;
        let mut hasher = XxHash32::with_seed(0);
        hasher.write(content);
        if hasher.finish_32() != expected {
            return Err(lz4_err("content checksum mismatch"));
        }
    }
    Ok(())
}

/// Compresses `input` into one LZ4 frame (64 KiB linked blocks, content checksum), readable by
/// upstream's `lz4::Decoder` and by [`decompress_frame`].
pub fn compress_frame(input: &[u8]) -> Vec<u8> {
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Linked)
        .content_checksum(true);
    let mut encoder = FrameEncoder::with_frame_info(info, Vec::with_capacity(input.len() / 2 + 64));
    encoder
        .write_all(input)
        .expect("the LZ4 frame encoder writes into a Vec, which cannot fail");
    encoder
        .finish()
        .expect("the LZ4 frame encoder writes into a Vec, which cannot fail")
}

fn lz4_err(reason: impl Into<String>) -> NativeError {
    NativeError::Lz4(reason.into())
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], NativeError> {
        let end = self.pos.checked_add(len);
        match end.and_then(|end| self.input.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += len;
                Ok(bytes)
            }
            None => Err(NativeError::truncated(
                what,
                self.pos,
                len,
                self.input.len().saturating_sub(self.pos),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], NativeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, NativeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, NativeError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, NativeError> {
        self.array(what).map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ ((i / 1000) as u8))
            .collect()
    }

    #[test]
    fn round_trips() {
        for len in [0, 1, 100, 64 * 1024, 64 * 1024 + 1, 300_000] {
            let data = sample(len);
            let frame = compress_frame(&data);
            assert_eq!(decompress_frame(&frame, len).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn decodes_every_block_mode_and_option() {
        let data = sample(700_000);
        for mode in [BlockMode::Independent, BlockMode::Linked] {
            for size in [BlockSize::Max64KB, BlockSize::Max256KB, BlockSize::Max4MB] {
                for checks in [false, true] {
                    let info = FrameInfo::new()
                        .block_mode(mode)
                        .block_size(size)
                        .block_checksums(checks)
                        .content_checksum(checks)
                        .content_size(checks.then_some(data.len() as u64));
                    let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
                    enc.write_all(&data).unwrap();
                    let frame = enc.finish().unwrap();
                    assert_eq!(decompress_frame(&frame, data.len()).unwrap(), data);
                }
            }
        }
    }

    #[test]
    fn empty_input_and_concatenated_frames() {
        assert!(decompress_frame(&[], 0).unwrap().is_empty());
        let mut two = compress_frame(b"hello ");
        // a skippable frame between the two
        two.extend_from_slice(&0x184D_2A5Au32.to_le_bytes());
        two.extend_from_slice(&3u32.to_le_bytes());
        two.extend_from_slice(b"xyz");
        two.extend_from_slice(&compress_frame(b"world"));
        assert_eq!(decompress_frame(&two, 100).unwrap(), b"hello world");
    }

    #[test]
    fn enforces_the_limit() {
        let bomb = compress_frame(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(
            decompress_frame(&bomb, 1024 * 1024),
            Err(NativeError::DecompressionLimit { limit: 1024 * 1024 })
        );
        assert_eq!(
            decompress_frame(&bomb, 10 * 1024 * 1024).unwrap().len(),
            10 * 1024 * 1024
        );
        let small = compress_frame(b"0123456789");
        assert!(matches!(
            decompress_frame(&small, 9),
            Err(NativeError::DecompressionLimit { limit: 9 })
        ));
        assert_eq!(decompress_frame(&small, 10).unwrap(), b"0123456789");
    }

    #[test]
    fn rejects_corrupt_frames() {
        let data = sample(200_000);
        let frame = compress_frame(&data);
        for cut in [1, 4, 5, 6, 7, 10, frame.len() / 2, frame.len() - 1] {
            assert!(
                decompress_frame(&frame[..cut], usize::MAX).is_err(),
                "cut {cut}"
            );
        }
        for at in [0, 4, 5, 6, 7, 8, 20, frame.len() / 2, frame.len() - 2] {
            let mut bad = frame.clone();
            bad[at] ^= 0x55;
            assert!(decompress_frame(&bad, usize::MAX).is_err(), "flip {at}");
        }
        assert!(decompress_frame(b"garbage!", usize::MAX).is_err());
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(decompress_frame(&trailing, usize::MAX).is_err());
    }
}
