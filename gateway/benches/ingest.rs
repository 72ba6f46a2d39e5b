//! Decode + normalize throughput of the ingest paths, and the sort that starts a commit, in
//! records (events) per second:
//! `cargo bench -p tarn-gateway --bench ingest`.
//!
//! - `otlp/<signal>`: requests of the `uniform` shape of `tarn load` (512 records, 10 string
//!   attributes of 20 characters each). `decode/<encoding>` is what the OTLP/HTTP route does
//!   with a body (prost decode, or serde_json for OTLP/JSON); `normalize` is `Export::normalize`
//!   into Arrow batches; `decode+normalize/<encoding>` both; `route/protobuf` what the
//!   routes run on a protobuf body (`Export::normalize_protobuf`: traces and logs are read
//!   straight from the bytes, metrics through prost).
//! - `native/<stream>`: blocks of 10,000 events of `tarn load --protocol native` (logs with and
//!   without format arguments, integer and float metrics, nested thread span pairs).
//!   `decode_block` is the CBOR envelope; `normalize` is what the native route does next
//!   (LZ4, transit records, span pairing, Arrow batches); `decode+normalize` both.
//!
//! - `commit/spans`: the first step of a Delta commit, on 128 normalized trace requests
//!   (65,536 rows, all of one date, each request with the same times, so the sort
//!   interleaves them all, as under `tarn load`): `sorted_parts` is what commits run
//!   (concatenate the fresh batches, sort by time, gather every column in that order);
//!   `interleave` gathers from the fresh batches without concatenating (arrow's
//!   `interleave`), the alternative it was measured against.
//! - `commit/<table>/parquet`: the next step, one sorted part written as a Parquet file with
//!   the commit's writer settings (`current`) and with other compressions; for `spans` the
//!   part above, for `log` and `metrics` thirteen native blocks (130,000 rows). The size of
//!   each file is printed. `stats_json` is the Delta statistics the commit adds beside the
//!   file, `string_bounds_by_comparing` what their string columns cost before they were read
//!   off the file's metadata.
//!
//! None includes the WAL, the catalog or the HTTP server: see `tarn load` for those.

use std::hint::black_box;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{self, SortColumn, SortOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use prost::Message;
use tarn_gateway::load::native::{BlockKind, NativeRun, TSC_FREQUENCY};
use tarn_gateway::load::shapes::{self, LoadSignal, Request, Run, Shape};
use tarn_gateway::native::normalize::{AsyncState, Clock, Context, ThreadState, normalize_block};
use tarn_gateway::otlp::{Export, Logs, Metrics, Normalized, Traces};
use tarn_lakehouse::catalog::ProcessRecord;
use tarn_lakehouse::rows::Identity;
use tarn_lakehouse::schema::{DATE_COLUMN, TableKind};
use tarn_lakehouse::table::{sorted_parts, stats_json, write_parquet, writer_properties};
use tarn_proto::native::{
    Block, StreamDecoder, decode_block, decode_process, decode_stream, encode_block,
    encode_process, encode_stream,
};

/// The gateway's allocator, so allocation costs are the ones `tarn serve` pays (run with
/// `MIMALLOC_PURGE_DELAY=-1`, as `tarn` sets it at start-up).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records per OTLP request and string attributes per record (the uniform shape's defaults).
const RECORDS: usize = 512;
const ATTRIBUTES: usize = 10;
/// Events per native block.
const EVENTS: usize = 10_000;
/// A fixed "now" (2027-01-15), so runs compare.
const NOW: i64 = 1_800_000_000_000_000_000;

/// `tarn load`'s uniform shape with the defaults above and a fixed "now".
fn uniform_run(signal: LoadSignal) -> Run {
    Run {
        shape: Shape::Uniform,
        signal,
        seed: 1,
        batch: RECORDS,
        attributes: ATTRIBUTES,
        days: 3.0,
        now: NOW as u64,
        run_id: "0123456789abcdef0123456789abcdef".to_owned(),
    }
}

fn uniform(signal: LoadSignal) -> Request {
    shapes::request(&uniform_run(signal), 0, RECORDS)
}

/// Rows of a normalized request, to check the benchmark measures what it says.
fn rows(normalized: &Normalized) -> usize {
    normalized
        .batches
        .iter()
        .map(|(_, batch)| batch.as_ref().map_or(0, |batch| batch.num_rows()))
        .sum()
}

fn otlp_signal<E: Export>(c: &mut Criterion, name: &str, request: &E::Request)
where
    E::Request: serde::Serialize + PartialEq,
{
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(request).expect("OTLP/JSON encodes");
    // The JSON body must decode as the route decodes it, to the same request.
    let from_json: E::Request = serde_json::from_slice(&json).expect("OTLP/JSON decodes");
    assert!(from_json == *request, "OTLP/JSON round trip");
    assert_eq!(rows(&E::normalize(request, NOW)), RECORDS, "{name}");
    println!(
        "otlp/{name}: {RECORDS} records, protobuf {} bytes, JSON {} bytes",
        protobuf.len(),
        json.len()
    );

    let mut group = c.benchmark_group(format!("otlp/{name}"));
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("decode/protobuf", |b| {
        b.iter(|| E::Request::decode(black_box(protobuf.as_slice())).expect("decodes"));
    });
    group.bench_function("decode/json", |b| {
        b.iter(|| serde_json::from_slice::<E::Request>(black_box(&json)).expect("decodes"));
    });
    group.bench_function("normalize", |b| {
        b.iter(|| E::normalize(black_box(request), NOW));
    });
    group.bench_function("decode+normalize/protobuf", |b| {
        b.iter(|| {
            let request = E::Request::decode(black_box(protobuf.as_slice())).expect("decodes");
            E::normalize(&request, NOW)
        });
    });
    // What the routes run on a protobuf body: read straight from the bytes for traces and
    // logs, prost's decode and `normalize` for metrics.
    group.bench_function("route/protobuf", |b| {
        b.iter(|| E::normalize_protobuf(black_box(protobuf.as_slice()), NOW).expect("reads"));
    });
    group.bench_function("decode+normalize/json", |b| {
        b.iter(|| {
            let request = serde_json::from_slice::<E::Request>(black_box(&json)).expect("decodes");
            E::normalize(&request, NOW)
        });
    });
    group.finish();
}

fn otlp(c: &mut Criterion) {
    let Request::Traces(traces) = uniform(LoadSignal::Traces) else {
        panic!("traces expected");
    };
    otlp_signal::<Traces>(c, "traces", &traces);
    let Request::Logs(logs) = uniform(LoadSignal::Logs) else {
        panic!("logs expected");
    };
    otlp_signal::<Logs>(c, "logs", &logs);
    let Request::Metrics(metrics) = uniform(LoadSignal::Metrics) else {
        panic!("metrics expected");
    };
    otlp_signal::<Metrics>(c, "metrics", &metrics);
}

/// The process as the native route keeps it (after `insert_process`).
fn process_record(run: &NativeRun) -> ProcessRecord {
    let info = decode_process(&encode_process(&run.process_info())).expect("process decodes");
    ProcessRecord {
        process_id: info.process_id.clone(),
        exe: Some(info.exe.clone()),
        username: Some(info.username.clone()),
        computer: Some(info.computer.clone()),
        tsc_frequency: TSC_FREQUENCY,
        start_time: info.start_time_nanos().expect("start time"),
        start_ticks: info.start_ticks,
        service_name: info.properties.get("service.name").cloned(),
        service_instance_id: info.properties.get("service.instance.id").cloned(),
        properties: info.properties,
        source: "native".to_owned(),
        ..Default::default()
    }
}

/// Decodes and normalizes a block as the native route does, with fresh span states.
fn normalize(
    decoder: &StreamDecoder,
    block: &Block,
    process: &ProcessRecord,
    identity: &Identity,
    thread: &[(String, String)],
) -> Normalized {
    let context = Context {
        identity,
        clock: Clock::new(process, block),
        insert_time_micros: NOW / 1_000,
        thread: thread.to_vec(),
    };
    let mut thread_state = ThreadState::default();
    let mut async_state = AsyncState::default();
    let rows = normalize_block(
        decoder,
        block,
        &context,
        &mut thread_state,
        &mut async_state,
        tarn_gateway::native::MAX_PAYLOAD_BYTES,
        NOW / 1_000_000_000,
    )
    .expect("block normalizes");
    let mut normalized = Normalized::default();
    rows.into_normalized(&mut normalized);
    normalized
}

fn native(c: &mut Criterion) {
    let run = NativeRun::new(EVENTS, None, 1);
    let process = process_record(&run);
    for (index, kind) in BlockKind::ALL.into_iter().enumerate() {
        let stream = decode_stream(&encode_stream(&run.stream_info(kind))).expect("stream");
        let decoder = StreamDecoder::from_stream(&stream);
        let identity = Identity {
            process_id: process.process_id.clone(),
            stream_id: stream.stream_id.clone(),
            exe: process.exe.clone(),
            username: process.username.clone(),
            computer: process.computer.clone(),
            service_name: process.service_name.clone(),
            service_instance_id: process.service_instance_id.clone(),
            ..Default::default()
        };
        let thread: Vec<(String, String)> =
            [("thread-id", "thread.id"), ("thread-name", "thread.name")]
                .into_iter()
                .filter_map(|(key, name)| {
                    stream
                        .properties
                        .get(key)
                        .map(|value| (name.to_owned(), value.clone()))
                })
                .collect();
        // The first block of the stream, at object offset 0 (fresh span states pair it all).
        let planned = run.plan(index as u64).expect("planned");
        assert_eq!((planned.kind, planned.object_offset), (kind, 0));
        let body = encode_block(&run.block(index as u64, &planned));
        let block = decode_block(&body).expect("block decodes");
        let stored = rows(&normalize(&decoder, &block, &process, &identity, &thread));
        assert_eq!(stored as u64, kind.rows(EVENTS as u64), "{kind:?}");
        let name = kind.stream_kind().tag();
        println!(
            "native/{name}: {EVENTS} events, {} bytes encoded, {stored} rows",
            body.len()
        );

        let mut group = c.benchmark_group(format!("native/{name}"));
        group.throughput(Throughput::Elements(EVENTS as u64));
        group.bench_function("decode_block", |b| {
            b.iter(|| decode_block(black_box(&body)).expect("decodes"));
        });
        group.bench_function("normalize", |b| {
            b.iter(|| normalize(&decoder, black_box(&block), &process, &identity, &thread));
        });
        group.bench_function("decode+normalize", |b| {
            b.iter(|| {
                let block = decode_block(black_box(&body)).expect("decodes");
                normalize(&decoder, &block, &process, &identity, &thread)
            });
        });
        group.finish();

        if kind != BlockKind::Cpu {
            // Thirteen blocks of the stream, one commit's worth, through the commit's sort.
            let table = if kind == BlockKind::Log {
                TableKind::LogEntries
            } else {
                TableKind::Measures
            };
            let batches: Vec<RecordBatch> = (0..13u64)
                .flat_map(|turn| {
                    let index = index as u64 + 3 * turn;
                    let planned = run.plan(index).expect("planned");
                    let block = run.block(index, &planned);
                    let block = decode_block(&encode_block(&block)).expect("block decodes");
                    normalize(&decoder, &block, &process, &identity, &thread).batches
                })
                .filter(|(batch_kind, _)| *batch_kind == table)
                .map(|(_, batch)| batch.expect("rows normalize"))
                .collect();
            let parts = sorted_parts(table, &batches).expect("sorted parts");
            let (_, part) = parts
                .iter()
                .max_by_key(|(_, part)| part.num_rows())
                .expect("rows");
            parquet_variants(c, &format!("commit/{name}/parquet"), table, part);
        }
    }
}

/// The alternative `sorted_parts` was measured against: no concatenation, every row gathered
/// from its fresh batch into its sorted place by arrow's `interleave` (rows of one date).
fn gather_sorted(batches: &[RecordBatch]) -> RecordBatch {
    let time = TableKind::Spans.time_column();
    let times: Vec<&dyn Array> = batches
        .iter()
        .map(|batch| batch.column_by_name(time).expect("time column").as_ref())
        .collect();
    let order = compute::lexsort_to_indices(
        &[SortColumn {
            values: compute::concat(&times).expect("concat times"),
            options: Some(SortOptions::default()),
        }],
        None,
    )
    .expect("sort");
    let places: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(index, batch)| (0..batch.num_rows()).map(move |row| (index, row)))
        .collect();
    let order: Vec<(usize, usize)> = order
        .values()
        .iter()
        .map(|&row| places[row as usize])
        .collect();
    let sources: Vec<RecordBatch> = batches
        .iter()
        .map(|batch| {
            let mut batch = batch.clone();
            let date = batch.schema().index_of(DATE_COLUMN).expect("date column");
            batch.remove_column(date);
            batch
        })
        .collect();
    let sources: Vec<&RecordBatch> = sources.iter().collect();
    compute::interleave_record_batch(&sources, &order).expect("interleave")
}

fn commit(c: &mut Criterion) {
    const REQUESTS: u64 = 128;
    let run = uniform_run(LoadSignal::Traces);
    let batches: Vec<RecordBatch> = (0..REQUESTS)
        .flat_map(|index| {
            let Request::Traces(traces) = shapes::request(&run, index, RECORDS) else {
                panic!("traces expected");
            };
            Traces::normalize(&traces, NOW).batches
        })
        .filter(|(kind, _)| *kind == TableKind::Spans)
        .map(|(_, batch)| batch.expect("spans normalize"))
        .collect();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, REQUESTS as usize * RECORDS);
    // Both ways give the same rows.
    let parts = sorted_parts(TableKind::Spans, &batches).expect("sorted parts");
    assert_eq!(parts.len(), 1, "the uniform shape's spans share one date");
    assert_eq!(parts[0].1, gather_sorted(&batches));
    println!("commit/spans: {rows} rows");

    let mut group = c.benchmark_group("commit/spans");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(20);
    group.bench_function("sorted_parts", |b| {
        b.iter(|| sorted_parts(TableKind::Spans, black_box(&batches)).expect("sorted parts"));
    });
    group.bench_function("interleave", |b| {
        b.iter(|| gather_sorted(black_box(&batches)));
    });
    group.finish();

    parquet_variants(c, "commit/spans/parquet", TableKind::Spans, &parts[0].1);
}

/// Parquet encoding of one sorted part with the commit's writer settings (ZSTD level
/// [`tarn_lakehouse::table::ZSTD_LEVEL`]), against the same settings with another
/// compression: ZSTD level 3 (what commits used before), LZ4, Snappy, none.
fn parquet_variants(c: &mut Criterion, name: &str, kind: TableKind, part: &RecordBatch) {
    let base = writer_properties(kind, part).expect("properties");
    let with = |compression| {
        base.clone()
            .into_builder()
            .set_compression(compression)
            .build()
    };
    let variants = [
        ("current", base.clone()),
        (
            "zstd3",
            with(Compression::ZSTD(ZstdLevel::try_new(3).expect("level"))),
        ),
        ("lz4_raw", with(Compression::LZ4_RAW)),
        ("snappy", with(Compression::SNAPPY)),
        ("uncompressed", with(Compression::UNCOMPRESSED)),
    ];
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(part.num_rows() as u64));
    group.sample_size(10);
    for (variant, properties) in variants {
        let size = encode(part, &properties).0.len();
        println!("{name}/{variant}: {} rows, {size} bytes", part.num_rows());
        group.bench_function(variant, |b| {
            b.iter(|| encode(black_box(part), &properties));
        });
    }
    // The Delta statistics the commit computes on the same part, beside the file: string
    // bounds read off the file's metadata, against comparing every string again (what
    // commits did before).
    let (_, metadata) = encode(part, &base);
    group.bench_function("stats_json", |b| {
        b.iter(|| stats_json(black_box(part), &metadata));
    });
    group.bench_function("string_bounds_by_comparing", |b| {
        b.iter(|| {
            part.columns()
                .iter()
                .filter_map(|column| column.as_string_opt::<i32>())
                .map(|values| (compute::min_string(values), compute::max_string(values)))
                .filter(|(low, high)| low.is_some() && high.is_some())
                .count()
        });
    });
    group.finish();
}

fn encode(part: &RecordBatch, properties: &WriterProperties) -> (Vec<u8>, ParquetMetaData) {
    write_parquet(part, properties.clone()).expect("Parquet file")
}

criterion_group!(benches, otlp, native, commit);
criterion_main!(benches);
