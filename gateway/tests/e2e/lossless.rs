//! OTLP round-trips losslessly: generated requests covering every field and every value
//! type go through normalization into real Delta tables, come back through SQL, and are
//! rebuilt into requests equal to the originals.

use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use prop::collection::vec;
use proptest::prelude::*;
use prost::Message;
use tarn_gateway::ingest::Ingestor;
use tarn_gateway::otlp::{Export, Logs, Metrics, Traces, rebuild};
use tarn_lakehouse::{LakeConfig, Lakehouse};
use tarn_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use tarn_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use tarn_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use tarn_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use tarn_proto::otlp::metrics::v1::exponential_histogram_data_point::Buckets;
use tarn_proto::otlp::metrics::v1::summary_data_point::ValueAtQuantile;
use tarn_proto::otlp::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric, number_data_point,
};
use tarn_proto::otlp::resource::v1::Resource;
use tarn_proto::otlp::trace::v1::span::{Event, Link};
use tarn_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

// ---- generators ----------------------------------------------------------------------

fn leaf_value() -> impl Strategy<Value = AnyValue> {
    prop_oneof![
        any::<String>().prop_map(Value::StringValue),
        any::<i64>().prop_map(Value::IntValue),
        any::<f64>().prop_map(Value::DoubleValue),
        any::<bool>().prop_map(Value::BoolValue),
        vec(any::<u8>(), 0..6).prop_map(Value::BytesValue),
    ]
    .prop_map(|value| AnyValue { value: Some(value) })
    .boxed()
    .prop_union(Just(AnyValue { value: None }).boxed())
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    leaf_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|values| Value::ArrayValue(ArrayValue { values })),
            vec(("[a-z.]{0,6}", proptest::option::of(inner)), 0..4).prop_map(|pairs| {
                Value::KvlistValue(KeyValueList {
                    values: pairs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value,
                            ..Default::default()
                        })
                        .collect(),
                })
            }),
        ]
        .prop_map(|value| AnyValue { value: Some(value) })
    })
}

/// Attributes with unique keys (OTLP requires it), in generated order.
fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec((any::<String>(), proptest::option::of(any_value())), 0..5).prop_map(|pairs| {
        let mut seen = std::collections::HashSet::new();
        pairs
            .into_iter()
            .filter(|(key, _)| seen.insert(key.clone()))
            .map(|(key, value)| KeyValue {
                key,
                value,
                ..Default::default()
            })
            .collect()
    })
}

fn nonzero<const N: usize>() -> impl Strategy<Value = Vec<u8>> {
    prop::array::uniform::<_, N>(any::<u8>())
        .prop_filter("ids are not all zero", |id| id.iter().any(|b| *b != 0))
        .prop_map(|id| id.to_vec())
}

fn optional_id<const N: usize>() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::array::uniform::<_, N>(any::<u8>()).prop_map(|id| id.to_vec())
    ]
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    proptest::option::of(
        (
            attributes(),
            any::<u32>(),
            vec(
                (
                    any::<String>(),
                    any::<String>(),
                    vec(any::<String>(), 0..3),
                    vec(any::<String>(), 0..2),
                ),
                0..2,
            ),
        )
            .prop_map(|(attributes, dropped, refs)| Resource {
                attributes,
                dropped_attributes_count: dropped,
                entity_refs: refs
                    .into_iter()
                    .map(|(schema_url, kind, id_keys, description_keys)| EntityRef {
                        schema_url,
                        r#type: kind,
                        id_keys,
                        description_keys,
                    })
                    .collect(),
            }),
    )
}

fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    proptest::option::of(
        (any::<String>(), any::<String>(), attributes(), any::<u32>()).prop_map(
            |(name, version, attributes, dropped)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count: dropped,
            },
        ),
    )
}

fn span() -> impl Strategy<Value = Span> {
    let ids = (
        nonzero::<16>(),
        nonzero::<8>(),
        optional_id::<8>(),
        any::<String>(),
        any::<u32>(),
    );
    let body = (
        any::<String>(),
        any::<i32>(),
        any::<u64>(),
        any::<u64>(),
        attributes(),
        any::<u32>(),
    );
    let events = vec(
        (any::<u64>(), any::<String>(), attributes(), any::<u32>()).prop_map(
            |(time, name, attributes, dropped)| Event {
                time_unix_nano: time,
                name,
                attributes,
                dropped_attributes_count: dropped,
            },
        ),
        0..3,
    );
    let links = vec(
        (
            optional_id::<16>(),
            optional_id::<8>(),
            any::<String>(),
            attributes(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(trace_id, span_id, trace_state, attributes, dropped, flags)| Link {
                    trace_id,
                    span_id,
                    trace_state,
                    attributes,
                    dropped_attributes_count: dropped,
                    flags,
                },
            ),
        0..2,
    );
    let status = proptest::option::of(
        (any::<String>(), any::<i32>()).prop_map(|(message, code)| Status { message, code }),
    );
    (ids, body, events, any::<u32>(), links, any::<u32>(), status).prop_map(
        |(
            (trace_id, span_id, parent, trace_state, flags),
            (name, kind, start, end, attributes, dropped),
            events,
            dropped_events,
            links,
            dropped_links,
            status,
        )| Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id: parent,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count: dropped,
            events,
            dropped_events_count: dropped_events,
            links,
            dropped_links_count: dropped_links,
            status,
        },
    )
}

fn traces_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    vec(
        (
            resource(),
            any::<String>(),
            vec((scope(), vec(span(), 1..4), any::<String>()), 1..3),
        )
            .prop_map(|(resource, schema_url, scopes)| ResourceSpans {
                resource,
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans, schema_url)| ScopeSpans {
                        scope,
                        spans,
                        schema_url,
                    })
                    .collect(),
                schema_url,
            }),
        1..3,
    )
    .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<i32>(),
            any::<String>(),
            proptest::option::of(any_value()),
        ),
        (
            attributes(),
            any::<u32>(),
            any::<u32>(),
            optional_id::<16>(),
            optional_id::<8>(),
            any::<String>(),
        ),
    )
        .prop_map(
            |(
                (time, observed, severity, severity_text, body),
                (attributes, dropped, flags, trace_id, span_id, event_name),
            )| {
                LogRecord {
                    time_unix_nano: time,
                    observed_time_unix_nano: observed,
                    severity_number: severity,
                    severity_text,
                    body,
                    attributes,
                    dropped_attributes_count: dropped,
                    flags,
                    trace_id,
                    span_id,
                    event_name,
                }
            },
        )
}

fn logs_request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    vec(
        (
            resource(),
            any::<String>(),
            vec((scope(), vec(log_record(), 1..4), any::<String>()), 1..3),
        )
            .prop_map(|(resource, schema_url, scopes)| ResourceLogs {
                resource,
                scope_logs: scopes
                    .into_iter()
                    .map(|(scope, log_records, schema_url)| ScopeLogs {
                        scope,
                        log_records,
                        schema_url,
                    })
                    .collect(),
                schema_url,
            }),
        1..3,
    )
    .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            optional_id::<8>(),
            optional_id::<16>(),
            proptest::option::of(prop_oneof![
                any::<f64>().prop_map(exemplar::Value::AsDouble),
                any::<i64>().prop_map(exemplar::Value::AsInt)
            ]),
        )
            .prop_map(
                |(filtered_attributes, time, span_id, trace_id, value)| Exemplar {
                    filtered_attributes,
                    time_unix_nano: time,
                    span_id,
                    trace_id,
                    value,
                },
            ),
        0..2,
    )
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        exemplars(),
        any::<u32>(),
        proptest::option::of(prop_oneof![
            any::<f64>().prop_map(number_data_point::Value::AsDouble),
            any::<i64>().prop_map(number_data_point::Value::AsInt)
        ]),
    )
        .prop_map(
            |(attributes, start, time, exemplars, flags, value)| NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                exemplars,
                flags,
                value,
            },
        )
}

fn histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
    let bounds = vec(any::<f64>(), 0..4);
    (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(any::<f64>()),
        bounds,
        any::<bool>(),
    )
        .prop_flat_map(|(attributes, start, time, count, sum, bounds, empty)| {
            let buckets = if empty { 0 } else { bounds.len() + 1 };
            (
                Just((attributes, start, time, count, sum, bounds)),
                vec(any::<u64>(), buckets),
                exemplars(),
                any::<u32>(),
                proptest::option::of(any::<f64>()),
                proptest::option::of(any::<f64>()),
            )
        })
        .prop_map(
            |(
                (attributes, start, time, count, sum, explicit_bounds),
                bucket_counts,
                exemplars,
                flags,
                min,
                max,
            )| {
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    exemplars,
                    flags,
                    min,
                    max,
                }
            },
        )
}

fn buckets() -> impl Strategy<Value = Option<Buckets>> {
    proptest::option::of((any::<i32>(), vec(any::<u64>(), 0..4)).prop_map(
        |(offset, bucket_counts)| Buckets {
            offset,
            bucket_counts,
        },
    ))
}

fn exponential_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    (
        (
            attributes(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<f64>()),
            any::<i32>(),
        ),
        (
            any::<u64>(),
            buckets(),
            buckets(),
            any::<u32>(),
            exemplars(),
        ),
        (
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<f64>()),
            any::<f64>(),
        ),
    )
        .prop_map(
            |(
                (attributes, start, time, count, sum, scale),
                (zero_count, positive, negative, flags, exemplars),
                (min, max, zero_threshold),
            )| {
                ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    scale,
                    zero_count,
                    positive,
                    negative,
                    flags,
                    exemplars,
                    min,
                    max,
                    zero_threshold,
                }
            },
        )
}

fn summary_point() -> impl Strategy<Value = SummaryDataPoint> {
    (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<f64>(),
        vec(
            (any::<f64>(), any::<f64>())
                .prop_map(|(quantile, value)| ValueAtQuantile { quantile, value }),
            0..3,
        ),
        any::<u32>(),
    )
        .prop_map(
            |(attributes, start, time, count, sum, quantile_values, flags)| SummaryDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum,
                quantile_values,
                flags,
            },
        )
}

fn metric() -> impl Strategy<Value = Metric> {
    let data = prop_oneof![
        vec(number_point(), 1..3)
            .prop_map(|data_points| metric::Data::Gauge(Gauge { data_points })),
        (vec(number_point(), 1..3), any::<i32>(), any::<bool>()).prop_map(
            |(data_points, temporality, monotonic)| {
                metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: temporality,
                    is_monotonic: monotonic,
                })
            }
        ),
        (vec(histogram_point(), 1..3), any::<i32>()).prop_map(|(data_points, temporality)| {
            metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: temporality,
            })
        }),
        (vec(exponential_point(), 1..3), any::<i32>()).prop_map(|(data_points, temporality)| {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: temporality,
            })
        }),
        vec(summary_point(), 1..3)
            .prop_map(|data_points| metric::Data::Summary(Summary { data_points })),
    ];
    (
        "[a-z][a-z._]{0,8}",
        any::<String>(),
        any::<String>(),
        attributes(),
        data,
    )
        .prop_map(|(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data: Some(data),
        })
}

fn metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    vec(
        (
            resource(),
            any::<String>(),
            vec((scope(), vec(metric(), 1..3), any::<String>()), 1..3),
        )
            .prop_map(|(resource, schema_url, scopes)| ResourceMetrics {
                resource,
                scope_metrics: scopes
                    .into_iter()
                    .map(|(scope, metrics, schema_url)| ScopeMetrics {
                        scope,
                        metrics,
                        schema_url,
                    })
                    .collect(),
                schema_url,
            }),
        1..3,
    )
    .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

// ---- comparison: every record with its full context, as a sorted list ---------------

fn encoded<M: Message>(message: Option<&M>) -> Vec<u8> {
    match message {
        Some(message) => {
            let mut bytes = vec![1];
            bytes.extend(message.encode_to_vec());
            bytes
        }
        None => vec![0],
    }
}

type Flat = Vec<(Vec<u8>, String, Vec<u8>, String, Vec<u8>)>;

fn flat_traces(request: &ExportTraceServiceRequest) -> Flat {
    let mut out = Flat::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push((
                    encoded(rs.resource.as_ref()),
                    rs.schema_url.clone(),
                    encoded(ss.scope.as_ref()),
                    ss.schema_url.clone(),
                    span.encode_to_vec(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn flat_logs(request: &ExportLogsServiceRequest) -> Flat {
    let mut out = Flat::new();
    for rl in &request.resource_logs {
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                out.push((
                    encoded(rl.resource.as_ref()),
                    rl.schema_url.clone(),
                    encoded(sl.scope.as_ref()),
                    sl.schema_url.clone(),
                    record.encode_to_vec(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Each point becomes its own metric (header + one point), so grouping does not matter.
fn flat_metrics(request: &ExportMetricsServiceRequest) -> Flat {
    let mut out = Flat::new();
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let single = |data: metric::Data| Metric {
                    data: Some(data),
                    ..metric.clone()
                };
                let points: Vec<Metric> = match &metric.data {
                    None => Vec::new(),
                    Some(metric::Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .map(|p| {
                            single(metric::Data::Gauge(Gauge {
                                data_points: vec![p.clone()],
                            }))
                        })
                        .collect(),
                    Some(metric::Data::Sum(s)) => s
                        .data_points
                        .iter()
                        .map(|p| {
                            single(metric::Data::Sum(Sum {
                                data_points: vec![p.clone()],
                                ..s.clone()
                            }))
                        })
                        .collect(),
                    Some(metric::Data::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| {
                            single(metric::Data::Histogram(Histogram {
                                data_points: vec![p.clone()],
                                ..h.clone()
                            }))
                        })
                        .collect(),
                    Some(metric::Data::ExponentialHistogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| {
                            single(metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![p.clone()],
                                ..h.clone()
                            }))
                        })
                        .collect(),
                    Some(metric::Data::Summary(s)) => s
                        .data_points
                        .iter()
                        .map(|p| {
                            single(metric::Data::Summary(Summary {
                                data_points: vec![p.clone()],
                            }))
                        })
                        .collect(),
                };
                for point in points {
                    out.push((
                        encoded(rm.resource.as_ref()),
                        rm.schema_url.clone(),
                        encoded(sm.scope.as_ref()),
                        sm.schema_url.clone(),
                        point.encode_to_vec(),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

// ---- the round trip ------------------------------------------------------------------

struct Fixture {
    runtime: tokio::runtime::Runtime,
    ingestor: Ingestor,
    lake: Arc<Lakehouse>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let lake = runtime.block_on(async {
            // Without a WAL every write is committed at once, so the rows come back from
            // the Parquet files, not from memory.
            Lakehouse::open(LakeConfig::new(
                format!("file://{}", dir.path().join("lake").display()),
                format!("sqlite://{}", dir.path().join("catalog.db").display()),
            ))
            .await
            .unwrap()
        });
        let lake = Arc::new(lake);
        Fixture {
            runtime,
            ingestor: Ingestor::new(Arc::clone(&lake), usize::MAX),
            lake,
            _dir: dir,
        }
    })
}

/// Makes every resource of a case unique to it (an attribute, or a schema URL suffix for
/// absent resources), so its process id, and so its rows, are its own.
fn mark(resource: &mut Option<Resource>, schema_url: &mut String, case: &str) {
    if resource.is_none() {
        schema_url.push_str(case);
    }
    if let Some(resource) = resource {
        resource.attributes.push(KeyValue {
            key: "tarn.test.case".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(case.to_owned())),
            }),
            ..Default::default()
        });
    }
}

async fn rows(lake: &Lakehouse, sql: &str) -> Vec<RecordBatch> {
    let engine = lake.query_engine();
    let frame = engine.plan(sql, None).await.unwrap();
    frame.collect().await.unwrap()
}

/// Ingests the request and returns the rows of `tables` that belong to its processes,
/// and those processes.
async fn ingest<E: Export>(
    request: &E::Request,
    tables: &[&str],
) -> (Vec<Vec<RecordBatch>>, Vec<RecordBatch>) {
    let fixture = fixture();
    // Through the protobuf bytes, as the routes take them (traces read them directly).
    let normalized =
        E::normalize_protobuf(&request.encode_to_vec(), 1_700_000_000_000_000_000).unwrap();
    assert_eq!(
        normalized.rejections.count, 0,
        "{:?}",
        normalized.rejections
    );
    let ids: Vec<String> = normalized
        .processes
        .iter()
        .map(|p| format!("'{}'", p.process_id))
        .collect();
    fixture
        .ingestor
        .ingest(normalized, "otlp_http")
        .await
        .unwrap();
    let list = ids.join(", ");
    let mut out = Vec::new();
    for table in tables {
        out.push(
            rows(
                &fixture.lake,
                &format!("SELECT * FROM {table} WHERE process_id IN ({list})"),
            )
            .await,
        );
    }
    let processes = rows(
        &fixture.lake,
        &format!("SELECT * FROM processes WHERE process_id IN ({list})"),
    )
    .await;
    (out, processes)
}

/// Everything a normalization produced, in comparable form.
fn normalized_parts(
    mut normalized: tarn_gateway::otlp::Normalized,
) -> (Vec<RecordBatch>, Vec<RecordBatch>, i64, Option<String>) {
    let mut batches: Vec<RecordBatch> = normalized
        .batches
        .drain(..)
        .map(|(_, batch)| batch.unwrap())
        .collect();
    let processes = normalized.process_rows.finish().unwrap();
    let streams = normalized.stream_rows.finish().unwrap();
    batches.push(processes);
    (
        batches,
        vec![streams],
        normalized.rejections.count,
        normalized.rejections.message,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Traces read straight from protobuf bytes give what prost's decode and
    /// `Traces::normalize` give: the same rows, processes, streams and rejections for any
    /// request, and an error exactly when prost refuses the bytes (requests with bytes
    /// overwritten or cut short, spans with invalid ids).
    #[test]
    fn traces_from_bytes_match_prost(
        mut request in traces_request(),
        invalid_ids in vec(any::<prop::sample::Index>(), 0..2),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        for index in invalid_ids {
            let resource = index.index(request.resource_spans.len());
            let span = &mut request.resource_spans[resource].scope_spans[0].spans[0];
            span.trace_id.truncate(index.index(16));
        }
        same_as_prost::<Traces>(&mangle(request.encode_to_vec(), &flips, cut))?;
    }

    /// The same for logs (records with invalid ids, bodies of every type).
    #[test]
    fn logs_from_bytes_match_prost(
        mut request in logs_request(),
        invalid_ids in vec(any::<prop::sample::Index>(), 0..2),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        for index in invalid_ids {
            let resource = index.index(request.resource_logs.len());
            let record = &mut request.resource_logs[resource].scope_logs[0].log_records[0];
            record.span_id = vec![7; index.index(8)];
        }
        same_as_prost::<Logs>(&mangle(request.encode_to_vec(), &flips, cut))?;
    }
}

/// `bytes` with some overwritten and the tail cut off.
fn mangle(
    mut bytes: Vec<u8>,
    flips: &[(prop::sample::Index, u8)],
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    for (at, value) in flips {
        let position = at.index(bytes.len());
        bytes[position] = *value;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len() + 1));
    }
    bytes
}

/// Reading `bytes` directly and through prost ends the same way.
fn same_as_prost<E: Export>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let now = 1_700_000_000_000_000_000;
    let direct = E::normalize_protobuf(bytes, now);
    let via_prost = E::Request::decode(bytes).map(|request| E::normalize(&request, now));
    match (direct, via_prost) {
        (Ok(direct), Ok(via_prost)) => {
            prop_assert_eq!(normalized_parts(direct), normalized_parts(via_prost));
        }
        (Err(_), Err(_)) => {}
        (direct, via_prost) => prop_assert!(
            false,
            "direct {:?} but prost {:?}",
            direct.map(|n| n.rejections),
            via_prost.map(|n| n.rejections)
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn traces_round_trip(mut request in traces_request()) {
        let case = uuid::Uuid::new_v4().to_string();
        request.resource_spans.iter_mut().for_each(|rs| mark(&mut rs.resource, &mut rs.schema_url, &case));
        let fixture = fixture();
        let (tables, processes) = fixture.runtime.block_on(ingest::<Traces>(&request, &["spans"]));
        let rebuilt = rebuild::traces(&tables[0], &processes).unwrap();
        prop_assert_eq!(flat_traces(&rebuilt), flat_traces(&request));
    }

    #[test]
    fn logs_round_trip(mut request in logs_request()) {
        let case = uuid::Uuid::new_v4().to_string();
        request.resource_logs.iter_mut().for_each(|rl| mark(&mut rl.resource, &mut rl.schema_url, &case));
        let fixture = fixture();
        let (tables, processes) = fixture.runtime.block_on(ingest::<Logs>(&request, &["log_entries"]));
        let rebuilt = rebuild::logs(&tables[0], &processes).unwrap();
        prop_assert_eq!(flat_logs(&rebuilt), flat_logs(&request));
    }

    #[test]
    fn metrics_round_trip(mut request in metrics_request()) {
        let case = uuid::Uuid::new_v4().to_string();
        request.resource_metrics.iter_mut().for_each(|rm| mark(&mut rm.resource, &mut rm.schema_url, &case));
        let fixture = fixture();
        let (tables, processes) =
            fixture.runtime.block_on(ingest::<Metrics>(&request, &["measures", "histograms"]));
        let rebuilt = rebuild::metrics(&tables[0], &tables[1], &processes).unwrap();
        prop_assert_eq!(flat_metrics(&rebuilt), flat_metrics(&request));
    }
}
