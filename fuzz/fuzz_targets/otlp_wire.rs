//! OTLP traces and logs read straight from protobuf bytes (`tarn_gateway::otlp::wire`)
//! against prost: for any input both refuse it, or both give the same rows, processes,
//! streams and rejections.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tarn_gateway::otlp::{Export, Logs, Normalized, Traces};

/// What a normalization produced, in comparable form.
fn parts(mut normalized: Normalized) -> impl PartialEq + std::fmt::Debug {
    let batches: Vec<_> = normalized
        .batches
        .drain(..)
        .map(|(table, batch)| (table, batch.expect("rows of a known table")))
        .collect();
    (
        batches,
        normalized.process_rows.finish().expect("processes rows"),
        normalized.stream_rows.finish().expect("streams rows"),
        normalized.rejections,
    )
}

/// Both ways of reading `data` as a request of `E`: the same outcome, or a panic.
fn compare<E: Export>(data: &[u8]) {
    let now = 1_700_000_000_000_000_000;
    let direct = E::normalize_protobuf(data, now);
    let via_prost = E::Request::decode(data).map(|request| E::normalize(&request, now));
    match (direct, via_prost) {
        (Ok(direct), Ok(via_prost)) => assert_eq!(parts(direct), parts(via_prost)),
        (Err(_), Err(_)) => {}
        (direct, via_prost) => panic!(
            "direct read {:?}, prost {:?}",
            direct.map(|n| n.rejections),
            via_prost.map(|n| n.rejections)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the signal; the rest is the body.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        compare::<Traces>(body);
    } else {
        compare::<Logs>(body);
    }
});
