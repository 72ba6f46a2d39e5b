//! Conversions shared by the OTLP signals: attribute values, ids, and a resource's
//! process identity.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use tarn_lakehouse::catalog::{ProcessRecord, StreamRecord};
use tarn_lakehouse::rows::{
    AnyValueBuilder, AttributesBuilder, Identity, ProcessesBuilder, ScopeColumns, StreamsBuilder,
    append_opt_str,
};
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use tarn_proto::otlp::resource::v1::Resource;
use uuid::Uuid;

/// Namespace of OTLP process ids: `uuid_v5(ns, encoded resource + 0x1F + schema URL)`.
const PROCESS_NAMESPACE: Uuid = Uuid::from_u128(0x6c3c_0b6e_4f2a_4d7e_9a51_7a1e_2f0d_b0a1);
/// Namespace of OTLP stream ids: `uuid_v5(ns, process id + 0x1F + signal)`.
const STREAM_NAMESPACE: Uuid = Uuid::from_u128(0x0e8d_41b4_8a5c_4b0f_b3c7_2d96_51ef_7c42);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Whether `id` is a valid OTLP id of `len` bytes: right length, not all zero.
pub fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|byte| *byte != 0)
}

/// Appends OTLP key-values as one row of an attribute map.
pub fn append_attributes(builder: &mut AttributesBuilder, attributes: &[KeyValue]) {
    for attribute in attributes {
        let value = builder.key(&attribute.key);
        append_value(value, attribute.value.as_ref());
    }
    builder.finish_row();
}

/// Appends one OTLP value (absent, empty, or one of the typed members).
pub fn append_value(builder: &mut AnyValueBuilder, value: Option<&AnyValue>) {
    let Some(value) = value else {
        builder.append_null();
        return;
    };
    match &value.value {
        None => builder.append_empty(),
        Some(Value::StringValue(text)) => builder.append_str(text),
        Some(Value::IntValue(number)) => builder.append_int(*number),
        Some(Value::DoubleValue(number)) => builder.append_double(*number),
        Some(Value::BoolValue(flag)) => builder.append_bool(*flag),
        Some(Value::BytesValue(bytes)) => builder.append_bytes(bytes),
        Some(member @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            let mut json = String::new();
            write_value_member_json(&mut json, member);
            builder.append_json(&json);
        }
        Some(Value::StringValueStrindex(index)) => {
            // Only profiles use string tables; outside them an index means nothing, so it
            // is kept as the JSON member it is.
            builder.append_json(&format!("{{\"stringValueStrindex\":{index}}}"));
        }
    }
}

/// The OTLP/JSON form of an `AnyValue` (`{"stringValue":"x"}`, `{"intValue":"5"}` ...).
pub fn any_value_json(value: &AnyValue) -> String {
    let mut out = String::new();
    write_any_value_json(&mut out, value);
    out
}

fn write_any_value_json(out: &mut String, value: &AnyValue) {
    match &value.value {
        None => out.push_str("{}"),
        Some(member) => write_value_member_json(out, member),
    }
}

fn write_value_member_json(out: &mut String, member: &Value) {
    match member {
        Value::StringValue(text) => {
            out.push_str("{\"stringValue\":");
            write_json_string(out, text);
            out.push('}');
        }
        Value::BoolValue(flag) => {
            let _infallible = write!(out, "{{\"boolValue\":{flag}}}");
        }
        Value::IntValue(number) => {
            let _infallible = write!(out, "{{\"intValue\":\"{number}\"}}");
        }
        Value::DoubleValue(number) => {
            out.push_str("{\"doubleValue\":");
            write_json_double(out, *number);
            out.push('}');
        }
        Value::BytesValue(bytes) => {
            let _infallible = write!(out, "{{\"bytesValue\":\"{}\"}}", BASE64.encode(bytes));
        }
        Value::StringValueStrindex(index) => {
            let _infallible = write!(out, "{{\"stringValueStrindex\":{index}}}");
        }
        Value::ArrayValue(array) => {
            out.push_str("{\"arrayValue\":{\"values\":[");
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_any_value_json(out, item);
            }
            out.push_str("]}}");
        }
        Value::KvlistValue(list) => {
            out.push_str("{\"kvlistValue\":{\"values\":[");
            for (i, pair) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"key\":");
                write_json_string(out, &pair.key);
                if let Some(value) = &pair.value {
                    out.push_str(",\"value\":");
                    write_any_value_json(out, value);
                }
                out.push('}');
            }
            out.push_str("]}}");
        }
    }
}

/// Doubles as OTLP/JSON writes them: numbers, or the strings `NaN`, `Infinity`,
/// `-Infinity` (proto3 JSON mapping).
fn write_json_double(out: &mut String, number: f64) {
    if number.is_nan() {
        out.push_str("\"NaN\"");
    } else if number.is_infinite() {
        out.push_str(if number > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        let _infallible = write!(out, "{number:?}");
    }
}

/// A JSON string literal.
pub fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _infallible = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a record's instrumentation scope and its `schema_url`.
pub fn append_scope(
    columns: &mut ScopeColumns,
    scope: Option<&InstrumentationScope>,
    schema_url: &str,
) {
    match scope {
        Some(scope) => {
            append_opt_str(&mut columns.name, Some(&scope.name));
            append_opt_str(&mut columns.version, Some(&scope.version));
            append_attributes(&mut columns.properties, &scope.attributes);
            columns
                .dropped_properties_count
                .append_value(i64::from(scope.dropped_attributes_count));
        }
        None => {
            columns.name.append_null();
            columns.version.append_null();
            columns.properties.finish_row();
            columns.dropped_properties_count.append_null();
        }
    }
    append_opt_str(&mut columns.schema_url, Some(schema_url));
}

/// Appends an optional id as hex (NULL when empty).
pub fn append_id(builder: &mut arrow::array::StringBuilder, id: &[u8]) {
    if id.is_empty() {
        builder.append_null();
    } else {
        append_hex(builder, id);
    }
}

/// Appends the lowercase hex of an id; ids of up to 32 bytes (all valid OTLP ids) without
/// allocating.
pub fn append_hex(builder: &mut arrow::array::StringBuilder, id: &[u8]) {
    let mut out = [0_u8; 64];
    if id.len() > out.len() / 2 {
        builder.append_value(hex(id));
        return;
    }
    for (index, byte) in id.iter().enumerate() {
        out[2 * index] = HEX[usize::from(byte >> 4)];
        out[2 * index + 1] = HEX[usize::from(byte & 0x0f)];
    }
    match std::str::from_utf8(&out[..2 * id.len()]) {
        Ok(text) => builder.append_value(text),
        // Unreachable: hex digits are ASCII.
        Err(_) => builder.append_value(hex(id)),
    }
}

/// A value as text, for places that hold strings only (the catalog's process
/// properties): strings as they are, numbers in decimal, bytes in base64, arrays and
/// lists as OTLP/JSON.
pub fn display_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::BytesValue(bytes)) => BASE64.encode(bytes),
        Some(member) => {
            let mut json = String::new();
            write_value_member_json(&mut json, member);
            json
        }
    }
}

/// The OTLP signal a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    /// The stream tag, as Micromegas names its OTLP streams.
    pub fn tag(self) -> &'static str {
        match self {
            Signal::Traces => "trace",
            Signal::Logs => "log",
            Signal::Metrics => "metrics",
        }
    }
}

/// A resource's process: its id, the identity its rows carry, and its catalog record.
#[derive(Debug, Clone)]
pub struct ResourceProcess {
    pub identity: Identity,
    pub record: ProcessRecord,
    /// The stream of this resource and signal.
    pub stream: StreamRecord,
}

fn string_attribute<'a>(resource: &'a Resource, key: &str) -> Option<&'a str> {
    resource
        .attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| match &value.value {
            Some(Value::StringValue(text)) if !text.is_empty() => Some(text.as_str()),
            _ => None,
        })
}

/// The process of a resource. The id hashes the whole encoded resource and its schema
/// URL, so two resources share a process id only when they are identical, and the
/// `processes` row keeps every attribute of it.
pub fn resource_process(
    resource: Option<&Resource>,
    schema_url: &str,
    signal: Signal,
    now_nanos: i64,
) -> ResourceProcess {
    let empty = Resource::default();
    // An absent resource and an empty one are different inputs: keep them apart.
    let mut key = match resource {
        Some(resource) => resource.encode_to_vec(),
        None => b"\x00none".to_vec(),
    };
    let resource = resource.unwrap_or(&empty);
    key.push(0x1f);
    key.extend_from_slice(schema_url.as_bytes());
    let process_id = Uuid::new_v5(&PROCESS_NAMESPACE, &key).to_string();
    let stream_key = format!("{process_id}\u{1f}{}", signal.tag());
    let stream_id = Uuid::new_v5(&STREAM_NAMESPACE, stream_key.as_bytes()).to_string();
    let owned = |key: &str| string_attribute(resource, key).map(str::to_owned);
    let exe = owned("process.executable.path").or_else(|| owned("process.executable.name"));
    let identity = Identity {
        process_id: process_id.clone(),
        stream_id,
        exe: exe.clone(),
        username: owned("process.owner"),
        computer: owned("host.name"),
        service_name: owned("service.name"),
        service_namespace: owned("service.namespace"),
        service_version: owned("service.version"),
        service_instance_id: owned("service.instance.id"),
    };
    let properties: BTreeMap<String, String> = resource
        .attributes
        .iter()
        .map(|attribute| {
            (
                attribute.key.clone(),
                display_value(attribute.value.as_ref()),
            )
        })
        .collect();
    let record = ProcessRecord {
        process_id,
        exe,
        username: identity.username.clone(),
        realname: None,
        computer: identity.computer.clone(),
        distro: owned("os.description"),
        cpu_brand: None,
        tsc_frequency: 1_000_000_000,
        start_time: now_nanos,
        start_ticks: 0,
        parent_process_id: None,
        service_name: identity.service_name.clone(),
        service_namespace: identity.service_namespace.clone(),
        service_version: identity.service_version.clone(),
        service_instance_id: identity.service_instance_id.clone(),
        properties,
        source: "otlp".to_owned(),
        insert_time: now_nanos.div_euclid(1_000),
    };
    let stream = StreamRecord {
        stream_id: identity.stream_id.clone(),
        process_id: identity.process_id.clone(),
        tags: vec![signal.tag().to_owned()],
        properties: BTreeMap::new(),
        dependencies_metadata: None,
        objects_metadata: None,
        format: "otlp".to_owned(),
        insert_time: now_nanos.div_euclid(1_000),
    };
    ResourceProcess {
        identity,
        record,
        stream,
    }
}

/// Appends a stream's `streams` row.
pub fn append_stream_row(builder: &mut StreamsBuilder, stream: &StreamRecord) {
    builder.stream_id.append_value(&stream.stream_id);
    builder.process_id.append_value(&stream.process_id);
    builder.append_tags(stream.tags.iter().map(String::as_str));
    for (key, value) in &stream.properties {
        builder.properties.key(key).append_str(value);
    }
    builder.properties.finish_row();
    match &stream.dependencies_metadata {
        Some(bytes) => builder.dependencies_metadata.append_value(bytes),
        None => builder.dependencies_metadata.append_null(),
    }
    match &stream.objects_metadata {
        Some(bytes) => builder.objects_metadata.append_value(bytes),
        None => builder.objects_metadata.append_null(),
    }
    builder.format.append_value(&stream.format);
    builder.append_insert_time(stream.insert_time);
}

/// Appends a resource's `processes` row, with its typed attributes.
pub fn append_process_row(
    builder: &mut ProcessesBuilder,
    record: &ProcessRecord,
    resource: Option<&Resource>,
    schema_url: &str,
) {
    builder.process_id.append_value(&record.process_id);
    append_opt_str(&mut builder.exe, record.exe.as_deref());
    append_opt_str(&mut builder.username, record.username.as_deref());
    append_opt_str(&mut builder.realname, record.realname.as_deref());
    append_opt_str(&mut builder.computer, record.computer.as_deref());
    append_opt_str(&mut builder.distro, record.distro.as_deref());
    append_opt_str(&mut builder.cpu_brand, record.cpu_brand.as_deref());
    builder.tsc_frequency.append_value(record.tsc_frequency);
    builder.append_start_time(record.start_time);
    builder.start_ticks.append_value(record.start_ticks);
    append_opt_str(
        &mut builder.parent_process_id,
        record.parent_process_id.as_deref(),
    );
    append_opt_str(&mut builder.service_name, record.service_name.as_deref());
    append_opt_str(
        &mut builder.service_namespace,
        record.service_namespace.as_deref(),
    );
    append_opt_str(
        &mut builder.service_version,
        record.service_version.as_deref(),
    );
    append_opt_str(
        &mut builder.service_instance_id,
        record.service_instance_id.as_deref(),
    );
    match resource {
        Some(resource) => {
            append_attributes(&mut builder.properties, &resource.attributes);
            builder
                .dropped_properties_count
                .append_value(i64::from(resource.dropped_attributes_count));
            if resource.entity_refs.is_empty() {
                builder.entity_refs.append_null();
            } else {
                builder.entity_refs.append_value(entity_refs_json(resource));
            }
        }
        None => {
            builder.properties.finish_row();
            builder.dropped_properties_count.append_null();
            builder.entity_refs.append_null();
        }
    }
    append_opt_str(&mut builder.schema_url, Some(schema_url));
    builder.source.append_value(&record.source);
    builder.insert_time.append_value(record.insert_time);
}

/// `Resource.entity_refs` as an OTLP/JSON array.
fn entity_refs_json(resource: &Resource) -> String {
    let mut out = String::from("[");
    for (i, entity) in resource.entity_refs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"schemaUrl\":");
        write_json_string(&mut out, &entity.schema_url);
        out.push_str(",\"type\":");
        write_json_string(&mut out, &entity.r#type);
        for (name, keys) in [
            ("idKeys", &entity.id_keys),
            ("descriptionKeys", &entity.description_keys),
        ] {
            let _infallible = write!(out, ",\"{name}\":[");
            for (j, key) in keys.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_json_string(&mut out, key);
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use tarn_proto::otlp::common::v1::{ArrayValue, KeyValueList};

    use super::*;

    fn string(text: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(text.to_owned())),
        }
    }

    #[test]
    fn hex_is_lowercase_and_ids_are_checked() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert!(valid_id(&[1; 16], 16));
        assert!(!valid_id(&[0; 16], 16));
        assert!(!valid_id(&[1; 15], 16));
    }

    #[test]
    fn nested_values_become_otlp_json() {
        let value = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    KeyValue {
                        key: "a\"b".into(),
                        value: Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![
                                    string("x"),
                                    AnyValue {
                                        value: Some(Value::IntValue(-5)),
                                    },
                                    AnyValue {
                                        value: Some(Value::DoubleValue(f64::NAN)),
                                    },
                                    AnyValue { value: None },
                                ],
                            })),
                        }),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "bytes".into(),
                        value: Some(AnyValue {
                            value: Some(Value::BytesValue(vec![0, 255])),
                        }),
                        ..Default::default()
                    },
                ],
            })),
        };
        assert_eq!(
            any_value_json(&value),
            r#"{"kvlistValue":{"values":[{"key":"a\"b","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"-5"},{"doubleValue":"NaN"},{}]}}},{"key":"bytes","value":{"bytesValue":"AP8="}}]}}"#
        );
    }

    #[test]
    fn identical_resources_share_a_process_and_signals_split_streams() {
        let resource = Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(string("checkout")),
                ..Default::default()
            }],
            ..Default::default()
        };
        let traces = resource_process(Some(&resource), "", Signal::Traces, 0);
        let logs = resource_process(Some(&resource), "", Signal::Logs, 0);
        let other = resource_process(
            Some(&resource),
            "https://opentelemetry.io/schemas/1.30.0",
            Signal::Traces,
            0,
        );
        assert_eq!(traces.identity.process_id, logs.identity.process_id);
        assert_ne!(traces.identity.stream_id, logs.identity.stream_id);
        assert_ne!(traces.identity.process_id, other.identity.process_id);
        assert_eq!(traces.identity.service_name.as_deref(), Some("checkout"));
        assert_eq!(traces.record.properties["service.name"], "checkout");
    }
}
