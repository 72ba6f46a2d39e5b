//! OTLP requests used by the tests.

use tarn_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use tarn_proto::otlp::resource::v1::Resource;
use tarn_proto::otlp::trace::v1::span::{Event, Link};
use tarn_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub fn value(value: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

pub fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value(v),
        ..Default::default()
    }
}

pub fn string(text: &str) -> Value {
    Value::StringValue(text.to_owned())
}

/// 2026-01-01T00:00:00.123456789Z: nanoseconds that a microsecond store would lose.
pub const START: u64 = 1_767_225_600_123_456_789;

pub const TRACE_A: [u8; 16] = [
    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
];
pub const TRACE_B: [u8; 16] = [0x11; 16];
pub const ROOT: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];
pub const CHILD: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
pub const OTHER: [u8; 8] = [0xaa; 8];

pub fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", string(service)),
            kv("service.version", string("1.2.3")),
            kv("host.name", string("host-1")),
        ],
        ..Default::default()
    }
}

/// Three spans of two traces, with every kind of attribute value, an event and a link.
pub fn sample_traces(service: &str) -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: TRACE_A.to_vec(),
        span_id: ROOT.to_vec(),
        name: "GET /checkout".into(),
        kind: 2,
        start_time_unix_nano: START,
        end_time_unix_nano: START + 42_000_001,
        attributes: vec![
            kv("http.request.method", string("GET")),
            kv("http.response.status_code", Value::IntValue(200)),
            kv("sample.ratio", Value::DoubleValue(0.25)),
            kv("cache.hit", Value::BoolValue(true)),
            kv("payload", Value::BytesValue(vec![0, 1, 2, 255])),
            kv(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        value(string("a")).unwrap(),
                        value(Value::IntValue(2)).unwrap(),
                    ],
                }),
            ),
            kv(
                "nested",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", Value::BoolValue(false))],
                }),
            ),
        ],
        events: vec![Event {
            time_unix_nano: START + 1_000,
            name: "cache.lookup".into(),
            attributes: vec![kv("key", string("cart:7"))],
            dropped_attributes_count: 1,
        }],
        status: Some(Status {
            message: "payment declined".into(),
            code: 2,
        }),
        trace_state: "vendor=1".into(),
        flags: 0x101,
        dropped_attributes_count: 3,
        ..Default::default()
    };
    let child = Span {
        trace_id: TRACE_A.to_vec(),
        span_id: CHILD.to_vec(),
        parent_span_id: ROOT.to_vec(),
        name: "SELECT carts".into(),
        kind: 3,
        start_time_unix_nano: START + 5_000_003,
        end_time_unix_nano: START + 9_000_000,
        links: vec![Link {
            trace_id: TRACE_B.to_vec(),
            span_id: OTHER.to_vec(),
            trace_state: "x=y".into(),
            attributes: vec![kv("link.kind", string("follows"))],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        ..Default::default()
    };
    let other = Span {
        trace_id: TRACE_B.to_vec(),
        span_id: OTHER.to_vec(),
        name: "consume".into(),
        kind: 5,
        start_time_unix_nano: START + 100,
        end_time_unix_nano: START + 200,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "e2e".into(),
                    version: "0.1".into(),
                    ..Default::default()
                }),
                spans: vec![root, child, other],
                schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}
