//! OTLP/HTTP bodies through what the route does before the WAL: the declared content type
//! and encoding, decompression within the size limit, protobuf or JSON decoding of the
//! signal's request, normalization into Arrow rows. Any input ends in rows or in a 400, 413
//! or 415 refusal.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use tarn_gateway::otlp::http::exercise;
use tarn_gateway::otlp::{Logs, Metrics, Traces};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the headers and the signal; the rest is the body.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let content_type = if selector & 1 == 0 {
        "application/x-protobuf"
    } else {
        "application/json"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let encoding = match (selector >> 1) & 3 {
        0 => None,
        1 => Some("gzip"),
        2 => Some("zstd"),
        _ => Some("deflate"),
    };
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    let body = Bytes::copy_from_slice(body);
    let limit = 1 << 20;
    let outcome = match (selector >> 3) % 3 {
        0 => exercise::<Traces>(&headers, &body, limit).map(|_| ()),
        1 => exercise::<Logs>(&headers, &body, limit).map(|_| ()),
        _ => exercise::<Metrics>(&headers, &body, limit).map(|_| ()),
    };
    if let Err(refusal) = outcome {
        assert!(matches!(refusal.status().as_u16(), 400 | 413 | 415));
    }
});
