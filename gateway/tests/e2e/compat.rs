//! Compatibility with real OTLP exporters we did not write: the OpenTelemetry Python SDK
//! (gRPC, HTTP/protobuf and HTTP/JSON exporters), the JS SDK (HTTP/JSON) and the Rust
//! `opentelemetry-otlp` exporter (gRPC), at the pinned versions in `compat-tests/`. Each test checks, through FlightSQL, that what
//! the exporter sent is in the tables, field by field.

use std::path::PathBuf;
use std::process::Command;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};

use crate::harness::Server;
use crate::tools::{compat_dir, node_project, python_venv, run};

/// The `bin/` of the OpenTelemetry Python SDK's virtualenv.
fn python() -> Option<PathBuf> {
    python_venv("otlp-python").map(|bin| bin.join("python"))
}

fn node() -> Option<PathBuf> {
    node_project(
        "otlp-js",
        &["package.json", "package-lock.json", "send.mjs"],
    )
}

fn one_batch(batches: &[RecordBatch]) -> RecordBatch {
    assert!(!batches.is_empty(), "no result batches");
    concat_batches(&batches[0].schema(), batches).unwrap()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array =
        arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
    array
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

fn int64s(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

fn int32s(batch: &RecordBatch, column: &str) -> Vec<Option<i32>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int32Type>()
        .iter()
        .collect()
}

fn float64s(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn sent(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("sender printed {stdout:?}: {e}"))
}

async fn python_sends(transport: &str, compression: Option<&str>) {
    let Some(python) = python() else {
        return;
    };
    let server = Server::start_temp(&[]);
    let service = format!("py-{transport}-{}", compression.unwrap_or("plain"));
    let endpoint = if transport == "grpc" {
        format!("http://{}", server.otlp_grpc)
    } else {
        format!("http://{}", server.otlp_http)
    };
    let mut command = Command::new(&python);
    command
        .arg(compat_dir("otlp-python").join("send.py"))
        .args([transport, &service])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "10")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS");
    if let Some(compression) = compression {
        command.env("OTEL_EXPORTER_OTLP_COMPRESSION", compression);
    }
    let sent = sent(&run(&mut command));
    let trace_id = sent["trace_id"].as_str().unwrap();

    let spans = one_batch(
        &server
            .query(&format!(
                "SELECT name, trace_id, span_id, parent_span_id, kind, status_code, status_message, scope_name, \
                 service_version, duration_ns, \
                 properties['http.request.method']['str'] AS method, \
                 properties['http.response.status_code']['int'] AS code, \
                 properties['retry.ratio']['double'] AS ratio, \
                 properties['cache.hit']['bool'] AS hit, \
                 properties['tags']['json'] AS tags, \
                 events[1]['name'] AS event \
                 FROM spans WHERE service_name = '{service}' ORDER BY start_time_unix_nano"
            ))
            .await,
    );
    assert_eq!(
        strings(&spans, "name"),
        [Some("GET /orders".into()), Some("SELECT orders".into())]
    );
    assert_eq!(
        strings(&spans, "trace_id"),
        [Some(trace_id.into()), Some(trace_id.into())]
    );
    assert_eq!(
        strings(&spans, "span_id")[0].as_deref(),
        sent["root_span_id"].as_str()
    );
    assert_eq!(
        strings(&spans, "parent_span_id")[1].as_deref(),
        sent["root_span_id"].as_str()
    );
    assert_eq!(int32s(&spans, "kind"), [Some(2), Some(3)]);
    assert_eq!(int32s(&spans, "status_code")[1], Some(2));
    assert_eq!(
        strings(&spans, "status_message")[1].as_deref(),
        Some("timeout")
    );
    assert_eq!(
        strings(&spans, "scope_name")[0].as_deref(),
        Some("compat.python")
    );
    assert_eq!(
        strings(&spans, "service_version")[0].as_deref(),
        Some("9.8.7")
    );
    assert_eq!(strings(&spans, "method")[0].as_deref(), Some("GET"));
    assert_eq!(int64s(&spans, "code")[0], Some(200));
    assert_eq!(float64s(&spans, "ratio")[0], Some(0.5));
    let hits = spans.column_by_name("hit").unwrap().as_boolean();
    assert!(hits.value(0));
    assert_eq!(
        strings(&spans, "tags")[0].as_deref(),
        Some(r#"{"arrayValue":{"values":[{"stringValue":"a"},{"stringValue":"b"}]}}"#)
    );
    assert_eq!(strings(&spans, "event")[0].as_deref(), Some("order.loaded"));
    assert!(
        int64s(&spans, "duration_ns")
            .iter()
            .all(|d| d.is_some_and(|d| d > 0))
    );

    let logs = one_batch(
        &server
            .query(&format!(
                "SELECT msg, level, severity_number, target, properties['disk.free_bytes']['int'] AS free \
                 FROM log_entries WHERE service_name = '{service}' ORDER BY time_unix_nano"
            ))
            .await,
    );
    assert_eq!(
        strings(&logs, "msg"),
        [
            Some("disk almost full".into()),
            Some("payment failed: card declined".into())
        ]
    );
    assert_eq!(int32s(&logs, "level"), [Some(3), Some(2)]);
    assert_eq!(int32s(&logs, "severity_number"), [Some(13), Some(17)]);
    assert_eq!(
        strings(&logs, "target")[0].as_deref(),
        Some("compat.python.logs")
    );
    assert_eq!(int64s(&logs, "free")[0], Some(1024));

    let measures = one_batch(
        &server
            .query(&format!(
                "SELECT name, metric_type, value, int_value, is_monotonic, aggregation_temporality, unit, \
                 properties['route']['str'] AS route FROM measures WHERE service_name = '{service}' ORDER BY name"
            ))
            .await,
    );
    assert_eq!(
        strings(&measures, "name"),
        [Some("py.requests".into()), Some("py.temperature".into())]
    );
    assert_eq!(
        strings(&measures, "metric_type"),
        [Some("sum".into()), Some("gauge".into())]
    );
    assert_eq!(int64s(&measures, "int_value")[0], Some(7));
    assert_eq!(float64s(&measures, "value")[1], Some(21.5));
    assert_eq!(int32s(&measures, "aggregation_temporality")[0], Some(2));
    assert!(
        measures
            .column_by_name("is_monotonic")
            .unwrap()
            .as_boolean()
            .value(0)
    );
    assert_eq!(strings(&measures, "route")[0].as_deref(), Some("/a"));

    let histograms = one_batch(
        &server
            .query(&format!(
                "SELECT name, metric_type, count, sum, min, max, scale FROM histograms \
                 WHERE service_name = '{service}' ORDER BY name"
            ))
            .await,
    );
    assert_eq!(
        strings(&histograms, "name"),
        [Some("py.latency".into()), Some("py.sizes".into())]
    );
    assert_eq!(
        strings(&histograms, "metric_type"),
        [
            Some("histogram".into()),
            Some("exponential_histogram".into())
        ]
    );
    assert_eq!(int64s(&histograms, "count"), [Some(3), Some(5)]);
    assert_eq!(float64s(&histograms, "sum"), [Some(170.0), Some(1039.0)]);
    assert_eq!(float64s(&histograms, "min")[0], Some(5.0));
    assert_eq!(float64s(&histograms, "max")[0], Some(150.0));
    assert!(int32s(&histograms, "scale")[1].is_some());

    let processes = one_batch(
        &server
            .query(&format!(
                "SELECT properties['deployment.environment']['str'] AS env, source FROM processes \
                 WHERE service_name = '{service}'"
            ))
            .await,
    );
    assert_eq!(strings(&processes, "env"), [Some("compat".into())]);
}

#[tokio::test]
async fn python_sdk_over_grpc() {
    python_sends("grpc", None).await;
}

#[tokio::test]
async fn python_sdk_over_grpc_gzip() {
    python_sends("grpc", Some("gzip")).await;
}

#[tokio::test]
async fn python_sdk_over_http_protobuf() {
    python_sends("http-protobuf", None).await;
}

#[tokio::test]
async fn python_sdk_over_http_protobuf_gzip() {
    python_sends("http-protobuf", Some("gzip")).await;
}

#[tokio::test]
async fn python_sdk_over_http_json() {
    python_sends("http-json", None).await;
}

#[tokio::test]
async fn js_sdk_over_http_json() {
    let Some(project) = node() else {
        return;
    };
    let server = Server::start_temp(&[]);
    let sent = sent(&run(Command::new("node")
        .arg(project.join("send.mjs"))
        .arg(format!("http://{}", server.otlp_http))
        .arg("js-svc")
        .current_dir(&project)));
    let trace_id = sent["trace_id"].as_str().unwrap();
    let spans = one_batch(
        &server
            .query(
                "SELECT name, trace_id, kind, status_code, status_message, service_version, \
                 properties['http.response.status_code']['int'] AS code, properties['js.ratio']['double'] AS ratio, \
                 properties['js.flag']['bool'] AS flag, events[1]['name'] AS event \
                 FROM spans WHERE service_name = 'js-svc' ORDER BY kind DESC",
            )
            .await,
    );
    assert_eq!(
        strings(&spans, "name"),
        [Some("charge card".into()), Some("POST /pay".into())]
    );
    assert_eq!(
        strings(&spans, "trace_id"),
        [Some(trace_id.into()), Some(trace_id.into())]
    );
    assert_eq!(int32s(&spans, "status_code")[0], Some(2));
    assert_eq!(
        strings(&spans, "status_message")[0].as_deref(),
        Some("declined")
    );
    assert_eq!(int64s(&spans, "code")[1], Some(201));
    assert_eq!(float64s(&spans, "ratio")[1], Some(0.25));
    assert!(!spans.column_by_name("flag").unwrap().as_boolean().value(1));
    assert_eq!(
        strings(&spans, "event")[1].as_deref(),
        Some("payment.started")
    );
    assert_eq!(
        strings(&spans, "service_version")[0].as_deref(),
        Some("3.2.1")
    );

    let logs = one_batch(
        &server
            .query(
                "SELECT msg, level, body['json'] AS body, properties['queue.length']['int'] AS length \
                 FROM log_entries WHERE service_name = 'js-svc' ORDER BY severity_number DESC",
            )
            .await,
    );
    assert_eq!(strings(&logs, "msg")[0].as_deref(), Some("queue is long"));
    assert_eq!(int64s(&logs, "length")[0], Some(99));
    let structured = strings(&logs, "body")[1].clone().unwrap();
    assert!(
        structured.contains("kvlistValue") && structured.contains("structured"),
        "{structured}"
    );

    let measures = one_batch(
        &server
            .query("SELECT name, value FROM measures WHERE service_name = 'js-svc'")
            .await,
    );
    assert_eq!(strings(&measures, "name"), [Some("js.requests".into())]);
    assert_eq!(float64s(&measures, "value"), [Some(5.0)]);
    let histograms = one_batch(
        &server
            .query("SELECT name, count, sum FROM histograms WHERE service_name = 'js-svc'")
            .await,
    );
    assert_eq!(int64s(&histograms, "count"), [Some(1)]);
    assert_eq!(float64s(&histograms, "sum"), [Some(12.0)]);
}

/// The Rust `opentelemetry-otlp` 0.33.1 exporter over gRPC (compat-tests/otlp-rust, built
/// here by cargo from its own lock file): a span, a log record and a counter.
#[tokio::test]
async fn rust_opentelemetry_otlp_over_grpc() {
    let server = Server::start_temp(&["--flush-interval-secs", "0.5"]);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(cargo)
        .args(["run", "--quiet", "--locked", "--manifest-path"])
        .arg(compat_dir("otlp-rust").join("Cargo.toml"))
        .arg("--")
        .arg(format!("http://{}", server.otlp_grpc))
        .arg("rust-svc"));
    let spans = one_batch(
        &server
            .query(
                "SELECT name, kind, scope_name, properties['http.route']['str'] AS route, \
                 properties['retries']['int'] AS retries FROM spans WHERE service_name = 'rust-svc'",
            )
            .await,
    );
    assert_eq!(strings(&spans, "name"), [Some("rust-otlp-span".into())]);
    // SPAN_KIND_INTERNAL, the SDK's default.
    assert_eq!(strings(&spans, "kind"), [Some("1".into())]);
    assert_eq!(strings(&spans, "scope_name"), [Some("tarn-compat".into())]);
    assert_eq!(strings(&spans, "route"), [Some("/compat".into())]);
    assert_eq!(strings(&spans, "retries"), [Some("3".into())]);

    let logs = one_batch(
        &server
            .query(
                "SELECT msg, severity_number, severity_text, properties['user.id']['int'] AS uid \
                 FROM log_entries WHERE service_name = 'rust-svc'",
            )
            .await,
    );
    assert_eq!(
        strings(&logs, "msg"),
        [Some("hello from opentelemetry-otlp".into())]
    );
    assert_eq!(strings(&logs, "severity_number"), [Some("13".into())]);
    assert_eq!(strings(&logs, "severity_text"), [Some("WARN".into())]);
    assert_eq!(strings(&logs, "uid"), [Some("42".into())]);

    let measures = one_batch(
        &server
            .query(
                "SELECT name, metric_type, int_value, is_monotonic, \
                 properties['route']['str'] AS route FROM measures WHERE service_name = 'rust-svc'",
            )
            .await,
    );
    assert_eq!(strings(&measures, "name"), [Some("compat.requests".into())]);
    assert_eq!(strings(&measures, "metric_type"), [Some("sum".into())]);
    assert_eq!(strings(&measures, "int_value"), [Some("7".into())]);
    assert_eq!(strings(&measures, "is_monotonic"), [Some("true".into())]);
    assert_eq!(strings(&measures, "route"), [Some("/compat".into())]);

    let processes = one_batch(
        &server
            .query(
                "SELECT properties['deployment.environment']['str'] AS env FROM processes \
                 WHERE service_name = 'rust-svc'",
            )
            .await,
    );
    assert_eq!(strings(&processes, "env"), [Some("compat".into())]);
}
