// Sends traces, logs and metrics to Tarn with the OpenTelemetry JS SDK's OTLP/HTTP JSON
// exporters (chunked bodies, no Content-Length, as these exporters send them).
// usage: node send.mjs BASE_URL SERVICE   (BASE_URL like http://127.0.0.1:4318)
// Prints one JSON line describing what was sent.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

const [base, service] = process.argv.slice(2);
const resource = resourceFromAttributes({ 'service.name': service, 'service.version': '3.2.1' });

const tracerProvider = new BasicTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }))],
});
const tracer = tracerProvider.getTracer('compat.js', '1.0');
const root = tracer.startSpan('POST /pay', {
  kind: SpanKind.SERVER,
  attributes: { 'http.request.method': 'POST', 'http.response.status_code': 201, 'js.ratio': 0.25, 'js.flag': false },
});
root.addEvent('payment.started', { 'payment.id': 'p-1' });
const child = tracer.startSpan('charge card', { kind: SpanKind.CLIENT }, trace.setSpan(ROOT_CONTEXT, root));
child.setStatus({ code: SpanStatusCode.ERROR, message: 'declined' });
child.end();
root.end();
const traceId = root.spanContext().traceId;
await tracerProvider.forceFlush();
await tracerProvider.shutdown();

const loggerProvider = new LoggerProvider({
  resource,
  processors: [new SimpleLogRecordProcessor({ exporter: new OTLPLogExporter({ url: `${base}/v1/logs` }) })],
});
const logger = loggerProvider.getLogger('compat.js.logs');
logger.emit({ severityNumber: SeverityNumber.WARN, severityText: 'WARN', body: 'queue is long', attributes: { 'queue.length': 99 } });
logger.emit({ severityNumber: SeverityNumber.INFO, body: { structured: true, count: 2 } });
await loggerProvider.forceFlush();
await loggerProvider.shutdown();

const reader = new PeriodicExportingMetricReader({
  exporter: new OTLPMetricExporter({ url: `${base}/v1/metrics` }),
  exportIntervalMillis: 3_600_000,
});
const meterProvider = new MeterProvider({ resource, readers: [reader] });
const meter = meterProvider.getMeter('compat.js.meter', '1.0');
meter.createCounter('js.requests').add(5, { route: '/pay' });
meter.createHistogram('js.latency', { unit: 'ms' }).record(12);
// Shutting down exports once; a flush first would export the cumulative points twice.
await meterProvider.shutdown();

console.log(JSON.stringify({ trace_id: traceId }));
