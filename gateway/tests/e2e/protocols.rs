//! OTLP in every transport and encoding: gRPC, HTTP protobuf, HTTP JSON; all signals.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use prost::Message;
use tarn_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use tarn_proto::otlp::collector::logs::v1::logs_service_client::LogsServiceClient;
use tarn_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use tarn_proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use tarn_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use tarn_proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use tonic::codec::CompressionEncoding;

use crate::harness::Server;
use crate::otlp_data::{kv, resource, sample_traces, string, value};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

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

fn float64s(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn start() -> Server {
    Server::start_temp(&[])
}

const TRACES_JSON: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
    "scopeSpans": [{
      "scope": {"name": "json-scope", "unknownScopeField": 1},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "",
        "name": "json span",
        "kind": 3,
        "startTimeUnixNano": "1767225600123456789",
        "endTimeUnixNano": 1767225600223456789,
        "attributes": [
          {"key": "count", "value": {"intValue": "42"}},
          {"key": "ratio", "value": {"doubleValue": 0.5}},
          {"key": "raw", "value": {"bytesValue": "AAEC"}}
        ],
        "status": {"code": 2, "message": "boom"},
        "someFutureField": {"x": [1, 2]}
      }]
    }]
  }]
}"#;

pub(crate) const LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
 "scopeLogs":[{"scope":{"name":"json-logger"},"logRecords":[
   {"timeUnixNano":"1767225600000000001","observedTimeUnixNano":"1767225600000000002","severityNumber":17,
    "severityText":"ERROR","body":{"stringValue":"disk full"},"traceId":"5b8efff798038103d269b633813fc60c",
    "spanId":"eee19b7ec3c1b174","attributes":[{"key":"disk","value":{"stringValue":"/dev/sda"}}],"eventName":"disk.full"},
   {"observedTimeUnixNano":"1767225600000000003","severityNumber":9,
    "body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":1}}]}}}
 ]}]}]}"#;

pub(crate) const METRICS_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
 "scopeMetrics":[{"scope":{"name":"json-meter"},"metrics":[
   {"name":"requests","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,
     "dataPoints":[{"timeUnixNano":"1767225600000000000","startTimeUnixNano":"1767225500000000000","asInt":"7",
                    "attributes":[{"key":"route","value":{"stringValue":"/a"}}]}]}},
   {"name":"temperature","unit":"Cel","gauge":{"dataPoints":[{"timeUnixNano":"1767225600000000000","asDouble":21.5}]}},
   {"name":"latency","unit":"ms","histogram":{"aggregationTemporality":1,"dataPoints":[
     {"timeUnixNano":"1767225600000000000","count":"3","sum":12.5,"bucketCounts":["1","2","0"],"explicitBounds":[5,10],"min":1.5,"max":9}]}},
   {"name":"sizes","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[
     {"timeUnixNano":"1767225600000000000","count":"4","sum":10,"scale":2,"zeroCount":"1","zeroThreshold":0.001,
      "positive":{"offset":3,"bucketCounts":["1","2"]},"negative":{"offset":-1,"bucketCounts":["0"]}}]}},
   {"name":"rpc","summary":{"dataPoints":[{"timeUnixNano":"1767225600000000000","count":"10","sum":100,
      "quantileValues":[{"quantile":0.5,"value":9},{"quantile":0.99,"value":20}]}]}}
 ]}]}]}"#;

#[tokio::test]
async fn json_over_http_for_every_signal() {
    let server = start();
    for (path, body) in [
        ("/v1/traces", TRACES_JSON),
        ("/v1/logs", LOGS_JSON),
        ("/v1/metrics", METRICS_JSON),
    ] {
        let response = server
            .post(
                path,
                "application/json; charset=utf-8",
                None,
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(
            response.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.headers["content-type"], JSON);
        let reply: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert!(
            reply.get("partialSuccess").is_none_or(|p| p.is_null()),
            "{path}: {reply}"
        );
    }
    let spans = one_batch(
        &server
            .query(
                "SELECT trace_id, name, kind, start_time_unix_nano, status_code, status_message, scope_name, \
                 properties['count']['int'] AS count, properties['ratio']['double'] AS ratio FROM spans",
            )
            .await,
    );
    assert_eq!(
        strings(&spans, "trace_id"),
        [Some("5b8efff798038103d269b633813fc60c".into())]
    );
    assert_eq!(
        int64s(&spans, "start_time_unix_nano"),
        [Some(1_767_225_600_123_456_789)]
    );
    assert_eq!(int64s(&spans, "count"), [Some(42)]);
    assert_eq!(float64s(&spans, "ratio"), [Some(0.5)]);
    assert_eq!(strings(&spans, "scope_name"), [Some("json-scope".into())]);

    let logs = one_batch(
        &server
            .query(
                "SELECT msg, level, severity_number, trace_id, event_name, time, time_unix_nano, \
                 observed_time_unix_nano, body['json'] AS body_json FROM log_entries ORDER BY observed_time_unix_nano",
            )
            .await,
    );
    assert_eq!(strings(&logs, "msg")[0].as_deref(), Some("disk full"));
    assert_eq!(
        strings(&logs, "event_name")[0].as_deref(),
        Some("disk.full")
    );
    let levels: Vec<Option<i32>> = logs
        .column_by_name("level")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int32Type>()
        .iter()
        .collect();
    assert_eq!(levels, [Some(2), Some(4)]);
    // No event time: the row is placed at its observed time, and the exact 0 is kept.
    assert_eq!(
        int64s(&logs, "time_unix_nano"),
        [Some(1_767_225_600_000_000_001), Some(0)]
    );
    assert_eq!(
        strings(&logs, "time")[1].as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert_eq!(
        strings(&logs, "body_json")[1].as_deref(),
        Some(r#"{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}}"#)
    );

    let measures = one_batch(
        &server
            .query("SELECT name, metric_type, value, int_value, is_monotonic, unit FROM measures ORDER BY name")
            .await,
    );
    assert_eq!(
        strings(&measures, "name"),
        [Some("requests".into()), Some("temperature".into())]
    );
    assert_eq!(
        strings(&measures, "metric_type"),
        [Some("sum".into()), Some("gauge".into())]
    );
    assert_eq!(float64s(&measures, "value"), [Some(7.0), Some(21.5)]);
    assert_eq!(int64s(&measures, "int_value"), [Some(7), None]);
    let histograms = one_batch(
        &server
            .query(
                "SELECT name, metric_type, count, sum, min, max, bucket_counts, explicit_bounds, scale, zero_count, \
                 zero_threshold, positive_offset, positive_bucket_counts, negative_offset, quantile_values \
                 FROM histograms ORDER BY name",
            )
            .await,
    );
    assert_eq!(
        strings(&histograms, "metric_type"),
        [
            Some("histogram".into()),
            Some("summary".into()),
            Some("exponential_histogram".into())
        ]
    );
    assert_eq!(int64s(&histograms, "count"), [Some(3), Some(10), Some(4)]);
    assert_eq!(float64s(&histograms, "min"), [Some(1.5), None, None]);
    assert_eq!(int64s(&histograms, "zero_count"), [None, None, Some(1)]);
    assert_eq!(
        float64s(&histograms, "zero_threshold"),
        [None, None, Some(0.001)]
    );
    let buckets = histograms
        .column_by_name("bucket_counts")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(
        buckets
            .value(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        [1, 2, 0]
    );
    let positive = histograms
        .column_by_name("positive_bucket_counts")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(
        positive
            .value(2)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        [1, 2]
    );
    let quantiles = histograms
        .column_by_name("quantile_values")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(quantiles.value(1).len(), 2);

    // Malformed JSON is a 400 with a JSON status.
    let response = server
        .post("/v1/logs", JSON, None, b"{\"resourceLogs\": [".to_vec())
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.headers["content-type"], JSON);
    let status: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(status["code"], 3);
}

fn metrics_request(service: &str) -> ExportMetricsServiceRequest {
    let point = |value| NumberDataPoint {
        time_unix_nano: 1_767_225_600_000_000_000,
        value: Some(value),
        attributes: vec![kv("host", string("a"))],
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(service)),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "queue.depth".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point(number_data_point::Value::AsInt(12))],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "bytes.sent".into(),
                        unit: "By".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(number_data_point::Value::AsDouble(2.5))],
                            aggregation_temporality: 1,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request(service: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_767_225_600_000_000_000,
                    severity_number: 13,
                    body: value(Value::StringValue("low disk".into())),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn grpc_for_every_signal_with_compression_and_limits() {
    let server = start();
    let url = format!("http://{}", server.otlp_grpc);
    let mut traces = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let mut logs = LogsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Zstd);
    let mut metrics = MetricsServiceClient::connect(url.clone()).await.unwrap();

    let reply = traces
        .export(sample_traces("grpc-svc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.partial_success, None);
    logs.export(logs_request("grpc-svc")).await.unwrap();
    metrics.export(metrics_request("grpc-svc")).await.unwrap();

    // Partial success: the invalid span is counted, the others kept.
    let mut partial = sample_traces("grpc-partial");
    partial.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    let reply = traces.export(partial).await.unwrap().into_inner();
    assert_eq!(reply.partial_success.unwrap().rejected_spans, 1);

    // Over the 4 MiB message limit: RESOURCE_EXHAUSTED (not retried), compressed or not.
    let mut big = sample_traces("grpc-big");
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(5 << 20);
    let mut plain = TraceServiceClient::connect(url.clone()).await.unwrap();
    let status = plain.export(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let status = traces.export(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    let spans = one_batch(
        &server
            .query("SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1")
            .await,
    );
    assert_eq!(
        strings(&spans, "service_name"),
        [Some("grpc-partial".into()), Some("grpc-svc".into())]
    );
    assert_eq!(int64s(&spans, "n"), [Some(2), Some(3)]);
    let logs_rows = one_batch(&server.query("SELECT msg, level FROM log_entries").await);
    assert_eq!(strings(&logs_rows, "msg"), [Some("low disk".into())]);
    let measures = one_batch(
        &server
            .query("SELECT name, value, aggregation_temporality FROM measures ORDER BY name")
            .await,
    );
    assert_eq!(
        strings(&measures, "name"),
        [Some("bytes.sent".into()), Some("queue.depth".into())]
    );
    assert_eq!(float64s(&measures, "value"), [Some(2.5), Some(12.0)]);
}

#[tokio::test]
async fn the_native_port_serves_otlp_http_too() {
    let server = start();
    let response = server
        .post_native(
            "/ingestion/otlp/v1/logs",
            PROTOBUF,
            None,
            logs_request("via-native").encode_to_vec(),
        )
        .await;
    assert_eq!(response.status, 200);
    let response = server
        .post_native(
            "/ingestion/otlp/v1/traces",
            JSON,
            None,
            TRACES_JSON.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(response.status, 200);
    let health = reqwest::get(format!("http://{}/health", server.native))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://{}/ready", server.native))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let rows = one_batch(&server.query("SELECT service_name FROM log_entries").await);
    assert_eq!(strings(&rows, "service_name"), [Some("via-native".into())]);
}

#[tokio::test]
async fn a_full_gateway_says_try_later_and_loses_nothing_it_acknowledged() {
    let server = Server::start_temp(&["--max-inflight-bytes", "1"]);
    let body = sample_traces("busy").encode_to_vec();
    let requests = (0..24).map(|_| server.post("/v1/traces", PROTOBUF, None, body.clone()));
    let responses = futures::future::join_all(requests).await;
    let accepted = responses.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = responses.iter().filter(|r| r.status != 200).collect();
    assert!(accepted >= 1);
    assert!(
        !refused.is_empty(),
        "24 concurrent requests against a 1-byte budget all passed"
    );
    for response in &refused {
        assert_eq!(response.status, 503);
        assert_eq!(response.headers["retry-after"], "1");
        let status = tarn_proto::otlp::rpc::Status::decode(response.body.as_slice()).unwrap();
        assert_eq!(status.code, 14, "UNAVAILABLE");
        assert_eq!(
            status.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
    }
    let count = one_batch(&server.query("SELECT count(*) AS n FROM spans").await);
    assert_eq!(int64s(&count, "n"), [Some(3 * accepted as i64)]);

    // gRPC says UNAVAILABLE with RetryInfo.
    let url = format!("http://{}", server.otlp_grpc);
    let calls = (0..24).map(|_| {
        let url = url.clone();
        async move {
            let mut client = TraceServiceClient::connect(url).await.unwrap();
            client.export(sample_traces("busy-grpc")).await
        }
    });
    let results = futures::future::join_all(calls).await;
    let unavailable: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!unavailable.is_empty());
    for status in unavailable {
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let details = tarn_proto::otlp::rpc::Status::decode(status.details()).unwrap();
        assert_eq!(
            details.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
    }
}
