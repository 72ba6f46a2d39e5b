//! OTLP/gRPC: `TraceService`, `LogsService` and `MetricsService` `Export`, with gzip and
//! zstd request compression.
//!
//! Errors follow the spec's retry table: invalid data never reaches here (tonic refuses
//! undecodable messages with INVALID_ARGUMENT... and oversized ones, see
//! [`ResourceExhaustedLayer`]); "try later" is UNAVAILABLE with a `RetryInfo` detail.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prost::Message;
use tarn_proto::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use tarn_proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tarn_proto::otlp::{code, retry_status};
use tonic::codec::CompressionEncoding;
use tonic::codegen::BoxFuture;
use tonic::{Code, Request, Response, Status};

use super::wire::RawExportRequest;
use super::{Export, Logs, ReadsBytes, Traces};
use crate::ingest::{IngestError, Ingestor};

/// The gRPC status of an ingest failure.
pub fn status_of(error: IngestError) -> Status {
    match error {
        IngestError::Busy {
            reason,
            retry_after,
        } => retry(&reason, retry_after),
        IngestError::Unavailable(message) => retry(&message, Duration::from_secs(1)),
        IngestError::Internal(message) => Status::internal(message),
    }
}

fn retry(message: &str, delay: Duration) -> Status {
    let details = retry_status(code::UNAVAILABLE, message, delay).encode_to_vec();
    Status::with_details(Code::Unavailable, message, details.into())
}

/// Counts a gRPC export's outcome in the metrics, and passes it on.
fn observe<T>(signal: &'static str, result: Result<T, Status>) -> Result<T, Status> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(status) => match status.code() {
            Code::InvalidArgument => "rejected",
            Code::ResourceExhausted => "too_large",
            Code::Unavailable => "throttled",
            Code::Unauthenticated | Code::PermissionDenied => "unauthorized",
            _ => "failed",
        },
    };
    crate::metrics::request("otlp_grpc", signal, outcome);
    result
}

/// The three OTLP services, sharing one ingestor.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    ingestor: Arc<Ingestor>,
}

impl OtlpGrpc {
    pub fn new(ingestor: Arc<Ingestor>) -> OtlpGrpc {
        OtlpGrpc { ingestor }
    }

    async fn export<E: Export>(&self, request: E::Request) -> Result<E::Response, Status> {
        crate::metrics::received("otlp_grpc", E::SIGNAL, request.encoded_len());
        let result = self.export_inner::<E>(request).await;
        observe(E::SIGNAL, result)
    }

    /// `Export` of a signal read from the request's undecoded top-level records.
    async fn export_raw<E: ReadsBytes>(
        &self,
        request: RawExportRequest,
    ) -> Result<E::Response, Status> {
        let bytes = request.encoded_len();
        crate::metrics::received("otlp_grpc", E::SIGNAL, bytes);
        let result = async {
            let _admission = self.ingestor.admit(bytes).map_err(status_of)?;
            let now = crate::clock::now_nanos();
            let normalized = E::normalize_parts(request.parts.iter().map(|part| &part[..]), now)
                .map_err(|e| {
                    Status::invalid_argument(format!("invalid {}: {e}", E::REQUEST_NAME))
                })?;
            drop(request);
            self.ingest::<E>(normalized).await
        }
        .await;
        observe(E::SIGNAL, result)
    }

    async fn export_inner<E: Export>(&self, request: E::Request) -> Result<E::Response, Status> {
        let _admission = self
            .ingestor
            .admit(request.encoded_len())
            .map_err(status_of)?;
        let now = crate::clock::now_nanos();
        let normalized = E::normalize(&request, now);
        drop(request);
        self.ingest::<E>(normalized).await
    }

    /// Makes normalized rows durable and answers with the rejections.
    async fn ingest<E: Export>(
        &self,
        normalized: super::Normalized,
    ) -> Result<E::Response, Status> {
        let rejections = self
            .ingestor
            .ingest(normalized, "otlp_grpc")
            .await
            .map_err(status_of)?;
        crate::metrics::rejected_records("otlp_grpc", E::SIGNAL, rejections.count);
        Ok(E::response(&rejections))
    }

    /// The tonic services, with compression and message-size limits.
    pub fn services(
        self,
        max_message_bytes: usize,
    ) -> (
        RawExportServer<Traces>,
        RawExportServer<Logs>,
        MetricsServiceServer<OtlpGrpc>,
    ) {
        let shared = Arc::new(self);
        let traces = RawExportServer {
            inner: Arc::clone(&shared),
            max_message_bytes,
            signal: PhantomData,
        };
        let logs = RawExportServer {
            inner: Arc::clone(&shared),
            max_message_bytes,
            signal: PhantomData,
        };
        let metrics = MetricsServiceServer::from_arc(shared)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes);
        (traces, logs, metrics)
    }
}

/// A signal's gRPC service as tonic's generated server serves it (same path, compression
/// and size limits), but decoding the request only down to the bytes of its top-level
/// records, which [`wire`] reads straight into rows.
#[derive(Debug)]
pub struct RawExportServer<E> {
    inner: Arc<OtlpGrpc>,
    max_message_bytes: usize,
    signal: PhantomData<fn() -> E>,
}

impl<E> Clone for RawExportServer<E> {
    fn clone(&self) -> Self {
        RawExportServer {
            inner: Arc::clone(&self.inner),
            max_message_bytes: self.max_message_bytes,
            signal: PhantomData,
        }
    }
}

impl<E: ReadsBytes> tonic::server::NamedService for RawExportServer<E> {
    const NAME: &'static str = E::GRPC_SERVICE;
}

/// The unary `Export` method over raw requests.
struct RawExport<E>(Arc<OtlpGrpc>, PhantomData<fn() -> E>);

impl<E: ReadsBytes> tonic::server::UnaryService<RawExportRequest> for RawExport<E> {
    type Response = E::Response;
    type Future = BoxFuture<Response<E::Response>, Status>;

    fn call(&mut self, request: Request<RawExportRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move {
            inner
                .export_raw::<E>(request.into_inner())
                .await
                .map(Response::new)
        })
    }
}

impl<E, B> tower::Service<http::Request<B>> for RawExportServer<E>
where
    E: ReadsBytes,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::GRPC_PATH {
            return Box::pin(
                async move { Ok(Status::unimplemented("no such method").into_http()) },
            );
        }
        let method = RawExport::<E>(Arc::clone(&self.inner), PhantomData);
        let max_message_bytes = self.max_message_bytes;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<E::Response, RawExportRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_message_bytes);
            Ok(grpc.unary(method, request).await)
        })
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.export::<super::Metrics>(request.into_inner())
            .await
            .map(Response::new)
    }
}

/// tonic refuses a message over the size limit with OUT_OF_RANGE, which OTLP clients
/// retry forever; the OTLP spec asks for RESOURCE_EXHAUSTED (not retried without
/// `RetryInfo`). This layer rewrites exactly that status.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceExhaustedLayer;

impl<S> tower::Layer<S> for ResourceExhaustedLayer {
    type Service = ResourceExhausted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceExhausted { inner }
    }
}

/// The service made by [`ResourceExhaustedLayer`].
#[derive(Debug, Clone)]
pub struct ResourceExhausted<S> {
    inner: S,
}

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Rewrites tonic's "message too large" OUT_OF_RANGE to RESOURCE_EXHAUSTED, in headers
/// (trailers-only responses) or trailers.
fn rewrite_status(headers: &mut http::HeaderMap) {
    let too_large = headers
        .get("grpc-status")
        .is_some_and(|status| status == OUT_OF_RANGE)
        && headers
            .get("grpc-message")
            .and_then(|message| message.to_str().ok())
            // grpc-message is percent-encoded on the wire.
            .is_some_and(|message| {
                message
                    .replace("%20", " ")
                    .contains("message length too large")
            });
    if too_large {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static(RESOURCE_EXHAUSTED),
        );
    }
}

fn rewrite_frame(frame: http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            rewrite_status(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

type RewrittenBody<B> = http_body_util::combinators::MapFrame<
    B,
    fn(http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes>,
>;

fn rewrite<B>(response: http::Response<B>) -> http::Response<RewrittenBody<B>>
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    let (mut parts, body) = response.into_parts();
    rewrite_status(&mut parts.headers);
    let body = http_body_util::BodyExt::map_frame(body, rewrite_frame as fn(_) -> _);
    http::Response::from_parts(parts, body)
}

impl<S, Req, B> tower::Service<Req> for ResourceExhausted<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes>,
{
    type Response = http::Response<RewrittenBody<B>>;
    type Error = S::Error;
    type Future = futures::future::MapOk<
        S::Future,
        fn(http::Response<B>) -> http::Response<RewrittenBody<B>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        use futures::TryFutureExt;
        self.inner.call(request).map_ok(rewrite::<B> as fn(_) -> _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tonics_size_refusal_becomes_resource_exhausted() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("11"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%205%20bytes",
            ),
        );
        rewrite_status(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", http::HeaderValue::from_static("11"));
        other.insert(
            "grpc-message",
            http::HeaderValue::from_static("out of range"),
        );
        rewrite_status(&mut other);
        assert_eq!(other["grpc-status"], "11");
    }
}
