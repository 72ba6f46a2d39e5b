//! OTLP messages (re-exported from `opentelemetry-proto`) and the error bodies OTLP
//! servers send: `google.rpc.Status` with `BadRequest` or `RetryInfo` details.

use std::time::Duration;

use prost::Message;

pub use opentelemetry_proto::tonic::collector;
pub use opentelemetry_proto::tonic::{common, logs, metrics, resource, trace};
pub use tonic_types::pb as rpc;

/// `google.rpc.Code` values used in Tarn's error bodies.
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn any<M: Message>(name: &str, message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{name}"),
        value: message.encode_to_vec(),
    }
}

/// A `google.rpc.Status` for undecodable or invalid data, with a `BadRequest` detail
/// naming the offending field (empty when the whole body is at fault).
pub fn bad_request_status(field: &str, description: &str) -> rpc::Status {
    let detail = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
            ..Default::default()
        }],
    };
    rpc::Status {
        code: code::INVALID_ARGUMENT,
        message: description.to_owned(),
        details: vec![any("google.rpc.BadRequest", &detail)],
    }
}

/// A `google.rpc.Status` asking the client to retry after `delay` (`RetryInfo` detail).
pub fn retry_status(code: i32, message: &str, delay: Duration) -> rpc::Status {
    let detail = rpc::RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    rpc::Status {
        code,
        message: message.to_owned(),
        details: vec![any("google.rpc.RetryInfo", &detail)],
    }
}

/// A `google.rpc.Status` with only a code and a message.
pub fn plain_status(code: i32, message: &str) -> rpc::Status {
    rpc::Status {
        code,
        message: message.to_owned(),
        details: Vec::new(),
    }
}

/// The JSON form of a status, for responses to `application/json` requests. Details are
/// left out: their `Any` payloads have no JSON mapping without a type registry.
pub fn status_to_json(status: &rpc::Status) -> String {
    let message = json_escape(&status.message);
    format!("{{\"code\":{},\"message\":\"{message}\"}}", status.code)
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_round_trips_with_detail() {
        let status = bad_request_status("resource_spans[0]", "trace id must be 16 bytes");
        let decoded = rpc::Status::decode(status.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded.code, code::INVALID_ARGUMENT);
        assert_eq!(
            decoded.details[0].type_url,
            "type.googleapis.com/google.rpc.BadRequest"
        );
        let detail = rpc::BadRequest::decode(decoded.details[0].value.as_slice()).expect("detail");
        assert_eq!(detail.field_violations[0].field, "resource_spans[0]");
    }

    #[test]
    fn retry_info_carries_the_delay() {
        let status = retry_status(code::UNAVAILABLE, "busy", Duration::from_millis(1500));
        let info = rpc::RetryInfo::decode(status.details[0].value.as_slice()).expect("detail");
        let delay = info.retry_delay.expect("delay set");
        assert_eq!((delay.seconds, delay.nanos), (1, 500_000_000));
    }

    #[test]
    fn json_status_escapes_the_message() {
        let json = status_to_json(&plain_status(3, "bad \"x\"\n"));
        assert_eq!(json, r#"{"code":3,"message":"bad \"x\"\n"}"#);
    }
}
