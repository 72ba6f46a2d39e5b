//! OTLP/HTTP traces in, FlightSQL out.

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StructArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{Int32Type, Int64Type};
use prost::Message;
use tarn_proto::otlp::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tarn_proto::otlp::rpc;

use crate::harness::{Server, ServerConfig, data_dir, postgres_database, temp_dir};
use crate::otlp_data::{START, TRACE_A, sample_traces};

const PROTOBUF: &str = "application/x-protobuf";

fn one_batch(batches: &[RecordBatch]) -> RecordBatch {
    assert!(!batches.is_empty(), "no result batches");
    concat_batches(&batches[0].schema(), batches).unwrap()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).unwrap();
    let array = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).unwrap();
    array
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

fn int64s(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    let array = batch.column_by_name(column).unwrap();
    array.as_primitive::<Int64Type>().iter().collect()
}

/// The typed value of `key` in row `row` of a properties map, as (member, text).
fn property(map: &MapArray, row: usize, key: &str) -> Option<(String, String)> {
    let entries = map.value(row);
    let keys = arrow::compute::cast(entries.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
    let keys = keys.as_string::<i32>();
    let values = entries
        .column(1)
        .as_any()
        .downcast_ref::<StructArray>()
        .unwrap();
    let index = (0..keys.len()).find(|i| keys.value(*i) == key)?;
    for (member, column) in values.fields().iter().zip(values.columns()) {
        if column.is_valid(index) {
            let text = arrow::util::display::array_value_to_string(column, index).unwrap();
            return Some((member.name().clone(), text));
        }
    }
    Some(("empty".into(), String::new()))
}

async fn send_sample(server: &Server, service: &str) {
    let body = sample_traces(service).encode_to_vec();
    let response = server.post("/v1/traces", PROTOBUF, None, body).await;
    assert_eq!(response.status, 200, "{}", server.stderr());
    assert_eq!(response.headers["content-type"], PROTOBUF);
    let decoded = ExportTraceServiceResponse::decode(response.body.as_slice()).unwrap();
    assert_eq!(decoded.partial_success, None);
}

/// Checks every field of the sample spans as FlightSQL returns them.
async fn assert_sample_spans(server: &Server, service: &str) {
    let batches = server
        .query(&format!(
            "SELECT name, trace_id, span_id, parent_span_id, kind, start_time, start_time_unix_nano, \
             end_time_unix_nano, duration_ns, status_code, status_message, trace_state, flags, \
             service_name, service_version, computer, scope_name, scope_version, scope_schema_url, \
             dropped_properties_count, properties, events, links, date \
             FROM spans WHERE service_name = '{service}' ORDER BY start_time_unix_nano"
        ))
        .await;
    let batch = one_batch(&batches);
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(
        strings(&batch, "name"),
        [
            Some("GET /checkout".into()),
            Some("consume".into()),
            Some("SELECT carts".into())
        ]
    );
    assert_eq!(
        strings(&batch, "trace_id"),
        [
            Some("5b8efff798038103d269b633813fc60c".into()),
            Some("11111111111111111111111111111111".into()),
            Some("5b8efff798038103d269b633813fc60c".into())
        ]
    );
    assert_eq!(
        strings(&batch, "span_id"),
        [
            Some("eee19b7ec3c1b174".into()),
            Some("aaaaaaaaaaaaaaaa".into()),
            Some("0102030405060708".into())
        ]
    );
    assert_eq!(
        strings(&batch, "parent_span_id"),
        [None, None, Some("eee19b7ec3c1b174".into())]
    );
    let start = START as i64;
    assert_eq!(
        int64s(&batch, "start_time_unix_nano"),
        [Some(start), Some(start + 100), Some(start + 5_000_003)]
    );
    assert_eq!(
        int64s(&batch, "end_time_unix_nano"),
        [
            Some(start + 42_000_001),
            Some(start + 200),
            Some(start + 9_000_000)
        ]
    );
    assert_eq!(
        int64s(&batch, "duration_ns"),
        [Some(42_000_001), Some(100), Some(3_999_997)]
    );
    assert_eq!(
        strings(&batch, "start_time")[0].as_deref(),
        Some("2026-01-01T00:00:00.123456Z")
    );
    assert_eq!(strings(&batch, "date")[0].as_deref(), Some("2026-01-01"));
    let kinds: Vec<Option<i32>> = batch
        .column_by_name("kind")
        .unwrap()
        .as_primitive::<Int32Type>()
        .iter()
        .collect();
    assert_eq!(kinds, [Some(2), Some(5), Some(3)]);
    let status: Vec<Option<i32>> = batch
        .column_by_name("status_code")
        .unwrap()
        .as_primitive::<Int32Type>()
        .iter()
        .collect();
    assert_eq!(status, [Some(2), None, None]);
    assert_eq!(
        strings(&batch, "status_message")[0].as_deref(),
        Some("payment declined")
    );
    assert_eq!(
        strings(&batch, "trace_state")[0].as_deref(),
        Some("vendor=1")
    );
    assert_eq!(int64s(&batch, "flags")[0], Some(0x101));
    assert_eq!(int64s(&batch, "dropped_properties_count")[0], Some(3));
    assert_eq!(strings(&batch, "service_name")[0].as_deref(), Some(service));
    assert_eq!(
        strings(&batch, "service_version")[0].as_deref(),
        Some("1.2.3")
    );
    assert_eq!(strings(&batch, "computer")[0].as_deref(), Some("host-1"));
    assert_eq!(strings(&batch, "scope_name")[0].as_deref(), Some("e2e"));
    assert_eq!(strings(&batch, "scope_version")[0].as_deref(), Some("0.1"));
    assert_eq!(
        strings(&batch, "scope_schema_url")[0].as_deref(),
        Some("https://opentelemetry.io/schemas/1.30.0")
    );

    let properties = batch.column_by_name("properties").unwrap().as_map();
    let expect = |key: &str, member: &str, text: &str| {
        assert_eq!(
            property(properties, 0, key),
            Some((member.to_owned(), text.to_owned())),
            "{key}"
        );
    };
    expect("http.request.method", "str", "GET");
    expect("http.response.status_code", "int", "200");
    expect("sample.ratio", "double", "0.25");
    expect("cache.hit", "bool", "true");
    expect("payload", "bytes", "000102ff");
    expect(
        "tags",
        "json",
        r#"{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"2"}]}}"#,
    );
    expect(
        "nested",
        "json",
        r#"{"kvlistValue":{"values":[{"key":"inner","value":{"boolValue":false}}]}}"#,
    );
    assert_eq!(properties.value_length(1), 0);

    let events = batch.column_by_name("events").unwrap().as_list::<i32>();
    let root_events = events.value(0);
    let root_events = root_events.as_struct();
    assert_eq!(root_events.len(), 1);
    assert_eq!(
        root_events
            .column_by_name("time_unix_nano")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        start + 1_000
    );
    let names = arrow::compute::cast(
        root_events.column_by_name("name").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    assert_eq!(names.as_string::<i32>().value(0), "cache.lookup");
    let links = batch.column_by_name("links").unwrap().as_list::<i32>();
    let child_links = links.value(2);
    let child_links = child_links.as_struct();
    assert_eq!(child_links.len(), 1);
    let link_traces = arrow::compute::cast(
        child_links.column_by_name("trace_id").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    assert_eq!(
        link_traces.as_string::<i32>().value(0),
        "11111111111111111111111111111111"
    );

    // Attributes are filterable by key in plain SQL, with their types.
    let filtered = server
        .query(&format!(
            "SELECT name FROM spans WHERE service_name = '{service}' \
             AND properties['http.response.status_code']['int'] = 200"
        ))
        .await;
    assert_eq!(
        strings(&one_batch(&filtered), "name"),
        [Some("GET /checkout".into())]
    );
    // A trace is found by its hex id with a plain WHERE.
    let trace = server
        .query(&format!(
            "SELECT count(*) AS n FROM spans WHERE trace_id = '{}' AND service_name = '{service}'",
            TRACE_A
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ))
        .await;
    assert_eq!(int64s(&one_batch(&trace), "n"), [Some(2)]);
}

#[tokio::test]
async fn spans_round_trip_with_the_embedded_catalog() {
    let temp = temp_dir();
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        ..Default::default()
    });
    send_sample(&server, "checkout").await;
    assert_sample_spans(&server, "checkout").await;
    let processes = one_batch(
        &server
            .query("SELECT service_name, source FROM processes")
            .await,
    );
    assert_eq!(
        strings(&processes, "service_name"),
        [Some("checkout".into())]
    );
    assert_eq!(strings(&processes, "source"), [Some("otlp".into())]);
    assert!(data_dir(&temp).join("catalog.db").exists());
}

#[tokio::test]
async fn spans_round_trip_with_the_postgres_catalog() {
    let Some(catalog) = postgres_database().await else {
        return;
    };
    let temp = temp_dir();
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        catalog: Some(catalog.clone()),
        ..Default::default()
    });
    send_sample(&server, "payments").await;
    send_sample(&server, "payments").await;
    let count = one_batch(&server.query("SELECT count(*) AS n FROM spans").await);
    assert_eq!(
        int64s(&count, "n"),
        [Some(6)],
        "both exports are kept (OTLP is at least once)"
    );
    // The process is recorded once in PostgreSQL, however often it is seen.
    let pool = sqlx::PgPool::connect(&catalog).await.unwrap();
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT source, service_name FROM processes")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, [("otlp".to_owned(), Some("payments".to_owned()))]);
    let tables: Vec<(String,)> = sqlx::query_as("SELECT name FROM lake_tables ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(tables.iter().any(|(name,)| name == "spans"), "{tables:?}");
    pool.close().await;
    server.stop();
}

#[tokio::test]
async fn spans_survive_a_restart() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        ..Default::default()
    };
    let server = Server::start(&config);
    send_sample(&server, "restart").await;
    server.stop();
    let server = Server::start(&config);
    assert_sample_spans(&server, "restart").await;
    // And one killed with SIGKILL right after its acknowledgement loses nothing either.
    send_sample(&server, "killed").await;
    server.kill();
    let server = Server::start(&config);
    assert_sample_spans(&server, "killed").await;
}

#[tokio::test]
async fn bad_input_is_refused_and_the_server_keeps_serving() {
    let temp = temp_dir();
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        ..Default::default()
    });
    // Not protobuf at all.
    let response = server
        .post(
            "/v1/traces",
            PROTOBUF,
            None,
            b"\xff\xff\xff\xffnot protobuf".to_vec(),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.headers["content-type"], PROTOBUF);
    let status = rpc::Status::decode(response.body.as_slice()).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.contains("ExportTraceServiceRequest"),
        "{}",
        status.message
    );
    assert_eq!(
        status.details[0].type_url,
        "type.googleapis.com/google.rpc.BadRequest"
    );
    // A content type OTLP does not define.
    let response = server
        .post("/v1/traces", "text/plain", None, b"hello".to_vec())
        .await;
    assert_eq!(response.status, 415);
    rpc::Status::decode(response.body.as_slice()).unwrap();
    // An encoding nobody speaks.
    let body = sample_traces("x").encode_to_vec();
    let response = server.post("/v1/traces", PROTOBUF, Some("br"), body).await;
    assert_eq!(response.status, 415);
    // A gzip bomb: 64 MiB of zeros in a small body, past the 20 MiB limit after decompression.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &vec![0_u8; 64 << 20]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let response = server
        .post("/v1/traces", PROTOBUF, Some("gzip"), bomb)
        .await;
    assert_eq!(response.status, 413);
    // An invalid span is rejected alone; its valid neighbours are kept (partial success).
    let mut request = sample_traces("partial");
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3];
    let response = server
        .post("/v1/traces", PROTOBUF, None, request.encode_to_vec())
        .await;
    assert_eq!(response.status, 200);
    let decoded = ExportTraceServiceResponse::decode(response.body.as_slice()).unwrap();
    let partial = decoded.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );
    // An empty request succeeds.
    let empty = ExportTraceServiceRequest::default().encode_to_vec();
    assert_eq!(
        server
            .post("/v1/traces", PROTOBUF, None, empty)
            .await
            .status,
        200
    );
    // Compressed bodies are accepted, and the server still serves.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &sample_traces("gzipped").encode_to_vec()).unwrap();
    let response = server
        .post(
            "/v1/traces",
            PROTOBUF,
            Some("gzip"),
            encoder.finish().unwrap(),
        )
        .await;
    assert_eq!(response.status, 200);
    let zstd = zstd::encode_all(sample_traces("zstd").encode_to_vec().as_slice(), 3).unwrap();
    assert_eq!(
        server
            .post("/v1/traces", PROTOBUF, Some("zstd"), zstd)
            .await
            .status,
        200
    );
    let counts = one_batch(
        &server
            .query("SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY service_name")
            .await,
    );
    assert_eq!(
        strings(&counts, "service_name"),
        [
            Some("gzipped".into()),
            Some("partial".into()),
            Some("zstd".into())
        ]
    );
    assert_eq!(int64s(&counts, "n"), [Some(3), Some(2), Some(3)]);
}

#[tokio::test]
async fn sql_is_read_only() {
    let temp = temp_dir();
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        ..Default::default()
    });
    for sql in [
        "CREATE EXTERNAL TABLE passwd STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/tarn-e2e-copy.csv'",
        "INSERT INTO spans SELECT * FROM spans",
        "DROP TABLE spans",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let error = server.try_query(sql).await.expect_err(sql).to_string();
        assert!(
            error.contains("not supported") || error.contains("invalid"),
            "{sql}: {error}"
        );
    }
    assert!(!std::path::Path::new("/tmp/tarn-e2e-copy.csv").exists());
}

#[tokio::test]
async fn startup_is_quick() {
    let temp = temp_dir();
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        ..Default::default()
    });
    // Not a timing assertion: the server reports its own startup time, and a sane one.
    assert!(server.startup_ms < 60_000, "{}", server.startup_ms);
    eprintln!("tarn serve became ready in {} ms", server.startup_ms);
}
