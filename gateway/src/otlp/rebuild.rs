//! Rows of the canonical tables back to OTLP messages: the inverse of normalization.
//!
//! Normalization is lossless, and this module is the proof: the property test ingests
//! generated requests, reads the rows back with SQL and rebuilds requests equal to the
//! originals (as sets of records, each with its resource and scope; OTLP's batching and
//! the order of records within a batch are transport details the tables do not keep).

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray,
    MapArray, RecordBatch, StringArray, StructArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
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

/// Why rows could not be turned back into OTLP.
#[derive(Debug, thiserror::Error)]
#[error("cannot rebuild OTLP from rows: {0}")]
pub struct RebuildError(String);

type Result<T> = std::result::Result<T, RebuildError>;

fn error(message: impl Into<String>) -> RebuildError {
    RebuildError(message.into())
}

/// Column access by name, with the casts query results may need (view types).
struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn raw(&self, name: &str) -> Result<&'a ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| error(format!("no column {name}")))
    }

    fn strings(&self, name: &str) -> Result<StringArray> {
        let column = cast(self.raw(name)?, &DataType::Utf8).map_err(|e| error(e.to_string()))?;
        Ok(column.as_string::<i32>().clone())
    }

    fn int64(&self, name: &str) -> Result<Int64Array> {
        Ok(self.raw(name)?.as_primitive::<Int64Type>().clone())
    }

    fn int32(&self, name: &str) -> Result<Int32Array> {
        Ok(self.raw(name)?.as_primitive::<Int32Type>().clone())
    }

    fn float64(&self, name: &str) -> Result<Float64Array> {
        Ok(self.raw(name)?.as_primitive::<Float64Type>().clone())
    }

    fn booleans(&self, name: &str) -> Result<BooleanArray> {
        Ok(self.raw(name)?.as_boolean().clone())
    }

    fn map(&self, name: &str) -> Result<MapArray> {
        Ok(self.raw(name)?.as_map().clone())
    }

    fn list(&self, name: &str) -> Result<ListArray> {
        Ok(self.raw(name)?.as_list::<i32>().clone())
    }

    fn struct_(&self, name: &str) -> Result<StructArray> {
        Ok(self.raw(name)?.as_struct().clone())
    }
}

fn text(array: &StringArray, row: usize) -> String {
    if array.is_null(row) {
        String::new()
    } else {
        array.value(row).to_owned()
    }
}

fn opt_i64(array: &Int64Array, row: usize) -> Option<i64> {
    array.is_valid(row).then(|| array.value(row))
}

fn opt_i32(array: &Int32Array, row: usize) -> Option<i32> {
    array.is_valid(row).then(|| array.value(row))
}

fn opt_f64(array: &Float64Array, row: usize) -> Option<f64> {
    array.is_valid(row).then(|| array.value(row))
}

fn u32_of(value: Option<i64>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn u64_of(value: Option<i64>) -> u64 {
    // Stored bit for bit.
    value.map(|v| v as u64).unwrap_or(0)
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return Err(error(format!("odd-length hex {text:?}")));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|e| error(format!("bad hex {text:?}: {e}")))
        })
        .collect()
}

fn id(array: &StringArray, row: usize) -> Result<Vec<u8>> {
    if array.is_null(row) {
        Ok(Vec::new())
    } else {
        unhex(array.value(row))
    }
}

/// An OTLP/JSON `AnyValue` object back to the message.
pub fn any_value_from_json(json: &str) -> Result<AnyValue> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| error(format!("bad value JSON: {e}")))?;
    any_value_from(&value)
}

fn any_value_from(value: &serde_json::Value) -> Result<AnyValue> {
    let object = value
        .as_object()
        .ok_or_else(|| error("AnyValue must be an object"))?;
    let Some((member, inner)) = object.iter().next() else {
        return Ok(AnyValue { value: None });
    };
    let bad = || error(format!("bad {member} {inner}"));
    let value = match member.as_str() {
        "stringValue" => Value::StringValue(inner.as_str().ok_or_else(bad)?.to_owned()),
        "boolValue" => Value::BoolValue(inner.as_bool().ok_or_else(bad)?),
        "intValue" => Value::IntValue(match inner {
            serde_json::Value::String(text) => text.parse().map_err(|_| bad())?,
            other => other.as_i64().ok_or_else(bad)?,
        }),
        "doubleValue" => Value::DoubleValue(match inner {
            serde_json::Value::String(text) => match text.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => other.parse().map_err(|_| bad())?,
            },
            other => other.as_f64().ok_or_else(bad)?,
        }),
        "bytesValue" => Value::BytesValue(
            BASE64
                .decode(inner.as_str().ok_or_else(bad)?)
                .map_err(|_| bad())?,
        ),
        "stringValueStrindex" => Value::StringValueStrindex(
            inner
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(bad)?,
        ),
        "arrayValue" => {
            let values = inner
                .get("values")
                .and_then(|v| v.as_array())
                .ok_or_else(bad)?;
            Value::ArrayValue(ArrayValue {
                values: values.iter().map(any_value_from).collect::<Result<_>>()?,
            })
        }
        "kvlistValue" => {
            let values = inner
                .get("values")
                .and_then(|v| v.as_array())
                .ok_or_else(bad)?;
            let mut pairs = Vec::with_capacity(values.len());
            for pair in values {
                let key = pair.get("key").and_then(|k| k.as_str()).ok_or_else(bad)?;
                let value = pair.get("value").map(any_value_from).transpose()?;
                pairs.push(KeyValue {
                    key: key.to_owned(),
                    value,
                    ..Default::default()
                });
            }
            Value::KvlistValue(KeyValueList { values: pairs })
        }
        other => return Err(error(format!("unknown AnyValue member {other}"))),
    };
    Ok(AnyValue { value: Some(value) })
}

/// One typed value (the struct of an attribute map or a log body) back to `AnyValue`;
/// `None` for a null struct.
fn typed_value(values: &StructArray, index: usize) -> Result<Option<AnyValue>> {
    if values.is_null(index) {
        return Ok(None);
    }
    let member = |name: &str| {
        values
            .column_by_name(name)
            .ok_or_else(|| error(format!("no member {name}")))
    };
    let strings = cast(member("str")?, &DataType::Utf8).map_err(|e| error(e.to_string()))?;
    let strings = strings.as_string::<i32>();
    if strings.is_valid(index) {
        return Ok(Some(AnyValue {
            value: Some(Value::StringValue(strings.value(index).to_owned())),
        }));
    }
    let ints = member("int")?.as_primitive::<Int64Type>();
    if ints.is_valid(index) {
        return Ok(Some(AnyValue {
            value: Some(Value::IntValue(ints.value(index))),
        }));
    }
    let doubles = member("double")?.as_primitive::<Float64Type>();
    if doubles.is_valid(index) {
        return Ok(Some(AnyValue {
            value: Some(Value::DoubleValue(doubles.value(index))),
        }));
    }
    let bools = member("bool")?.as_boolean();
    if bools.is_valid(index) {
        return Ok(Some(AnyValue {
            value: Some(Value::BoolValue(bools.value(index))),
        }));
    }
    let bytes = cast(member("bytes")?, &DataType::Binary).map_err(|e| error(e.to_string()))?;
    let bytes = bytes.as_binary::<i32>();
    if bytes.is_valid(index) {
        return Ok(Some(AnyValue {
            value: Some(Value::BytesValue(bytes.value(index).to_vec())),
        }));
    }
    let json = cast(member("json")?, &DataType::Utf8).map_err(|e| error(e.to_string()))?;
    let json = json.as_string::<i32>();
    if json.is_valid(index) {
        return any_value_from_json(json.value(index)).map(Some);
    }
    Ok(Some(AnyValue { value: None }))
}

/// Row `row` of an attribute map back to key-values.
fn attributes(map: &MapArray, row: usize) -> Result<Vec<KeyValue>> {
    if map.is_null(row) {
        return Ok(Vec::new());
    }
    let offsets = map.value_offsets();
    let start = usize::try_from(offsets[row]).map_err(|e| error(e.to_string()))?;
    let end = usize::try_from(offsets[row + 1]).map_err(|e| error(e.to_string()))?;
    let keys = cast(map.keys(), &DataType::Utf8).map_err(|e| error(e.to_string()))?;
    let keys = keys.as_string::<i32>();
    let values = map.values().as_struct();
    (start..end)
        .map(|index| {
            Ok(KeyValue {
                key: keys.value(index).to_owned(),
                value: typed_value(values, index)?,
                ..Default::default()
            })
        })
        .collect()
}

/// The items of a `list<struct>` row, as a struct array.
fn list_items(list: &ListArray, row: usize) -> Option<StructArray> {
    if list.is_null(row) {
        return None;
    }
    Some(list.value(row).as_struct().clone())
}

fn list_i64(list: &ListArray, row: usize) -> Option<Vec<i64>> {
    if list.is_null(row) {
        return None;
    }
    Some(
        list.value(row)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
    )
}

fn list_f64(list: &ListArray, row: usize) -> Option<Vec<f64>> {
    if list.is_null(row) {
        return None;
    }
    Some(
        list.value(row)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec(),
    )
}

/// A process row: the resource and the resource-level schema URL.
#[derive(Debug, Clone)]
struct ResourceRow {
    resource: Option<Resource>,
    schema_url: String,
}

/// `processes` rows by process id.
fn resources(processes: &[RecordBatch]) -> Result<BTreeMap<String, ResourceRow>> {
    let mut out = BTreeMap::new();
    for batch in processes {
        let columns = Columns { batch };
        let ids = columns.strings("process_id")?;
        let properties = columns.map("properties")?;
        let dropped = columns.int64("dropped_properties_count")?;
        let schema_urls = columns.strings("schema_url")?;
        let entity_refs = columns.strings("entity_refs")?;
        for row in 0..batch.num_rows() {
            let resource = if dropped.is_null(row) {
                None
            } else {
                Some(Resource {
                    attributes: attributes(&properties, row)?,
                    dropped_attributes_count: u32_of(opt_i64(&dropped, row)),
                    entity_refs: if entity_refs.is_null(row) {
                        Vec::new()
                    } else {
                        entity_refs_from_json(entity_refs.value(row))?
                    },
                })
            };
            out.insert(
                ids.value(row).to_owned(),
                ResourceRow {
                    resource,
                    schema_url: text(&schema_urls, row),
                },
            );
        }
    }
    Ok(out)
}

fn entity_refs_from_json(json: &str) -> Result<Vec<EntityRef>> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| error(format!("bad entity refs: {e}")))?;
    let items = value
        .as_array()
        .ok_or_else(|| error("entity refs must be an array"))?;
    let strings = |item: &serde_json::Value, key: &str| -> Vec<String> {
        item.get(key)
            .and_then(|v| v.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(items
        .iter()
        .map(|item| EntityRef {
            schema_url: item
                .get("schemaUrl")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            r#type: item
                .get("type")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            id_keys: strings(item, "idKeys"),
            description_keys: strings(item, "descriptionKeys"),
        })
        .collect())
}

/// The scope of a row and its scope-level schema URL.
fn scope(columns: &Columns<'_>, row: usize) -> Result<(Option<InstrumentationScope>, String)> {
    let names = columns.strings("scope_name")?;
    let versions = columns.strings("scope_version")?;
    let properties = columns.map("scope_properties")?;
    let dropped = columns.int64("scope_dropped_properties_count")?;
    let schema_urls = columns.strings("scope_schema_url")?;
    let scope = if dropped.is_null(row) {
        None
    } else {
        Some(InstrumentationScope {
            name: text(&names, row),
            version: text(&versions, row),
            attributes: attributes(&properties, row)?,
            dropped_attributes_count: u32_of(opt_i64(&dropped, row)),
        })
    };
    Ok((scope, text(&schema_urls, row)))
}

fn resource_of<'a>(
    resources: &'a BTreeMap<String, ResourceRow>,
    process_id: &str,
) -> Result<&'a ResourceRow> {
    resources
        .get(process_id)
        .ok_or_else(|| error(format!("no processes row for {process_id}")))
}

/// Spans rows (with their `processes` rows) back to a trace export, one resource and
/// scope group per row.
pub fn traces(
    spans: &[RecordBatch],
    processes: &[RecordBatch],
) -> Result<ExportTraceServiceRequest> {
    let resources = resources(processes)?;
    let mut request = ExportTraceServiceRequest::default();
    for batch in spans {
        let c = Columns { batch };
        let process_ids = c.strings("process_id")?;
        let trace_ids = c.strings("trace_id")?;
        let span_ids = c.strings("span_id")?;
        let parents = c.strings("parent_span_id")?;
        let trace_states = c.strings("trace_state")?;
        let flags = c.int64("flags")?;
        let names = c.strings("name")?;
        let kinds = c.int32("kind")?;
        let starts = c.int64("start_time_unix_nano")?;
        let ends = c.int64("end_time_unix_nano")?;
        let status_codes = c.int32("status_code")?;
        let status_messages = c.strings("status_message")?;
        let properties = c.map("properties")?;
        let dropped = c.int64("dropped_properties_count")?;
        let events = c.list("events")?;
        let dropped_events = c.int64("dropped_events_count")?;
        let links = c.list("links")?;
        let dropped_links = c.int64("dropped_links_count")?;
        for row in 0..batch.num_rows() {
            let resource = resource_of(&resources, process_ids.value(row))?;
            let (scope, scope_schema_url) = scope(&c, row)?;
            let span = Span {
                trace_id: id(&trace_ids, row)?,
                span_id: id(&span_ids, row)?,
                trace_state: text(&trace_states, row),
                parent_span_id: id(&parents, row)?,
                flags: u32_of(opt_i64(&flags, row)),
                name: text(&names, row),
                kind: opt_i32(&kinds, row).unwrap_or(0),
                start_time_unix_nano: u64_of(opt_i64(&starts, row)),
                end_time_unix_nano: u64_of(opt_i64(&ends, row)),
                attributes: attributes(&properties, row)?,
                dropped_attributes_count: u32_of(opt_i64(&dropped, row)),
                events: match list_items(&events, row) {
                    Some(items) => span_events(&items)?,
                    None => Vec::new(),
                },
                dropped_events_count: u32_of(opt_i64(&dropped_events, row)),
                links: match list_items(&links, row) {
                    Some(items) => span_links(&items)?,
                    None => Vec::new(),
                },
                dropped_links_count: u32_of(opt_i64(&dropped_links, row)),
                status: opt_i32(&status_codes, row).map(|code| Status {
                    message: text(&status_messages, row),
                    code,
                }),
            };
            request.resource_spans.push(ResourceSpans {
                resource: resource.resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope,
                    spans: vec![span],
                    schema_url: scope_schema_url,
                }],
                schema_url: resource.schema_url.clone(),
            });
        }
    }
    Ok(request)
}

fn span_events(items: &StructArray) -> Result<Vec<Event>> {
    let batch = RecordBatch::from(items.clone());
    let c = Columns { batch: &batch };
    let times = c.int64("time_unix_nano")?;
    let names = c.strings("name")?;
    let properties = c.map("properties")?;
    let dropped = c.int64("dropped_properties_count")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Event {
                time_unix_nano: u64_of(opt_i64(&times, i)),
                name: text(&names, i),
                attributes: attributes(&properties, i)?,
                dropped_attributes_count: u32_of(opt_i64(&dropped, i)),
            })
        })
        .collect()
}

fn span_links(items: &StructArray) -> Result<Vec<Link>> {
    let batch = RecordBatch::from(items.clone());
    let c = Columns { batch: &batch };
    let trace_ids = c.strings("trace_id")?;
    let span_ids = c.strings("span_id")?;
    let trace_states = c.strings("trace_state")?;
    let flags = c.int64("flags")?;
    let properties = c.map("properties")?;
    let dropped = c.int64("dropped_properties_count")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Link {
                trace_id: id(&trace_ids, i)?,
                span_id: id(&span_ids, i)?,
                trace_state: text(&trace_states, i),
                attributes: attributes(&properties, i)?,
                dropped_attributes_count: u32_of(opt_i64(&dropped, i)),
                flags: u32_of(opt_i64(&flags, i)),
            })
        })
        .collect()
}

/// `log_entries` rows (with their `processes` rows) back to a logs export.
pub fn logs(
    entries: &[RecordBatch],
    processes: &[RecordBatch],
) -> Result<ExportLogsServiceRequest> {
    let resources = resources(processes)?;
    let mut request = ExportLogsServiceRequest::default();
    for batch in entries {
        let c = Columns { batch };
        let process_ids = c.strings("process_id")?;
        let times = c.int64("time_unix_nano")?;
        let observed = c.int64("observed_time_unix_nano")?;
        let severities = c.int32("severity_number")?;
        let severity_texts = c.strings("severity_text")?;
        let msgs = c.strings("msg")?;
        let bodies = c.struct_("body")?;
        let trace_ids = c.strings("trace_id")?;
        let span_ids = c.strings("span_id")?;
        let flags = c.int64("flags")?;
        let event_names = c.strings("event_name")?;
        let properties = c.map("properties")?;
        let dropped = c.int64("dropped_properties_count")?;
        for row in 0..batch.num_rows() {
            let resource = resource_of(&resources, process_ids.value(row))?;
            let (scope, scope_schema_url) = scope(&c, row)?;
            let body = match typed_value(&bodies, row)? {
                Some(body) => Some(body),
                None if msgs.is_valid(row) => Some(AnyValue {
                    value: Some(Value::StringValue(msgs.value(row).to_owned())),
                }),
                None => None,
            };
            let record = LogRecord {
                time_unix_nano: u64_of(opt_i64(&times, row)),
                observed_time_unix_nano: u64_of(opt_i64(&observed, row)),
                severity_number: opt_i32(&severities, row).unwrap_or(0),
                severity_text: text(&severity_texts, row),
                body,
                attributes: attributes(&properties, row)?,
                dropped_attributes_count: u32_of(opt_i64(&dropped, row)),
                flags: u32_of(opt_i64(&flags, row)),
                trace_id: id(&trace_ids, row)?,
                span_id: id(&span_ids, row)?,
                event_name: text(&event_names, row),
            };
            request.resource_logs.push(ResourceLogs {
                resource: resource.resource.clone(),
                scope_logs: vec![ScopeLogs {
                    scope,
                    log_records: vec![record],
                    schema_url: scope_schema_url,
                }],
                schema_url: resource.schema_url.clone(),
            });
        }
    }
    Ok(request)
}

fn exemplars(list: &ListArray, row: usize) -> Result<Vec<Exemplar>> {
    let Some(items) = list_items(list, row) else {
        return Ok(Vec::new());
    };
    let batch = RecordBatch::from(items);
    let c = Columns { batch: &batch };
    let times = c.int64("time_unix_nano")?;
    let values = c.float64("value")?;
    let ints = c.int64("int_value")?;
    let trace_ids = c.strings("trace_id")?;
    let span_ids = c.strings("span_id")?;
    let properties = c.map("filtered_properties")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Exemplar {
                filtered_attributes: attributes(&properties, i)?,
                time_unix_nano: u64_of(opt_i64(&times, i)),
                span_id: id(&span_ids, i)?,
                trace_id: id(&trace_ids, i)?,
                value: match (opt_i64(&ints, i), opt_f64(&values, i)) {
                    (Some(int), _) => Some(exemplar::Value::AsInt(int)),
                    (None, Some(double)) => Some(exemplar::Value::AsDouble(double)),
                    (None, None) => None,
                },
            })
        })
        .collect()
}

/// The metric a point row belongs to, without its points.
fn metric_header(c: &Columns<'_>, row: usize) -> Result<Metric> {
    Ok(Metric {
        name: text(&c.strings("name")?, row),
        description: text(&c.strings("description")?, row),
        unit: text(&c.strings("unit")?, row),
        metadata: attributes(&c.map("metric_metadata")?, row)?,
        data: None,
    })
}

fn wrap_metric(
    request: &mut ExportMetricsServiceRequest,
    resource: &ResourceRow,
    scope: (Option<InstrumentationScope>, String),
    metric: Metric,
) {
    request.resource_metrics.push(ResourceMetrics {
        resource: resource.resource.clone(),
        scope_metrics: vec![ScopeMetrics {
            scope: scope.0,
            metrics: vec![metric],
            schema_url: scope.1,
        }],
        schema_url: resource.schema_url.clone(),
    });
}

/// `measures` and `histograms` rows (with their `processes` rows) back to a metrics
/// export, one metric per point.
pub fn metrics(
    measures: &[RecordBatch],
    histograms: &[RecordBatch],
    processes: &[RecordBatch],
) -> Result<ExportMetricsServiceRequest> {
    let resources = resources(processes)?;
    let mut request = ExportMetricsServiceRequest::default();
    for batch in measures {
        let c = Columns { batch };
        let process_ids = c.strings("process_id")?;
        let types = c.strings("metric_type")?;
        let starts = c.int64("start_time_unix_nano")?;
        let times = c.int64("time_unix_nano")?;
        let values = c.float64("value")?;
        let ints = c.int64("int_value")?;
        let temporalities = c.int32("aggregation_temporality")?;
        let monotonic = c.booleans("is_monotonic")?;
        let flags = c.int64("flags")?;
        let exemplar_lists = c.list("exemplars")?;
        let properties = c.map("properties")?;
        for row in 0..batch.num_rows() {
            let resource = resource_of(&resources, process_ids.value(row))?;
            let point = NumberDataPoint {
                attributes: attributes(&properties, row)?,
                start_time_unix_nano: u64_of(opt_i64(&starts, row)),
                time_unix_nano: u64_of(opt_i64(&times, row)),
                exemplars: exemplars(&exemplar_lists, row)?,
                flags: u32_of(opt_i64(&flags, row)),
                value: match (opt_i64(&ints, row), opt_f64(&values, row)) {
                    (Some(int), _) => Some(number_data_point::Value::AsInt(int)),
                    (None, Some(double)) => Some(number_data_point::Value::AsDouble(double)),
                    (None, None) => None,
                },
            };
            let mut metric = metric_header(&c, row)?;
            metric.data = Some(match types.value(row) {
                "gauge" => metric::Data::Gauge(Gauge {
                    data_points: vec![point],
                }),
                "sum" => metric::Data::Sum(Sum {
                    data_points: vec![point],
                    aggregation_temporality: opt_i32(&temporalities, row).unwrap_or(0),
                    is_monotonic: monotonic.is_valid(row) && monotonic.value(row),
                }),
                other => return Err(error(format!("unknown measure type {other}"))),
            });
            wrap_metric(&mut request, resource, scope(&c, row)?, metric);
        }
    }
    for batch in histograms {
        let c = Columns { batch };
        let process_ids = c.strings("process_id")?;
        let types = c.strings("metric_type")?;
        let starts = c.int64("start_time_unix_nano")?;
        let times = c.int64("time_unix_nano")?;
        let counts = c.int64("count")?;
        let sums = c.float64("sum")?;
        let mins = c.float64("min")?;
        let maxs = c.float64("max")?;
        let bucket_counts = c.list("bucket_counts")?;
        let bounds = c.list("explicit_bounds")?;
        let scales = c.int32("scale")?;
        let zero_counts = c.int64("zero_count")?;
        let zero_thresholds = c.float64("zero_threshold")?;
        let positive_offsets = c.int32("positive_offset")?;
        let positive_counts = c.list("positive_bucket_counts")?;
        let negative_offsets = c.int32("negative_offset")?;
        let negative_counts = c.list("negative_bucket_counts")?;
        let quantiles = c.list("quantile_values")?;
        let temporalities = c.int32("aggregation_temporality")?;
        let flags = c.int64("flags")?;
        let exemplar_lists = c.list("exemplars")?;
        let properties = c.map("properties")?;
        for row in 0..batch.num_rows() {
            let resource = resource_of(&resources, process_ids.value(row))?;
            let start = u64_of(opt_i64(&starts, row));
            let time = u64_of(opt_i64(&times, row));
            let count = u64_of(opt_i64(&counts, row));
            let point_flags = u32_of(opt_i64(&flags, row));
            let point_attributes = attributes(&properties, row)?;
            let temporality = opt_i32(&temporalities, row).unwrap_or(0);
            let as_u64 = |values: Option<Vec<i64>>| -> Vec<u64> {
                values
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v as u64)
                    .collect()
            };
            let buckets = |offsets: &Int32Array, counts: &ListArray| {
                opt_i32(offsets, row).map(|offset| Buckets {
                    offset,
                    bucket_counts: as_u64(list_i64(counts, row)),
                })
            };
            let mut metric = metric_header(&c, row)?;
            metric.data = Some(match types.value(row) {
                "histogram" => metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: point_attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count,
                        sum: opt_f64(&sums, row),
                        bucket_counts: as_u64(list_i64(&bucket_counts, row)),
                        explicit_bounds: list_f64(&bounds, row).unwrap_or_default(),
                        exemplars: exemplars(&exemplar_lists, row)?,
                        flags: point_flags,
                        min: opt_f64(&mins, row),
                        max: opt_f64(&maxs, row),
                    }],
                    aggregation_temporality: temporality,
                }),
                "exponential_histogram" => {
                    metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint {
                            attributes: point_attributes,
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count,
                            sum: opt_f64(&sums, row),
                            scale: opt_i32(&scales, row).unwrap_or(0),
                            zero_count: u64_of(opt_i64(&zero_counts, row)),
                            positive: buckets(&positive_offsets, &positive_counts),
                            negative: buckets(&negative_offsets, &negative_counts),
                            flags: point_flags,
                            exemplars: exemplars(&exemplar_lists, row)?,
                            min: opt_f64(&mins, row),
                            max: opt_f64(&maxs, row),
                            zero_threshold: opt_f64(&zero_thresholds, row).unwrap_or(0.0),
                        }],
                        aggregation_temporality: temporality,
                    })
                }
                "summary" => {
                    let values = match list_items(&quantiles, row) {
                        Some(items) => {
                            let batch = RecordBatch::from(items);
                            let q = Columns { batch: &batch };
                            let quantile = q.float64("quantile")?;
                            let value = q.float64("value")?;
                            (0..batch.num_rows())
                                .map(|i| ValueAtQuantile {
                                    quantile: quantile.value(i),
                                    value: value.value(i),
                                })
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            attributes: point_attributes,
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count,
                            sum: opt_f64(&sums, row).unwrap_or(0.0),
                            quantile_values: values,
                            flags: point_flags,
                        }],
                    })
                }
                other => return Err(error(format!("unknown histogram type {other}"))),
            });
            wrap_metric(&mut request, resource, scope(&c, row)?, metric);
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::convert::any_value_json;

    #[test]
    fn json_values_round_trip() {
        let value = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::DoubleValue(0.1 + 0.2)),
                    },
                    AnyValue {
                        value: Some(Value::DoubleValue(f64::NEG_INFINITY)),
                    },
                    AnyValue {
                        value: Some(Value::IntValue(i64::MIN)),
                    },
                    AnyValue {
                        value: Some(Value::BytesValue(vec![1, 2, 3])),
                    },
                    AnyValue { value: None },
                    AnyValue {
                        value: Some(Value::KvlistValue(KeyValueList {
                            values: vec![KeyValue {
                                key: "k\u{1}\"".into(),
                                value: None,
                                ..Default::default()
                            }],
                        })),
                    },
                ],
            })),
        };
        assert_eq!(
            any_value_from_json(&any_value_json(&value)).expect("parses"),
            value
        );
    }
}
