"""Sends traces, logs and metrics to Tarn with the stock OpenTelemetry Python SDK.

usage: send.py TRANSPORT SERVICE
  TRANSPORT: grpc | http-protobuf | http-json
  The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT (and compression from
  OTEL_EXPORTER_OTLP_COMPRESSION), exactly as a user would configure the SDK.

Prints one JSON line describing what was sent, for the test to compare with the tables.
"""

import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

transport, service = sys.argv[1], sys.argv[2]

if transport == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
elif transport == "http-protobuf":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
elif transport == "http-json":
    from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
else:
    raise SystemExit(f"unknown transport {transport}")

resource = Resource.create({"service.name": service, "service.version": "9.8.7", "deployment.environment": "compat"})

# Traces: a server span with a child client span that fails.
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
tracer = tracer_provider.get_tracer("compat.python", "1.0")
with tracer.start_as_current_span(
    "GET /orders",
    kind=trace.SpanKind.SERVER,
    attributes={"http.request.method": "GET", "http.response.status_code": 200, "retry.ratio": 0.5,
                "cache.hit": True, "tags": ["a", "b"]},
) as root:
    root.add_event("order.loaded", {"order.id": 42})
    with tracer.start_as_current_span("SELECT orders", kind=trace.SpanKind.CLIENT) as child:
        child.set_status(Status(StatusCode.ERROR, "timeout"))
    trace_id = format(root.get_span_context().trace_id, "032x")
    root_span_id = format(root.get_span_context().span_id, "016x")
tracer_provider.shutdown()

# Logs, through the standard logging module.
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
handler = LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider)
log = logging.getLogger("compat.python.logs")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
log.warning("disk almost full", extra={"disk.free_bytes": 1024})
log.error("payment failed: %s", "card declined")
logger_provider.shutdown()

# Metrics: counter, gauge, explicit histogram, exponential histogram.
reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[reader],
    views=[View(instrument_name="py.sizes", aggregation=ExponentialBucketHistogramAggregation())],
)
meter = meter_provider.get_meter("compat.python.meter", "1.0")
counter = meter.create_counter("py.requests", unit="1")
counter.add(3, {"route": "/a"})
counter.add(4, {"route": "/a"})
gauge = meter.create_gauge("py.temperature", unit="Cel")
gauge.set(21.5)
latency = meter.create_histogram("py.latency", unit="ms")
for value in (5, 15, 150):
    latency.record(value)
sizes = meter.create_histogram("py.sizes", unit="By")
for value in (1, 2, 4, 8, 1024):
    sizes.record(value)
# Shutting down exports once; a flush first would export the cumulative points twice.
meter_provider.shutdown()

print(json.dumps({"trace_id": trace_id, "root_span_id": root_span_id}))
