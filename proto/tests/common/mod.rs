//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use tarn_proto::native::*;

/// The captured request bodies of one sink version, in arrival order.
pub struct Capture {
    pub process: ProcessInfo,
    pub streams: HashMap<String, StreamInfo>,
    pub blocks: Vec<Block>,
    pub bodies: Vec<(String, Vec<u8>)>,
}

pub fn golden_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/micromegas")
        .join(version)
}

pub fn load(version: &str) -> Capture {
    let dir = golden_dir(version);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cbor"))
        .collect();
    files.sort();
    let mut process = None;
    let mut streams = HashMap::new();
    let mut blocks = Vec::new();
    let mut bodies = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&path).unwrap();
        if name.contains("insert_process") {
            process = Some(decode_process(&body).unwrap());
        } else if name.contains("insert_stream") {
            let stream = decode_stream(&body).unwrap();
            streams.insert(stream.stream_id.clone(), stream);
        } else if name.contains("insert_block") {
            blocks.push(decode_block(&body).unwrap());
        } else {
            panic!("unexpected file {name}");
        }
        bodies.push((name, body));
    }
    Capture {
        process: process.expect("no insert_process body"),
        streams,
        blocks,
        bodies,
    }
}

/// A deterministic pseudo-random generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
