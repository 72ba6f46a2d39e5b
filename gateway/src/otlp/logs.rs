//! OTLP logs → rows of `log_entries`.

use tarn_lakehouse::rows::{LogEntriesBuilder, append_opt_str};
use tarn_lakehouse::schema::TableKind;
use tarn_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use tarn_proto::otlp::common::v1::AnyValue;
use tarn_proto::otlp::common::v1::any_value::Value;
use tarn_proto::otlp::logs::v1::LogRecord;

use super::convert::{
    Signal, append_attributes, append_id, append_scope, append_value, display_value,
    resource_process,
};
use super::{Normalized, Rejections};

/// The Micromegas level (1 fatal … 6 trace) of an OTLP severity number; unspecified (0)
/// is info, as upstream Micromegas maps it.
pub fn level_of_severity(severity_number: i32) -> i32 {
    match severity_number {
        1..=4 => 6,
        5..=8 => 5,
        9..=12 => 4,
        13..=16 => 3,
        17..=20 => 2,
        21.. => 1,
        _ => 4,
    }
}

fn record_problem(record: &LogRecord) -> Option<&'static str> {
    ids_problem(&record.trace_id, &record.span_id)
}

/// Why a log record with these ids is rejected, or `None` when they are valid.
pub fn ids_problem(trace_id: &[u8], span_id: &[u8]) -> Option<&'static str> {
    if !trace_id.is_empty() && trace_id.len() != 16 {
        return Some("log trace_id must be empty or 16 bytes");
    }
    if !span_id.is_empty() && span_id.len() != 8 {
        return Some("log span_id must be empty or 8 bytes");
    }
    None
}

/// Appends a record's times: its own, or else when it was observed, or else `now_nanos`,
/// is the row's effective time. OTLP times are unsigned nanoseconds, kept bit for bit.
pub fn append_times(logs: &mut LogEntriesBuilder, time: u64, observed: u64, now_nanos: i64) {
    let time = time as i64;
    let observed = observed as i64;
    let effective = if time != 0 {
        time
    } else if observed != 0 {
        observed
    } else {
        now_nanos
    };
    logs.append_time(time, effective);
    logs.observed_time_unix_nano.append_value(observed);
}

/// Appends a record's body: a string body is the message; any other value is kept in
/// `body`, with its display form as the message.
pub fn append_body(logs: &mut LogEntriesBuilder, body: Option<&AnyValue>) {
    match body {
        None => {
            logs.msg.append_null();
            logs.body.append_null();
        }
        Some(body) => match &body.value {
            Some(Value::StringValue(text)) => {
                logs.msg.append_value(text);
                logs.body.append_null();
            }
            None => {
                logs.msg.append_null();
                append_value(&mut logs.body, Some(body));
            }
            Some(_) => {
                logs.msg.append_value(display_value(Some(body)));
                append_value(&mut logs.body, Some(body));
            }
        },
    }
}

/// Normalizes a logs export; invalid records are counted and left out.
pub fn normalize(request: &ExportLogsServiceRequest, now_nanos: i64) -> Normalized {
    let insert_time = now_nanos.div_euclid(1_000);
    let mut logs = LogEntriesBuilder::default();
    let mut normalized = Normalized::default();
    let mut rejections = Rejections::default();
    for resource_logs in &request.resource_logs {
        let process = resource_process(
            resource_logs.resource.as_ref(),
            &resource_logs.schema_url,
            Signal::Logs,
            now_nanos,
        );
        let mut kept_any = false;
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            let target = scope.map(|scope| scope.name.as_str());
            for record in &scope_logs.log_records {
                if let Some(problem) = record_problem(record) {
                    rejections.reject(problem);
                    continue;
                }
                kept_any = true;
                logs.identity.append(&process.identity, insert_time);
                append_times(
                    &mut logs,
                    record.time_unix_nano,
                    record.observed_time_unix_nano,
                    now_nanos,
                );
                append_opt_str(&mut logs.target, target);
                logs.level
                    .append_value(level_of_severity(record.severity_number));
                logs.severity_number.append_value(record.severity_number);
                append_opt_str(&mut logs.severity_text, Some(&record.severity_text));
                append_body(&mut logs, record.body.as_ref());
                append_id(&mut logs.trace_id, &record.trace_id);
                append_id(&mut logs.span_id, &record.span_id);
                logs.flags.append_value(i64::from(record.flags));
                append_opt_str(&mut logs.event_name, Some(&record.event_name));
                append_attributes(&mut logs.properties, &record.attributes);
                logs.dropped_properties_count
                    .append_value(i64::from(record.dropped_attributes_count));
                append_scope(&mut logs.scope, scope, &scope_logs.schema_url);
            }
        }
        if kept_any {
            normalized.add_process(
                process,
                resource_logs.resource.as_ref(),
                &resource_logs.schema_url,
            );
        }
    }
    normalized.rejections = rejections;
    if !logs.is_empty() {
        normalized.push_batch(TableKind::LogEntries, logs.finish());
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_to_micromegas_levels() {
        assert_eq!(level_of_severity(0), 4);
        assert_eq!(level_of_severity(1), 6);
        assert_eq!(level_of_severity(9), 4);
        assert_eq!(level_of_severity(13), 3);
        assert_eq!(level_of_severity(17), 2);
        assert_eq!(level_of_severity(24), 1);
        assert_eq!(level_of_severity(99), 1);
        assert_eq!(level_of_severity(-3), 4);
    }
}
