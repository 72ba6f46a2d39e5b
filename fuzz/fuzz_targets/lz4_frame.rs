//! LZ4 frame decoding with a limit: never more output than the limit, and compression
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarn_proto::native::{NativeError, compress_frame, decompress_frame};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a limit, to reach the limit checks with small inputs too.
    let limit = match data.first() {
        Some(b) if b & 1 == 1 => usize::from(*b) * 64,
        _ => LIMIT,
    };
    match decompress_frame(data, limit) {
        Ok(out) => assert!(out.len() <= limit),
        Err(NativeError::DecompressionLimit { limit: l }) => assert_eq!(l, limit),
        Err(_) => {}
    }
    let frame = compress_frame(data);
    assert_eq!(
        decompress_frame(&frame, data.len()).ok().as_deref(),
        Some(data)
    );
    if !data.is_empty() {
        assert!(matches!(
            decompress_frame(&frame, data.len() - 1),
            Err(NativeError::DecompressionLimit { .. })
        ));
    }
});
