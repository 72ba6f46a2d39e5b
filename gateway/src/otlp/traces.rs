//! OTLP traces → rows of `spans` (and `processes` for resources seen for the first time).

use tarn_lakehouse::rows::{SpansBuilder, append_opt_str};
use tarn_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use tarn_proto::otlp::trace::v1::Span;

use super::convert::{
    Signal, append_attributes, append_hex, append_scope, resource_process, valid_id,
};
use super::{Normalized, Rejections};

/// Why a span is rejected, or `None` when it is valid.
fn span_problem(span: &Span) -> Option<&'static str> {
    ids_problem(&span.trace_id, &span.span_id, &span.parent_span_id)
}

/// Why a span with these ids is rejected, or `None` when they are valid.
pub fn ids_problem(trace_id: &[u8], span_id: &[u8], parent_span_id: &[u8]) -> Option<&'static str> {
    if !valid_id(trace_id, 16) {
        return Some("trace_id must be 16 bytes, not all zero");
    }
    if !valid_id(span_id, 8) {
        return Some("span_id must be 8 bytes, not all zero");
    }
    if !parent_span_id.is_empty() && parent_span_id.len() != 8 {
        return Some("parent_span_id must be empty or 8 bytes");
    }
    None
}

/// Normalizes a trace export. Invalid spans are counted in the rejections and left out;
/// the rest are kept (OTLP partial success).
pub fn normalize(request: &ExportTraceServiceRequest, now_nanos: i64) -> Normalized {
    let insert_time = now_nanos.div_euclid(1_000);
    let mut spans = SpansBuilder::default();
    let mut normalized = Normalized::default();
    let mut rejections = Rejections::default();
    for resource_spans in &request.resource_spans {
        let process = resource_process(
            resource_spans.resource.as_ref(),
            &resource_spans.schema_url,
            Signal::Traces,
            now_nanos,
        );
        let mut kept_any = false;
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for span in &scope_spans.spans {
                if let Some(problem) = span_problem(span) {
                    rejections.reject(problem);
                    continue;
                }
                kept_any = true;
                spans.identity.append(&process.identity, insert_time);
                append_hex(&mut spans.trace_id, &span.trace_id);
                append_hex(&mut spans.span_id, &span.span_id);
                if span.parent_span_id.is_empty() {
                    spans.parent_span_id.append_null();
                } else {
                    append_hex(&mut spans.parent_span_id, &span.parent_span_id);
                }
                append_opt_str(&mut spans.trace_state, Some(&span.trace_state));
                spans.flags.append_value(i64::from(span.flags));
                spans.name.append_value(&span.name);
                spans.kind.append_value(span.kind);
                // OTLP times are unsigned nanoseconds; past year 2262 they wrap into the
                // sign bit, and are kept bit for bit.
                spans.append_times(
                    span.start_time_unix_nano as i64,
                    span.end_time_unix_nano as i64,
                );
                match &span.status {
                    Some(status) => {
                        spans.status_code.append_value(status.code);
                        append_opt_str(&mut spans.status_message, Some(&status.message));
                    }
                    None => {
                        spans.status_code.append_null();
                        spans.status_message.append_null();
                    }
                }
                spans.depth.append_null();
                append_attributes(&mut spans.properties, &span.attributes);
                spans
                    .dropped_properties_count
                    .append_value(i64::from(span.dropped_attributes_count));
                for event in &span.events {
                    let items = &mut spans.events.items;
                    items
                        .time_unix_nano
                        .append_value(event.time_unix_nano as i64);
                    append_opt_str(&mut items.name, Some(&event.name));
                    append_attributes(&mut items.properties, &event.attributes);
                    items
                        .dropped_properties_count
                        .append_value(i64::from(event.dropped_attributes_count));
                }
                spans.events.finish_row();
                spans
                    .dropped_events_count
                    .append_value(i64::from(span.dropped_events_count));
                for link in &span.links {
                    let items = &mut spans.links.items;
                    append_hex(&mut items.trace_id, &link.trace_id);
                    append_hex(&mut items.span_id, &link.span_id);
                    append_opt_str(&mut items.trace_state, Some(&link.trace_state));
                    items.flags.append_value(i64::from(link.flags));
                    append_attributes(&mut items.properties, &link.attributes);
                    items
                        .dropped_properties_count
                        .append_value(i64::from(link.dropped_attributes_count));
                }
                spans.links.finish_row();
                spans
                    .dropped_links_count
                    .append_value(i64::from(span.dropped_links_count));
                append_scope(&mut spans.scope, scope, &scope_spans.schema_url);
            }
        }
        if kept_any {
            normalized.add_process(
                process,
                resource_spans.resource.as_ref(),
                &resource_spans.schema_url,
            );
        }
    }
    normalized.rejections = rejections;
    if !spans.is_empty() {
        normalized.push_batch(tarn_lakehouse::schema::TableKind::Spans, spans.finish());
    }
    normalized
}
