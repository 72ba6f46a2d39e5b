//! The rows of a WAL record as replay reads them (format 3: constant columns stored once):
//! any bytes give a batch or an error, never a panic; what decodes encodes and decodes
//! again to the same rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarn_lakehouse::wal::{VERSION, decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = decode_batch(data, VERSION) else {
        return;
    };
    let Ok(encoded) = encode_batch(&batch) else {
        return;
    };
    let again = decode_batch(&encoded, VERSION).expect("rows just encoded decode");
    assert_eq!(again.num_rows(), batch.num_rows());
    assert_eq!(again.schema(), batch.schema());
});
