//! CBOR envelope decoding: any input decodes or fails cleanly, and whatever decodes
//! re-encodes to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarn_proto::native::*;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode_process(data) {
        assert_eq!(decode_process(&encode_process(&p)).ok(), Some(p));
    }
    if let Ok(s) = decode_stream(data) {
        assert!(s.objects_metadata.len() <= limits::MAX_UDTS);
        assert_eq!(decode_stream(&encode_stream(&s)).ok(), Some(s));
    }
    if let Ok(b) = decode_block(data) {
        // Payload buffers come out of the input: never larger than it.
        assert!(b.payload.dependencies.len() + b.payload.objects.len() <= data.len());
        assert!(b.begin_time_nanos().is_ok() && b.end_time_nanos().is_ok());
        assert_eq!(decode_block(&encode_block(&b)).ok(), Some(b));
    }
    if let Ok(p) = decode_block_payload(data) {
        assert_eq!(
            decode_block_payload(&encode_block_payload(&p)).ok(),
            Some(p)
        );
    }
    if let Ok(udts) = decode_udts(data) {
        assert_eq!(decode_udts(&encode_udts(&udts)).ok(), Some(udts));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(nanos) = time::parse_rfc3339_nanos(text)
    {
        assert_eq!(
            time::parse_rfc3339_nanos(&time::format_rfc3339_nanos(nanos)).ok(),
            Some(nanos)
        );
    }
});
