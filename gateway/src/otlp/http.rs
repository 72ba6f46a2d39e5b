//! OTLP/HTTP: `POST /v1/{traces,logs,metrics}` with protobuf bodies, plain or compressed.
//!
//! Spec behaviour (opentelemetry-proto `docs/specification.md`): unknown content types are
//! refused with 415, undecodable bodies with 400 and a `google.rpc.Status` carrying a
//! `BadRequest`, bodies larger than the limit *after decompression* with 413; the reply has
//! the request's content type; invalid records are reported through `partial_success`.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use tarn_proto::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tarn_proto::otlp::{bad_request_status, code, plain_status, retry_status, rpc};

use crate::ingest::{IngestError, Ingestor};

const PROTOBUF: &str = "application/x-protobuf";

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
        .route("/traces", post(export_traces))
        .with_state(state)
}

/// A refused request: status, and the `google.rpc.Status` body to send.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    body: rpc::Status,
    retry_after_secs: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, body: rpc::Status) -> Refusal {
        Refusal {
            status,
            body,
            retry_after_secs: None,
        }
    }

    fn bad_request(message: &str) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, bad_request_status("", message))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
            self.body.encode_to_vec(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after_secs {
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
            } => {
                let seconds = retry_after.as_secs().max(1);
                Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: retry_status(code::UNAVAILABLE, &reason, retry_after),
                    retry_after_secs: Some(seconds),
                }
            }
            IngestError::Unavailable(message) => Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: retry_status(
                    code::UNAVAILABLE,
                    &message,
                    std::time::Duration::from_secs(1),
                ),
                retry_after_secs: Some(1),
            },
            IngestError::Internal(message) => Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                plain_status(code::INTERNAL, &message),
            ),
        }
    }
}

/// The media type of a request (`application/x-protobuf`), without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default()
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

/// Checks the content type: only protobuf is served by this build of the route.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let media = media_type(headers);
    if media == PROTOBUF {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            plain_status(
                code::INVALID_ARGUMENT,
                &format!("unsupported Content-Type {media:?}: use {PROTOBUF}"),
            ),
        ))
    }
}

fn protobuf_response<M: Message>(message: &M) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
        message.encode_to_vec(),
    )
        .into_response()
}

async fn export_traces(State(state): State<OtlpHttp>, headers: HeaderMap, body: Body) -> Response {
    match export_traces_inner(&state, &headers, body).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
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

async fn export_traces_inner(
    state: &OtlpHttp,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    check_content_type(headers)?;
    let raw = read_body(body, state.max_body_bytes).await?;
    let bytes = decode_body(headers, &raw, state.max_body_bytes)?;
    let request = ExportTraceServiceRequest::decode(bytes.as_slice())
        .map_err(|e| Refusal::bad_request(&format!("invalid ExportTraceServiceRequest: {e}")))?;
    let now = crate::clock::now_nanos();
    let normalized = super::traces::normalize(&request, now);
    let rejections = state.ingestor.ingest(normalized).await?;
    let partial_success = (rejections.count > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: rejections.count,
        error_message: rejections.summary(),
    });
    Ok(protobuf_response(&ExportTraceServiceResponse {
        partial_success,
    }))
}
