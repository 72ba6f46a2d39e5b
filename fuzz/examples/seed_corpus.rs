//! Writes seed inputs for the fuzz targets into `fuzz/corpus/<target>/`, from the golden
//! captures in `shared/testdata/micromegas` and from the block writers.
//!
//!     cargo run --example seed_corpus

use std::path::{Path, PathBuf};
use tarn_proto::native::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("creating the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("writing a seed");
}

fn transit_seed(mode: u8, deps: &[u8], objects: &[u8]) -> Vec<u8> {
    let mut seed = vec![mode];
    let n = u16::try_from(deps.len()).expect("a small dependency buffer");
    seed.extend_from_slice(&n.to_le_bytes());
    seed.extend_from_slice(deps);
    seed.extend_from_slice(objects);
    seed
}

/// Mode 4: the stream's own type descriptions, as CBOR, before the buffers.
fn transit_seed_with_udts(stream: &StreamInfo, deps: &[u8], objects: &[u8]) -> Vec<u8> {
    let mut seed = vec![4];
    for udts in [&stream.objects_metadata, &stream.dependencies_metadata] {
        let cbor = encode_udts(udts);
        let n = u16::try_from(cbor.len()).expect("small type descriptions");
        seed.extend_from_slice(&n.to_le_bytes());
        seed.extend_from_slice(&cbor);
    }
    let n = u16::try_from(deps.len()).expect("a small dependency buffer");
    seed.extend_from_slice(&n.to_le_bytes());
    seed.extend_from_slice(deps);
    seed.extend_from_slice(objects);
    seed
}

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let golden = fuzz.join("../../shared/testdata/micromegas");
    let corpus = fuzz.join("corpus");
    let mut n = 0;
    for version in ["sink-0.33", "sink-0.28"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(golden.join(version))
            .expect("reading the golden captures")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cbor"))
            .collect();
        files.sort();
        let streams: Vec<StreamInfo> = files
            .iter()
            .filter_map(|p| decode_stream(&std::fs::read(p).ok()?).ok())
            .collect();
        for path in files {
            let body = std::fs::read(&path).expect("reading a capture");
            let name = format!(
                "{version}-{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            write(&corpus.join("envelopes"), &name, &body);
            let Ok(block) = decode_block(&body) else {
                continue;
            };
            write(
                &corpus.join("lz4_frame"),
                &format!("{name}-deps"),
                &block.payload.dependencies,
            );
            write(
                &corpus.join("lz4_frame"),
                &format!("{name}-objs"),
                &block.payload.objects,
            );
            let deps = decompress_frame(&block.payload.dependencies, 1 << 24).expect("deps");
            let objects = decompress_frame(&block.payload.objects, 1 << 24).expect("objects");
            if let Some(stream) = streams.iter().find(|s| s.stream_id == block.stream_id) {
                write(
                    &corpus.join("transit"),
                    &format!("{name}-mode4"),
                    &transit_seed_with_udts(stream, &deps, &objects),
                );
            }
            for mode in 0..3 {
                write(
                    &corpus.join("transit"),
                    &format!("{name}-mode{mode}"),
                    &transit_seed(mode, &deps, &objects),
                );
            }
            n += 1;
        }
    }
    // Writer output for every kind of record.
    let desc = LogDesc {
        key: 1,
        level: 4,
        fmt_str: "a {x}",
        target: "t",
        module_path: "m",
        file: "f",
        line: 1,
    };
    let mut log = LogBlockWriter::new();
    let props = log.property_set(&[("x", "1")]);
    log.log_static(&desc, 1);
    log.log_string(&desc, 2, "msg");
    log.log_template(&desc, props, 3);
    log.log_tagged_string(&desc, props, 4, "m");
    log.log_interop(5, 4, "t", "m");
    log.log_interop_tagged(6, 4, "t", props, "m");
    let b = log.finish();
    write(
        &corpus.join("transit"),
        "writer-log",
        &transit_seed(0, &b.dependencies, &b.objects),
    );
    let span = SpanDesc {
        key: 2,
        name: "s",
        target: "t",
        module_path: "m",
        file: "f",
        line: 1,
        lod: 1,
    };
    let loc = SpanLocation {
        key: 3,
        target: "t",
        module_path: "m",
        file: "f",
        line: 1,
        lod: 1,
    };
    let ids = AsyncIds {
        span_id: 1,
        parent_span_id: 0,
        depth: 0,
    };
    let mut thread = ThreadBlockWriter::new();
    let props = thread.property_set(&[("k", "v")]);
    thread.begin_thread_span(&span, 1);
    thread.end_thread_span_tagged(&span, props, 2);
    thread.begin_thread_named_span(&loc, "n", 3);
    thread.end_thread_named_span(&loc, "n", 4);
    thread.begin_async_span(&span, &ids, 5);
    thread.end_async_span_tagged(&span, props, &ids, 6);
    thread.begin_async_named_span(&loc, "n", &ids, 7);
    thread.end_async_named_span(&loc, "n", &ids, 8);
    let b = thread.finish();
    write(
        &corpus.join("transit"),
        "writer-thread",
        &transit_seed(2, &b.dependencies, &b.objects),
    );
    let mut image = ImageBlockWriter::new();
    image.image(1, "n", "png", b"data");
    let b = image.finish();
    write(
        &corpus.join("transit"),
        "writer-image",
        &transit_seed(3, &b.dependencies, &b.objects),
    );
    println!("seeded {n} golden blocks into {}", corpus.display());
}
