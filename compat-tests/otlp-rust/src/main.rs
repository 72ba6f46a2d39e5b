//! Sends one span, one log record and one counter through the Rust `opentelemetry-otlp`
//! exporter over gRPC: `tarn-compat-otlp-rust <http://host:port> <service.name>`.

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().ok_or("usage: <endpoint> <service.name>")?;
    let service = args.next().ok_or("usage: <endpoint> <service.name>")?;
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attributes([KeyValue::new("deployment.environment", "compat")])
        .build();

    let spans = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&endpoint)
        .build()?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let tracer = tracer_provider.tracer("tarn-compat");
    let mut span = tracer.start("rust-otlp-span");
    span.set_attribute(KeyValue::new("http.route", "/compat"));
    span.set_attribute(KeyValue::new("retries", 3_i64));
    span.end();

    let logs = LogExporter::builder()
        .with_tonic()
        .with_endpoint(&endpoint)
        .build()?;
    let logger_provider = SdkLoggerProvider::builder()
        .with_batch_exporter(logs)
        .with_resource(resource.clone())
        .build();
    let logger = logger_provider.logger("tarn-compat");
    let mut record = logger.create_log_record();
    record.set_body(AnyValue::from("hello from opentelemetry-otlp"));
    record.set_severity_number(Severity::Warn);
    record.set_severity_text("WARN");
    record.add_attribute("user.id", 42_i64);
    logger.emit(record);

    let metrics = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(&endpoint)
        .build()?;
    let meter_provider = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(resource)
        .build();
    let counter = meter_provider
        .meter("tarn-compat")
        .u64_counter("compat.requests")
        .build();
    counter.add(7, &[KeyValue::new("route", "/compat")]);

    // Shutting down flushes every provider; an export error is an error of this program.
    tracer_provider.shutdown()?;
    logger_provider.shutdown()?;
    meter_provider.shutdown()?;
    Ok(())
}
