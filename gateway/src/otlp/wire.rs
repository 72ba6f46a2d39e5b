//! OTLP traces and logs straight from protobuf bytes into `spans` and `log_entries` rows,
//! without building prost's owned messages first.
//!
//! Decoding an `ExportTraceServiceRequest` with prost allocates a `String` for every
//! attribute key and value and a `Vec` for every list, all dropped right after the rows are
//! built: under load that was a fifth of the gateway's CPU. This reader walks the bytes
//! once, borrows strings and ids from the request body, and appends them to the Arrow
//! builders directly. Resources and scopes (one per batch of records, and needed whole for
//! the process identity), the rare attribute values that are arrays or key-value lists and
//! log bodies that are not plain strings are still decoded by prost, from their own bytes.
//!
//! The result is the same as `prost::Message::decode` followed by
//! [`super::traces::normalize`] (or [`super::logs::normalize`]), malformed input included:
//! the same fields are read, a field that repeats takes its last value (messages merge),
//! unknown fields are skipped, strings must be UTF-8, and any malformed byte fails the
//! whole request. The property
//! tests `traces_from_bytes_match_prost` and `logs_from_bytes_match_prost` and the fuzz
//! target `otlp_wire` hold it to prost's results. One difference is left on purpose:
//! prost's nesting limit (100) counts from the request, and here from the resource, scope
//! or value that prost decodes, so values nested 98–100 deep inside them are accepted.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};
use tarn_lakehouse::rows::{AttributesBuilder, LogEntriesBuilder, SpansBuilder, append_opt_str};
use tarn_lakehouse::schema::TableKind;
use tarn_proto::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use tarn_proto::otlp::logs::v1::LogRecord;
use tarn_proto::otlp::resource::v1::Resource;
use tarn_proto::otlp::trace::v1::Span;

use super::convert::{
    ResourceProcess, Signal, append_hex, append_id, append_scope, append_value, resource_process,
};
use super::logs::{append_body, append_times, level_of_severity};
use super::{Normalized, Rejections};

/// Why the bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

impl From<prost::DecodeError> for WireError {
    fn from(error: prost::DecodeError) -> WireError {
        WireError(error.to_string())
    }
}

type Result<T> = std::result::Result<T, WireError>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;
/// Nesting of groups skipped before the input is called malformed (prost's limit).
const MAX_DEPTH: u32 = 100;

/// A cursor over one message's bytes.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0_u64;
        for (index, &byte) in self.bytes.iter().enumerate().take(10) {
            if index == 9 && byte > 1 {
                return Err(WireError("invalid varint".to_owned()));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                self.bytes = &self.bytes[index + 1..];
                return Ok(value);
            }
        }
        Err(WireError("invalid varint".to_owned()))
    }

    /// The next field's number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let Ok(key) = u32::try_from(key) else {
            return Err(WireError(format!("invalid key value: {key}")));
        };
        let wire = (key & 0x07) as u8;
        if wire > FIXED32 {
            return Err(WireError(format!("invalid wire type value: {wire}")));
        }
        let field = key >> 3;
        if field == 0 {
            return Err(WireError("invalid tag value: 0".to_owned()));
        }
        Ok(Some((field, wire)))
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8]> {
        if length > self.bytes.len() {
            return Err(WireError("buffer underflow".to_owned()));
        }
        let (head, tail) = self.bytes.split_at(length);
        self.bytes = tail;
        Ok(head)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8]> {
        let length = self.varint()?;
        let length = usize::try_from(length).map_err(|_| WireError("buffer underflow".into()))?;
        self.take(length)
    }

    fn fixed64(&mut self) -> Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| WireError("buffer underflow".to_owned()))?,
        ))
    }

    fn fixed32(&mut self) -> Result<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| WireError("buffer underflow".to_owned()))?,
        ))
    }

    /// Skips a field of wire type `wire` whose key was just read.
    fn skip(&mut self, field: u32, wire: u8, depth: u32) -> Result<()> {
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.take(8)?;
            }
            LEN => {
                self.len_delimited()?;
            }
            FIXED32 => {
                self.take(4)?;
            }
            START_GROUP => {
                if depth >= MAX_DEPTH {
                    return Err(WireError("recursion limit reached".to_owned()));
                }
                loop {
                    let Some((inner, inner_wire)) = self.key()? else {
                        return Err(WireError("unexpected end of group".to_owned()));
                    };
                    if inner_wire == END_GROUP {
                        if inner != field {
                            return Err(WireError("unexpected end group tag".to_owned()));
                        }
                        break;
                    }
                    self.skip(inner, inner_wire, depth + 1)?;
                }
            }
            _ => return Err(WireError("unexpected end group tag".to_owned())),
        }
        Ok(())
    }

    /// Whether the message holds nothing after the field whose key was just read.
    fn nothing_after(&self, field: u32, wire: u8) -> Result<bool> {
        let mut rest = *self;
        rest.skip(field, wire, 3)?;
        Ok(rest.bytes.is_empty())
    }
}

/// Checks a known field's wire type, as prost does.
fn expect(field: u32, wire: u8, expected: u8) -> Result<()> {
    if wire == expected {
        Ok(())
    } else {
        Err(WireError(format!(
            "invalid wire type: field {field} has wire type {wire}, expected {expected}"
        )))
    }
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| WireError("invalid string value: data is not UTF-8 encoded".to_owned()))
}

/// The top-level records of an export request: its `resource_spans`, `resource_logs` or
/// `resource_metrics` (field 1 of each of the three).
pub fn parts_of(body: &[u8]) -> Result<Vec<&[u8]>> {
    let mut reader = Reader::new(body);
    let mut parts = Vec::new();
    while let Some((field, wire)) = reader.key()? {
        if field == 1 {
            expect(field, wire, LEN)?;
            parts.push(reader.len_delimited()?);
        } else {
            reader.skip(field, wire, 0)?;
        }
    }
    Ok(parts)
}

/// An export request kept as the bytes of its top-level records (field 1), for tonic's
/// codec: the gRPC routes hand these to [`normalize_traces`] or [`normalize_logs`] without
/// decoding them twice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawExportRequest {
    pub parts: Vec<Bytes>,
}

impl Message for RawExportRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for part in &self.parts {
            prost::encoding::bytes::encode(1, part, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> std::result::Result<(), prost::DecodeError> {
        if tag == 1 {
            let mut part = Bytes::new();
            prost::encoding::bytes::merge(wire_type, &mut part, buf, ctx)?;
            self.parts.push(part);
            Ok(())
        } else {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| prost::encoding::bytes::encoded_len(1, part))
            .sum()
    }

    fn clear(&mut self) {
        self.parts.clear();
    }
}

/// Walks the layout traces and logs share — `Resource*{resource = 1, Scope* = 2,
/// schema_url = 3}`, `Scope*{scope = 1, records = 2, schema_url = 3}` — calling `record`
/// with each record's bytes, its process, scope and scope schema URL. `record` says whether
/// it kept the record; a resource with a kept record becomes a process of `normalized`.
fn walk<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    signal: Signal,
    now_nanos: i64,
    normalized: &mut Normalized,
    mut record: impl FnMut(
        &ResourceProcess,
        Option<&InstrumentationScope>,
        &'a str,
        &'a [u8],
    ) -> Result<bool>,
) -> Result<()> {
    let mut scope_parts: Vec<&[u8]> = Vec::new();
    let mut record_parts: Vec<&[u8]> = Vec::new();
    for part in parts {
        let mut resource: Option<Resource> = None;
        let mut schema_url = "";
        scope_parts.clear();
        let mut reader = Reader::new(part);
        while let Some((field, wire)) = reader.key()? {
            match field {
                1 => {
                    expect(field, wire, LEN)?;
                    resource
                        .get_or_insert_with(Resource::default)
                        .merge(reader.len_delimited()?)?;
                }
                2 => {
                    expect(field, wire, LEN)?;
                    scope_parts.push(reader.len_delimited()?);
                }
                3 => {
                    expect(field, wire, LEN)?;
                    schema_url = utf8(reader.len_delimited()?)?;
                }
                _ => reader.skip(field, wire, 0)?,
            }
        }
        let process = resource_process(resource.as_ref(), schema_url, signal, now_nanos);
        let mut kept_any = false;
        for scope_part in &scope_parts {
            let mut scope: Option<InstrumentationScope> = None;
            let mut scope_schema_url = "";
            record_parts.clear();
            let mut reader = Reader::new(scope_part);
            while let Some((field, wire)) = reader.key()? {
                match field {
                    1 => {
                        expect(field, wire, LEN)?;
                        scope
                            .get_or_insert_with(InstrumentationScope::default)
                            .merge(reader.len_delimited()?)?;
                    }
                    2 => {
                        expect(field, wire, LEN)?;
                        record_parts.push(reader.len_delimited()?);
                    }
                    3 => {
                        expect(field, wire, LEN)?;
                        scope_schema_url = utf8(reader.len_delimited()?)?;
                    }
                    _ => reader.skip(field, wire, 0)?,
                }
            }
            for record_part in &record_parts {
                kept_any |= record(&process, scope.as_ref(), scope_schema_url, record_part)?;
            }
        }
        if kept_any {
            normalized.add_process(process, resource.as_ref(), schema_url);
        }
    }
    Ok(())
}

/// Reusable lists of the repeated fields of one span.
#[derive(Debug, Default)]
struct Scratch<'a> {
    attributes: Vec<&'a [u8]>,
    events: Vec<&'a [u8]>,
    links: Vec<&'a [u8]>,
}

/// The scalar fields of one span, borrowed from the request.
#[derive(Debug, Default)]
struct SpanFields<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: &'a str,
    parent_span_id: &'a [u8],
    flags: u32,
    name: &'a str,
    kind: i32,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    dropped_attributes_count: u32,
    dropped_events_count: u32,
    dropped_links_count: u32,
    /// `(code, message)` when the span has a status.
    status: Option<(i32, &'a str)>,
}

/// Normalizes a trace export given as the bytes of its `resource_spans` (see
/// [`parts_of`]): the same rows, rejections and processes as decoding with prost and
/// calling [`super::traces::normalize`].
pub fn normalize_traces<'a>(
    resource_spans: impl IntoIterator<Item = &'a [u8]>,
    now_nanos: i64,
) -> Result<Normalized> {
    let insert_time = now_nanos.div_euclid(1_000);
    let mut spans = SpansBuilder::default();
    let mut normalized = Normalized::default();
    let mut rejections = Rejections::default();
    let mut scratch = Scratch::default();
    walk(
        resource_spans,
        Signal::Traces,
        now_nanos,
        &mut normalized,
        |process, scope, scope_schema_url, bytes| {
            let fields = span_fields(bytes, &mut scratch)?;
            let ids = (fields.trace_id, fields.span_id, fields.parent_span_id);
            if let Some(problem) = super::traces::ids_problem(ids.0, ids.1, ids.2) {
                // Still decoded whole, so a malformed rejected span fails the request as
                // it does with prost.
                Span::decode(bytes)?;
                rejections.reject(problem);
                return Ok(false);
            }
            append_span(
                &mut spans,
                &fields,
                &scratch,
                &process.identity,
                insert_time,
            )?;
            append_scope(&mut spans.scope, scope, scope_schema_url);
            Ok(true)
        },
    )?;
    normalized.rejections = rejections;
    if !spans.is_empty() {
        normalized.push_batch(TableKind::Spans, spans.finish());
    }
    Ok(normalized)
}

/// A log record's body as sent.
#[derive(Debug, Default)]
enum Body<'a> {
    #[default]
    Absent,
    /// One string member: the common case, read in place.
    Text(&'a str),
    /// Anything else, as the bytes of each occurrence (they merge).
    Other(Vec<&'a [u8]>),
}

/// The fields of one log record, borrowed from the request.
#[derive(Debug, Default)]
struct LogFields<'a> {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: i32,
    severity_text: &'a str,
    body: Body<'a>,
    dropped_attributes_count: u32,
    flags: u32,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a str,
}

/// Normalizes a logs export given as the bytes of its `resource_logs` (see [`parts_of`]):
/// the same rows, rejections and processes as decoding with prost and calling
/// [`super::logs::normalize`].
pub fn normalize_logs<'a>(
    resource_logs: impl IntoIterator<Item = &'a [u8]>,
    now_nanos: i64,
) -> Result<Normalized> {
    let insert_time = now_nanos.div_euclid(1_000);
    let mut logs = LogEntriesBuilder::default();
    let mut normalized = Normalized::default();
    let mut rejections = Rejections::default();
    let mut attributes: Vec<&[u8]> = Vec::new();
    walk(
        resource_logs,
        Signal::Logs,
        now_nanos,
        &mut normalized,
        |process, scope, scope_schema_url, bytes| {
            let record = log_fields(bytes, &mut attributes)?;
            if let Some(problem) = super::logs::ids_problem(record.trace_id, record.span_id) {
                LogRecord::decode(bytes)?;
                rejections.reject(problem);
                return Ok(false);
            }
            logs.identity.append(&process.identity, insert_time);
            append_times(
                &mut logs,
                record.time_unix_nano,
                record.observed_time_unix_nano,
                now_nanos,
            );
            append_opt_str(&mut logs.target, scope.map(|scope| scope.name.as_str()));
            logs.level
                .append_value(level_of_severity(record.severity_number));
            logs.severity_number.append_value(record.severity_number);
            append_opt_str(&mut logs.severity_text, Some(record.severity_text));
            match &record.body {
                Body::Absent => append_body(&mut logs, None),
                Body::Text(text) => {
                    logs.msg.append_value(text);
                    logs.body.append_null();
                }
                Body::Other(occurrences) => {
                    let mut body = AnyValue::default();
                    for occurrence in occurrences {
                        body.merge(*occurrence)?;
                    }
                    append_body(&mut logs, Some(&body));
                }
            }
            append_id(&mut logs.trace_id, record.trace_id);
            append_id(&mut logs.span_id, record.span_id);
            logs.flags.append_value(i64::from(record.flags));
            append_opt_str(&mut logs.event_name, Some(record.event_name));
            append_attributes(&mut logs.properties, &attributes)?;
            logs.dropped_properties_count
                .append_value(i64::from(record.dropped_attributes_count));
            append_scope(&mut logs.scope, scope, scope_schema_url);
            Ok(true)
        },
    )?;
    normalized.rejections = rejections;
    if !logs.is_empty() {
        normalized.push_batch(TableKind::LogEntries, logs.finish());
    }
    Ok(normalized)
}

/// Reads a log record's fields, and the positions of its attributes into `attributes`.
fn log_fields<'a>(bytes: &'a [u8], attributes: &mut Vec<&'a [u8]>) -> Result<LogFields<'a>> {
    attributes.clear();
    let mut record = LogFields::default();
    let mut bodies: Vec<&[u8]> = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => {
                expect(field, wire, FIXED64)?;
                record.time_unix_nano = reader.fixed64()?;
            }
            2 => {
                expect(field, wire, VARINT)?;
                record.severity_number = reader.varint()? as i32;
            }
            3 => {
                expect(field, wire, LEN)?;
                record.severity_text = utf8(reader.len_delimited()?)?;
            }
            5 => {
                expect(field, wire, LEN)?;
                bodies.push(reader.len_delimited()?);
            }
            6 => {
                expect(field, wire, LEN)?;
                attributes.push(reader.len_delimited()?);
            }
            7 => {
                expect(field, wire, VARINT)?;
                record.dropped_attributes_count = reader.varint()? as u32;
            }
            8 => {
                expect(field, wire, FIXED32)?;
                record.flags = reader.fixed32()?;
            }
            9 => {
                expect(field, wire, LEN)?;
                record.trace_id = reader.len_delimited()?;
            }
            10 => {
                expect(field, wire, LEN)?;
                record.span_id = reader.len_delimited()?;
            }
            11 => {
                expect(field, wire, FIXED64)?;
                record.observed_time_unix_nano = reader.fixed64()?;
            }
            12 => {
                expect(field, wire, LEN)?;
                record.event_name = utf8(reader.len_delimited()?)?;
            }
            _ => reader.skip(field, wire, 0)?,
        }
    }
    record.body = match bodies.as_slice() {
        [] => Body::Absent,
        [only] => match single_string(only)? {
            Some(text) => Body::Text(text),
            None => Body::Other(bodies),
        },
        _ => Body::Other(bodies),
    };
    Ok(record)
}

/// The text of an `AnyValue` whose only field is a string member, or `None`.
fn single_string(value: &[u8]) -> Result<Option<&str>> {
    let mut reader = Reader::new(value);
    match reader.key()? {
        Some((1, LEN)) => {
            let text = reader.len_delimited()?;
            if reader.bytes.is_empty() {
                Ok(Some(utf8(text)?))
            } else {
                Ok(None)
            }
        }
        _ => Ok(None),
    }
}

/// Reads a span's scalar fields, and the positions of its repeated ones into `scratch`.
fn span_fields<'a>(bytes: &'a [u8], scratch: &mut Scratch<'a>) -> Result<SpanFields<'a>> {
    scratch.attributes.clear();
    scratch.events.clear();
    scratch.links.clear();
    let mut span = SpanFields::default();
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => {
                expect(field, wire, LEN)?;
                span.trace_id = reader.len_delimited()?;
            }
            2 => {
                expect(field, wire, LEN)?;
                span.span_id = reader.len_delimited()?;
            }
            3 => {
                expect(field, wire, LEN)?;
                span.trace_state = utf8(reader.len_delimited()?)?;
            }
            4 => {
                expect(field, wire, LEN)?;
                span.parent_span_id = reader.len_delimited()?;
            }
            5 => {
                expect(field, wire, LEN)?;
                span.name = utf8(reader.len_delimited()?)?;
            }
            6 => {
                expect(field, wire, VARINT)?;
                span.kind = reader.varint()? as i32;
            }
            7 => {
                expect(field, wire, FIXED64)?;
                span.start_time_unix_nano = reader.fixed64()?;
            }
            8 => {
                expect(field, wire, FIXED64)?;
                span.end_time_unix_nano = reader.fixed64()?;
            }
            9 => {
                expect(field, wire, LEN)?;
                scratch.attributes.push(reader.len_delimited()?);
            }
            10 => {
                expect(field, wire, VARINT)?;
                span.dropped_attributes_count = reader.varint()? as u32;
            }
            11 => {
                expect(field, wire, LEN)?;
                scratch.events.push(reader.len_delimited()?);
            }
            12 => {
                expect(field, wire, VARINT)?;
                span.dropped_events_count = reader.varint()? as u32;
            }
            13 => {
                expect(field, wire, LEN)?;
                scratch.links.push(reader.len_delimited()?);
            }
            14 => {
                expect(field, wire, VARINT)?;
                span.dropped_links_count = reader.varint()? as u32;
            }
            15 => {
                expect(field, wire, LEN)?;
                let status = span.status.get_or_insert((0, ""));
                let mut inner = Reader::new(reader.len_delimited()?);
                // Status: message = 2, code = 3.
                while let Some((field, wire)) = inner.key()? {
                    match field {
                        2 => {
                            expect(field, wire, LEN)?;
                            status.1 = utf8(inner.len_delimited()?)?;
                        }
                        3 => {
                            expect(field, wire, VARINT)?;
                            status.0 = inner.varint()? as i32;
                        }
                        _ => inner.skip(field, wire, 1)?,
                    }
                }
            }
            16 => {
                expect(field, wire, FIXED32)?;
                span.flags = reader.fixed32()?;
            }
            _ => reader.skip(field, wire, 0)?,
        }
    }
    Ok(span)
}

/// Appends one valid span (everything but its scope).
fn append_span(
    spans: &mut SpansBuilder,
    span: &SpanFields<'_>,
    scratch: &Scratch<'_>,
    identity: &tarn_lakehouse::rows::Identity,
    insert_time: i64,
) -> Result<()> {
    spans.identity.append(identity, insert_time);
    append_hex(&mut spans.trace_id, span.trace_id);
    append_hex(&mut spans.span_id, span.span_id);
    if span.parent_span_id.is_empty() {
        spans.parent_span_id.append_null();
    } else {
        append_hex(&mut spans.parent_span_id, span.parent_span_id);
    }
    append_opt_str(&mut spans.trace_state, Some(span.trace_state));
    spans.flags.append_value(i64::from(span.flags));
    spans.name.append_value(span.name);
    spans.kind.append_value(span.kind);
    // Unsigned nanoseconds kept bit for bit, as in `traces::normalize`.
    spans.append_times(
        span.start_time_unix_nano as i64,
        span.end_time_unix_nano as i64,
    );
    match span.status {
        Some((code, message)) => {
            spans.status_code.append_value(code);
            append_opt_str(&mut spans.status_message, Some(message));
        }
        None => {
            spans.status_code.append_null();
            spans.status_message.append_null();
        }
    }
    spans.depth.append_null();
    append_attributes(&mut spans.properties, &scratch.attributes)?;
    spans
        .dropped_properties_count
        .append_value(i64::from(span.dropped_attributes_count));
    for event in &scratch.events {
        // Event: time_unix_nano = 1, name = 2, attributes = 3, dropped count = 4.
        let mut time = 0_u64;
        let mut name = "";
        let mut dropped = 0_u32;
        let mut attributes: Vec<&[u8]> = Vec::new();
        let mut reader = Reader::new(event);
        while let Some((field, wire)) = reader.key()? {
            match field {
                1 => {
                    expect(field, wire, FIXED64)?;
                    time = reader.fixed64()?;
                }
                2 => {
                    expect(field, wire, LEN)?;
                    name = utf8(reader.len_delimited()?)?;
                }
                3 => {
                    expect(field, wire, LEN)?;
                    attributes.push(reader.len_delimited()?);
                }
                4 => {
                    expect(field, wire, VARINT)?;
                    dropped = reader.varint()? as u32;
                }
                _ => reader.skip(field, wire, 1)?,
            }
        }
        let items = &mut spans.events.items;
        items.time_unix_nano.append_value(time as i64);
        append_opt_str(&mut items.name, Some(name));
        append_attributes(&mut items.properties, &attributes)?;
        items
            .dropped_properties_count
            .append_value(i64::from(dropped));
    }
    spans.events.finish_row();
    spans
        .dropped_events_count
        .append_value(i64::from(span.dropped_events_count));
    for link in &scratch.links {
        // Link: trace_id = 1, span_id = 2, trace_state = 3, attributes = 4,
        // dropped count = 5, flags = 6.
        let mut trace_id: &[u8] = &[];
        let mut span_id: &[u8] = &[];
        let mut trace_state = "";
        let mut attributes: Vec<&[u8]> = Vec::new();
        let mut dropped = 0_u32;
        let mut flags = 0_u32;
        let mut reader = Reader::new(link);
        while let Some((field, wire)) = reader.key()? {
            match field {
                1 => {
                    expect(field, wire, LEN)?;
                    trace_id = reader.len_delimited()?;
                }
                2 => {
                    expect(field, wire, LEN)?;
                    span_id = reader.len_delimited()?;
                }
                3 => {
                    expect(field, wire, LEN)?;
                    trace_state = utf8(reader.len_delimited()?)?;
                }
                4 => {
                    expect(field, wire, LEN)?;
                    attributes.push(reader.len_delimited()?);
                }
                5 => {
                    expect(field, wire, VARINT)?;
                    dropped = reader.varint()? as u32;
                }
                6 => {
                    expect(field, wire, FIXED32)?;
                    flags = reader.fixed32()?;
                }
                _ => reader.skip(field, wire, 1)?,
            }
        }
        let items = &mut spans.links.items;
        append_hex(&mut items.trace_id, trace_id);
        append_hex(&mut items.span_id, span_id);
        append_opt_str(&mut items.trace_state, Some(trace_state));
        items.flags.append_value(i64::from(flags));
        append_attributes(&mut items.properties, &attributes)?;
        items
            .dropped_properties_count
            .append_value(i64::from(dropped));
    }
    spans.links.finish_row();
    spans
        .dropped_links_count
        .append_value(i64::from(span.dropped_links_count));
    Ok(())
}

/// Appends `KeyValue` messages as one row of an attribute map.
fn append_attributes(builder: &mut AttributesBuilder, attributes: &[&[u8]]) -> Result<()> {
    for attribute in attributes {
        append_attribute(builder, attribute)?;
    }
    builder.finish_row();
    Ok(())
}

/// Appends one `KeyValue` (key = 1, value = 2).
fn append_attribute(builder: &mut AttributesBuilder, bytes: &[u8]) -> Result<()> {
    let mut key = "";
    let mut value: Option<&[u8]> = None;
    let mut values = 0;
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.key()? {
        match field {
            1 => {
                expect(field, wire, LEN)?;
                key = utf8(reader.len_delimited()?)?;
            }
            2 => {
                expect(field, wire, LEN)?;
                value = Some(reader.len_delimited()?);
                values += 1;
            }
            _ => reader.skip(field, wire, 2)?,
        }
    }
    if values > 1 {
        // A value sent in pieces merges: prost's rules, on the whole pair.
        let pair = KeyValue::decode(bytes)?;
        append_value(builder.key(&pair.key), pair.value.as_ref());
        return Ok(());
    }
    let Some(value) = value else {
        builder.key(key).append_null();
        return Ok(());
    };
    // AnyValue: string = 1, bool = 2, int = 3, double = 4, array = 5, kvlist = 6,
    // bytes = 7, string_strindex = 8. One member is the rule; anything else (arrays,
    // lists, a member sent twice) goes through prost.
    let mut reader = Reader::new(value);
    let first = reader.key()?;
    let simple = match first {
        None => None,
        Some((field, wire)) if reader.nothing_after(field, wire)? => Some((field, wire)),
        Some(_) => Some((0, 0)),
    };
    let mut reader = Reader::new(value);
    match simple {
        None => builder.key(key).append_empty(),
        Some((1, LEN)) => {
            reader.key()?;
            let text = utf8(reader.len_delimited()?)?;
            builder.key(key).append_str(text);
        }
        Some((2, VARINT)) => {
            reader.key()?;
            let flag = reader.varint()? != 0;
            builder.key(key).append_bool(flag);
        }
        Some((3, VARINT)) => {
            reader.key()?;
            let number = reader.varint()? as i64;
            builder.key(key).append_int(number);
        }
        Some((4, FIXED64)) => {
            reader.key()?;
            let number = f64::from_bits(reader.fixed64()?);
            builder.key(key).append_double(number);
        }
        Some((7, LEN)) => {
            reader.key()?;
            let bytes = reader.len_delimited()?;
            builder.key(key).append_bytes(bytes);
        }
        _ => {
            let any = AnyValue::decode(value)?;
            append_value(builder.key(key), Some(&any));
        }
    }
    Ok(())
}
