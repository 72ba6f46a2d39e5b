//! OTLP: normalization of each signal into canonical rows, and the HTTP and gRPC
//! front ends that call it.

pub mod convert;
pub mod grpc;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod rebuild;
pub mod traces;
pub mod wire;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use tarn_lakehouse::catalog::{ProcessRecord, StreamRecord};
use tarn_lakehouse::rows::{ProcessesBuilder, StreamsBuilder};
use tarn_lakehouse::schema::TableKind;
use tarn_proto::otlp::resource::v1::Resource;

use self::convert::{ResourceProcess, append_process_row, append_stream_row};
use tarn_proto::otlp::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tarn_proto::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tarn_proto::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// One OTLP signal's export call: its messages and its normalization.
pub trait Export: Send + Sync + 'static {
    type Request: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static;
    type Response: prost::Message + serde::Serialize + Send + 'static;
    /// The request message's name, for error messages.
    const REQUEST_NAME: &'static str;
    /// The signal, for metrics.
    const SIGNAL: &'static str;
    fn normalize(request: &Self::Request, now_nanos: i64) -> Normalized;
    /// Decodes a protobuf request and normalizes it: the same as decoding with prost and
    /// calling [`Export::normalize`], which is what it does unless a signal reads the bytes
    /// directly.
    fn normalize_protobuf(body: &[u8], now_nanos: i64) -> Result<Normalized, String> {
        let request =
            <Self::Request as prost::Message>::decode(body).map_err(|error| error.to_string())?;
        Ok(Self::normalize(&request, now_nanos))
    }
    /// The response: full success, or partial success naming the rejected records.
    fn response(rejections: &Rejections) -> Self::Response;
}

/// A signal whose requests are read straight from their protobuf bytes ([`wire`]).
pub trait ReadsBytes: Export {
    /// The gRPC service, and the path of its `Export` method.
    const GRPC_SERVICE: &'static str;
    const GRPC_PATH: &'static str;
    /// Normalizes a request given as the bytes of its top-level records
    /// ([`wire::parts_of`]).
    fn normalize_parts<'a>(
        parts: impl IntoIterator<Item = &'a [u8]>,
        now_nanos: i64,
    ) -> Result<Normalized, wire::WireError>;
}

fn read_protobuf<E: ReadsBytes>(body: &[u8], now_nanos: i64) -> Result<Normalized, String> {
    let parts = wire::parts_of(body).map_err(|error| error.to_string())?;
    E::normalize_parts(parts, now_nanos).map_err(|error| error.to_string())
}

impl ReadsBytes for Traces {
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn normalize_parts<'a>(
        parts: impl IntoIterator<Item = &'a [u8]>,
        now_nanos: i64,
    ) -> Result<Normalized, wire::WireError> {
        wire::normalize_traces(parts, now_nanos)
    }
}

impl ReadsBytes for Logs {
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    fn normalize_parts<'a>(
        parts: impl IntoIterator<Item = &'a [u8]>,
        now_nanos: i64,
    ) -> Result<Normalized, wire::WireError> {
        wire::normalize_logs(parts, now_nanos)
    }
}

/// `TraceService/Export`.
#[derive(Debug)]
pub struct Traces;

/// `LogsService/Export`.
#[derive(Debug)]
pub struct Logs;

/// `MetricsService/Export`.
#[derive(Debug)]
pub struct Metrics;

impl Export for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const REQUEST_NAME: &'static str = "ExportTraceServiceRequest";
    const SIGNAL: &'static str = "traces";

    fn normalize(request: &Self::Request, now_nanos: i64) -> Normalized {
        traces::normalize(request, now_nanos)
    }

    fn normalize_protobuf(body: &[u8], now_nanos: i64) -> Result<Normalized, String> {
        read_protobuf::<Self>(body, now_nanos)
    }

    fn response(rejections: &Rejections) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejections.count > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejections.count,
                error_message: rejections.summary(),
            }),
        }
    }
}

impl Export for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const REQUEST_NAME: &'static str = "ExportLogsServiceRequest";
    const SIGNAL: &'static str = "logs";

    fn normalize(request: &Self::Request, now_nanos: i64) -> Normalized {
        logs::normalize(request, now_nanos)
    }

    fn normalize_protobuf(body: &[u8], now_nanos: i64) -> Result<Normalized, String> {
        read_protobuf::<Self>(body, now_nanos)
    }

    fn response(rejections: &Rejections) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejections.count > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejections.count,
                error_message: rejections.summary(),
            }),
        }
    }
}

impl Export for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const REQUEST_NAME: &'static str = "ExportMetricsServiceRequest";
    const SIGNAL: &'static str = "metrics";

    fn normalize(request: &Self::Request, now_nanos: i64) -> Normalized {
        metrics::normalize(request, now_nanos)
    }

    fn response(rejections: &Rejections) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejections.count > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejections.count,
                error_message: rejections.summary(),
            }),
        }
    }
}

/// Records left out of an export because they were invalid (OTLP partial success).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    pub count: i64,
    /// The first problem met, as the message of the partial-success response.
    pub message: Option<String>,
}

impl Rejections {
    pub fn reject(&mut self, problem: &str) {
        self.count += 1;
        if self.message.is_none() {
            self.message = Some(problem.to_owned());
        }
    }

    /// The partial-success message: the first problem, with the count.
    pub fn summary(&self) -> String {
        match &self.message {
            Some(message) => format!("{} record(s) rejected; first: {message}", self.count),
            None => String::new(),
        }
    }
}

/// An export request normalized into canonical rows.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Rows per table, ready for the writer.
    pub batches: Vec<(TableKind, Result<RecordBatch, ArrowError>)>,
    /// The processes (resources) the rows belong to, in the order of `process_rows`.
    pub processes: Vec<ProcessRecord>,
    /// One `processes` row per entry of `processes`.
    pub process_rows: ProcessesBuilder,
    /// The streams the rows belong to, in the order of `stream_rows`.
    pub streams: Vec<StreamRecord>,
    /// One `streams` row per entry of `streams`.
    pub stream_rows: StreamsBuilder,
    pub rejections: Rejections,
}

impl Normalized {
    pub(crate) fn add_process(
        &mut self,
        process: ResourceProcess,
        resource: Option<&Resource>,
        schema_url: &str,
    ) {
        if !self
            .streams
            .iter()
            .any(|known| known.stream_id == process.stream.stream_id)
        {
            append_stream_row(&mut self.stream_rows, &process.stream);
            self.streams.push(process.stream);
        }
        if !self
            .processes
            .iter()
            .any(|known| known.process_id == process.record.process_id)
        {
            append_process_row(
                &mut self.process_rows,
                &process.record,
                resource,
                schema_url,
            );
            self.processes.push(process.record);
        }
    }

    pub(crate) fn push_batch(&mut self, table: TableKind, batch: Result<RecordBatch, ArrowError>) {
        self.batches.push((table, batch));
    }
}
