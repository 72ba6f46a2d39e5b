//! OTLP/HTTP: `POST /v1/{traces,logs,metrics}` with protobuf or JSON bodies, plain or
//! compressed.
//!
//! Spec behaviour (opentelemetry-proto `docs/specification.md`): unknown content types are
//! refused with 415, undecodable bodies with 400 and a `google.rpc.Status` carrying a
//! `BadRequest`, bodies larger than the limit *after decompression* with 413; the reply has
//! the request's content type; invalid records are reported through `partial_success`;
//! when the gateway is full it answers 503 with `Retry-After`.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use tarn_proto::otlp::{bad_request_status, code, plain_status, retry_status, rpc, status_to_json};

use super::{Export, Normalized};
use crate::ingest::{IngestError, Ingestor};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// Shared state of the OTLP/HTTP routes.
#[derive(Debug, Clone)]
pub struct OtlpHttp {
    pub ingestor: Arc<Ingestor>,
    /// Largest accepted body, after decompression, in bytes.
    pub max_body_bytes: usize,
}

/// The OTLP/HTTP routes, relative to the signal prefix (`/v1`).
pub fn routes(state: OtlpHttp) -> Router {
    Router::new()
        .route("/traces", post(export::<super::Traces>))
        .route("/logs", post(export::<super::Logs>))
        .route("/metrics", post(export::<super::Metrics>))
        .with_state(state)
}

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// A refused request: status, and the `google.rpc.Status` body to send.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    body: rpc::Status,
    retry_after: Option<Duration>,
    encoding: Encoding,
}

impl Refusal {
    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn new(status: StatusCode, body: rpc::Status) -> Refusal {
        Refusal {
            status,
            body,
            retry_after: None,
            encoding: Encoding::Protobuf,
        }
    }

    fn bad_request(message: &str) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, bad_request_status("", message))
    }

    fn in_encoding(mut self, encoding: Encoding) -> Refusal {
        self.encoding = encoding;
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = match self.encoding {
            Encoding::Protobuf => self.body.encode_to_vec(),
            Encoding::Json => status_to_json(&self.body).into_bytes(),
        };
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.encoding.content_type()),
            )],
            body,
        )
            .into_response();
        if let Some(delay) = self.retry_after {
            let seconds = delay.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<IngestError> for Refusal {
    fn from(error: IngestError) -> Refusal {
        match error {
            IngestError::Busy {
                reason,
                retry_after,
            } => Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: retry_status(code::UNAVAILABLE, &reason, retry_after),
                retry_after: Some(retry_after),
                encoding: Encoding::Protobuf,
            },
            IngestError::Unavailable(message) => {
                let delay = Duration::from_secs(1);
                Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: retry_status(code::UNAVAILABLE, &message, delay),
                    retry_after: Some(delay),
                    encoding: Encoding::Protobuf,
                }
            }
            IngestError::Internal(message) => Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                plain_status(code::INTERNAL, &message),
            ),
        }
    }
}

/// The encoding named by `Content-Type` (parameters such as `charset` ignored).
pub fn encoding_of(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        PROTOBUF => Ok(Encoding::Protobuf),
        JSON => Ok(Encoding::Json),
        _ => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            plain_status(
                code::INVALID_ARGUMENT,
                &format!("unsupported Content-Type {media:?}: use {PROTOBUF} or {JSON}"),
            ),
        )),
    }
}

/// The request body, decompressed, at most `limit` bytes.
pub fn decode_body(headers: &HeaderMap, body: &Bytes, limit: usize) -> Result<Vec<u8>, Refusal> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            plain_status(
                code::INVALID_ARGUMENT,
                &format!("request body exceeds {limit} bytes after decompression"),
            ),
        )
    };
    let reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(too_large());
            }
            return Ok(body.to_vec());
        }
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(body.as_ref())),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(body.as_ref())),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::new(body.as_ref())
                .map_err(|e| Refusal::bad_request(&format!("bad zstd stream: {e}")))?,
        ),
        other => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                plain_status(
                    code::INVALID_ARGUMENT,
                    &format!(
                        "unsupported Content-Encoding {other:?}: use gzip, deflate, zstd or none"
                    ),
                ),
            ));
        }
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    // Reading one byte past the limit tells an exact fit from an overflow without ever
    // holding more than limit + 1 bytes: a decompression bomb stops here.
    let read = reader
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            Refusal::bad_request(&format!("cannot decompress the body ({encoding}): {e}"))
        })?;
    if read > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// Decodes a decompressed OTLP/HTTP body of `encoding`.
pub fn decode_request<E: Export>(encoding: Encoding, bytes: &[u8]) -> Result<E::Request, Refusal> {
    match encoding {
        Encoding::Protobuf => E::Request::decode(bytes)
            .map_err(|e| Refusal::bad_request(&format!("invalid {}: {e}", E::REQUEST_NAME))),
        Encoding::Json => serde_json::from_slice::<E::Request>(bytes).map_err(|e| {
            Refusal::bad_request(&format!("invalid OTLP/JSON {}: {e}", E::REQUEST_NAME))
                .in_encoding(encoding)
        }),
    }
}

/// Decodes a decompressed OTLP/HTTP body of `encoding` and normalizes it, at `now_nanos`.
pub fn decode_normalize<E: Export>(
    encoding: Encoding,
    bytes: &[u8],
    now_nanos: i64,
) -> Result<Normalized, Refusal> {
    match encoding {
        Encoding::Protobuf => E::normalize_protobuf(bytes, now_nanos)
            .map_err(|e| Refusal::bad_request(&format!("invalid {}: {e}", E::REQUEST_NAME))),
        Encoding::Json => {
            let request = decode_request::<E>(encoding, bytes)?;
            Ok(E::normalize(&request, now_nanos))
        }
    }
}

/// One OTLP/HTTP body through everything the route does before the WAL: the headers'
/// encodings, decompression within `limit`, decoding and normalization. For fuzzing and
/// property tests: any input must end in `Ok` or a refusal, never a panic.
pub fn exercise<E: Export>(
    headers: &HeaderMap,
    body: &Bytes,
    limit: usize,
) -> Result<Normalized, Refusal> {
    let encoding = encoding_of(headers)?;
    let bytes = decode_body(headers, body, limit).map_err(|r| r.in_encoding(encoding))?;
    decode_normalize::<E>(encoding, &bytes, crate::clock::now_nanos())
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refusal> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            plain_status(
                code::INVALID_ARGUMENT,
                &format!("request body too large or unreadable: {e}"),
            ),
        )
    })
}

async fn export<E: Export>(
    State(state): State<OtlpHttp>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = match export_inner::<E>(&state, &headers, body).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    };
    let outcome = crate::metrics::outcome_of_status(response.status().as_u16());
    crate::metrics::request("otlp_http", E::SIGNAL, outcome);
    response
}

async fn export_inner<E: Export>(
    state: &OtlpHttp,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let encoding = encoding_of(headers)?;
    let raw = read_body(body, state.max_body_bytes)
        .await
        .map_err(|r| r.in_encoding(encoding))?;
    crate::metrics::received("otlp_http", E::SIGNAL, raw.len());
    let bytes =
        decode_body(headers, &raw, state.max_body_bytes).map_err(|r| r.in_encoding(encoding))?;
    drop(raw);
    let _admission = state
        .ingestor
        .admit(bytes.len())
        .map_err(|e| Refusal::from(e).in_encoding(encoding))?;
    let normalized = decode_normalize::<E>(encoding, &bytes, crate::clock::now_nanos())?;
    drop(bytes);
    let rejections = state
        .ingestor
        .ingest(normalized, "otlp_http")
        .await
        .map_err(|e| Refusal::from(e).in_encoding(encoding))?;
    crate::metrics::rejected_records("otlp_http", E::SIGNAL, rejections.count);
    let response = E::response(&rejections);
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&response).map_err(|e| {
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                plain_status(code::INTERNAL, &e.to_string()),
            )
        })?,
    };
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;
    use crate::otlp::{Logs, Metrics, Traces};

    fn compress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
        match encoding {
            "gzip" => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(bytes).expect("writing to memory");
                encoder.finish().expect("writing to memory")
            }
            "zstd" => zstd::encode_all(bytes, 1).expect("compressing in memory"),
            _ => bytes.to_vec(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bodies, declared and compressed every way, end in rows or in a
        /// 400/413/415: never a panic, never another status.
        #[test]
        fn arbitrary_bodies_are_refused_cleanly(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            json_text in "[\\[\\]{}\":,0-9a-zA-Z ]{0,200}",
            use_json_text in any::<bool>(),
            content_type in prop_oneof![
                Just("application/x-protobuf"),
                Just("application/json"),
                Just("text/plain"),
            ],
            declared in prop_oneof![Just(""), Just("gzip"), Just("zstd"), Just("deflate"), Just("br")],
            compressed in any::<bool>(),
            signal in 0..3u8,
            limit in prop_oneof![Just(64usize), Just(1 << 20)],
        ) {
            let raw = if use_json_text { json_text.into_bytes() } else { body };
            let payload = if compressed { compress(declared, &raw) } else { raw };
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if !declared.is_empty() {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(declared));
            }
            let payload = Bytes::from(payload);
            let outcome = match signal {
                0 => exercise::<Traces>(&headers, &payload, limit).map(|_| ()),
                1 => exercise::<Logs>(&headers, &payload, limit).map(|_| ()),
                _ => exercise::<Metrics>(&headers, &payload, limit).map(|_| ()),
            };
            if let Err(refusal) = outcome {
                prop_assert!(
                    matches!(refusal.status().as_u16(), 400 | 413 | 415),
                    "refused with {}", refusal.status()
                );
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_413() {
        let bomb = Bytes::from(compress("gzip", &vec![0u8; 1 << 20]));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let refusal = exercise::<Traces>(&headers, &bomb, 4096).expect_err("past the limit");
        assert_eq!(refusal.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
