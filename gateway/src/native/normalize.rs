//! Native blocks → rows of `log_entries`, `measures` and `spans`.
//!
//! Event times are ticks of the producer's timestamp counter:
//! `time = start_time + (ticks - start_ticks) * 1e9 / tsc_frequency`. A process that sent
//! a frequency of 0 (unknown) has it estimated from the block, as Micromegas does:
//! `end_ticks (relative to start_ticks) / (end_time - start_time)`.
//!
//! Thread spans are begin/end events nested on their thread; they are paired with a stack,
//! in the order the producer wrote them (the block's `object_offset` plus the record's
//! index). A block that arrives before its predecessor is held (in the stream's state) until
//! the gap fills, so spans are paired right even when blocks arrive out of order; a gap
//! older than [`GAP_TIMEOUT_SECS`] is given up on. Async spans carry their own ids and are
//! paired by id within the process, in any order. The pairing state survives restarts (the
//! catalog's `span_state`).
//!
//! Span ids are 16 hex digits: a thread span's is its begin event's position in the stream
//! plus one; an async span's is the producer's id with the top bit set.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tarn_lakehouse::catalog::ProcessRecord;
use tarn_lakehouse::rows::{
    Identity, LogEntriesBuilder, MeasuresBuilder, SpansBuilder, append_opt_str,
};
use tarn_lakehouse::schema::TableKind;
use tarn_proto::native::{
    Block, Event, MeasureValue, NativeError, PropertySet, SpanPhase, StreamDecoder,
};

use crate::otlp::Normalized;

/// How long events wait behind a missing block before the gap is given up on.
pub const GAP_TIMEOUT_SECS: i64 = 120;
/// Most events held behind a gap, per stream.
const MAX_HELD: usize = 1_000_000;
/// Most unpaired async span halves kept per process.
const MAX_ASYNC_OPEN: usize = 100_000;

/// Converts ticks of one process to Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_nanos: i64,
    start_ticks: i64,
    /// Ticks per second.
    frequency: f64,
}

impl Clock {
    /// The clock of `process`, estimating a frequency of 0 from `block`.
    pub fn new(process: &ProcessRecord, block: &Block) -> Clock {
        let mut frequency = process.tsc_frequency as f64;
        if frequency <= 0.0 {
            let elapsed = block.end_time_nanos().unwrap_or(process.start_time) - process.start_time;
            frequency = if elapsed > 0 && block.end_ticks > 0 {
                block.end_ticks as f64 * 1e9 / elapsed as f64
            } else {
                1e9
            };
        }
        Clock {
            start_nanos: process.start_time,
            start_ticks: process.start_ticks,
            frequency,
        }
    }

    pub fn nanos(&self, ticks: i64) -> i64 {
        let delta = ticks.saturating_sub(self.start_ticks) as f64;
        self.start_nanos
            .saturating_add((delta * 1e9 / self.frequency) as i64)
    }

    /// A duration in ticks, in seconds.
    pub fn seconds(&self, ticks: f64) -> f64 {
        ticks / self.frequency
    }
}

/// A span event waiting for its partner (or behind a gap).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HalfSpan {
    /// Position in the stream (object offset + index), for thread spans.
    pub position: u64,
    pub begin: bool,
    pub time: i64,
    pub name: String,
    pub target: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub properties: Vec<(String, String)>,
    /// Async spans: span id, parent span id, depth.
    pub async_ids: Option<(u64, u64, u32)>,
}

/// Pairing state of one thread stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ThreadState {
    /// The position of the next event to pair.
    pub next_position: u64,
    /// Open spans, outermost first.
    pub open: Vec<HalfSpan>,
    /// Events behind a gap, by position.
    pub held: BTreeMap<u64, HalfSpan>,
    /// Positions covered by held blocks: start → end (exclusive).
    pub held_blocks: BTreeMap<u64, u64>,
    /// When the oldest held block arrived (Unix seconds).
    pub held_since: Option<i64>,
}

/// Pairing state of the async spans of one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AsyncState {
    /// Halves waiting for their partner, by span id.
    pub open: HashMap<u64, HalfSpan>,
}

fn properties_of(set: Option<&PropertySet>) -> Vec<(String, String)> {
    set.map(|set| {
        set.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn level_name(level: u32) -> &'static str {
    match level {
        1 => "FATAL",
        2 => "ERROR",
        3 => "WARN",
        4 => "INFO",
        5 => "DEBUG",
        _ => "TRACE",
    }
}

/// The OTLP severity number of a Micromegas level.
fn severity_number(level: u32) -> i32 {
    match level {
        1 => 21,
        2 => 17,
        3 => 13,
        4 => 9,
        5 => 5,
        _ => 1,
    }
}

fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Async span ids live in their own half of the id space (top bit set), apart from thread
/// span ids (the event's position in its stream, plus one): both kinds share a stream.
const ASYNC_ID_BIT: u64 = 1 << 63;

fn async_hex_id(id: u64) -> String {
    hex_id(id | ASYNC_ID_BIT)
}

/// Rows of one block.
pub struct BlockRows {
    pub logs: LogEntriesBuilder,
    pub measures: MeasuresBuilder,
    pub spans: SpansBuilder,
    pub images: u64,
    pub other: u64,
}

impl BlockRows {
    fn new() -> BlockRows {
        BlockRows {
            logs: LogEntriesBuilder::default(),
            measures: MeasuresBuilder::default(),
            spans: SpansBuilder::default(),
            images: 0,
            other: 0,
        }
    }

    /// Moves the rows into `normalized`.
    pub fn into_normalized(mut self, normalized: &mut Normalized) {
        if !self.logs.is_empty() {
            normalized.push_batch(TableKind::LogEntries, self.logs.finish());
        }
        if !self.measures.is_empty() {
            normalized.push_batch(TableKind::Measures, self.measures.finish());
        }
        if !self.spans.is_empty() {
            normalized.push_batch(TableKind::Spans, self.spans.finish());
        }
    }
}

/// What rows of one stream share.
pub struct Context<'a> {
    pub identity: &'a Identity,
    pub clock: Clock,
    pub insert_time_micros: i64,
    /// `thread-id` / `thread-name` of a thread stream, added to its spans' properties.
    pub thread: Vec<(String, String)>,
}

/// Appends one finished span.
fn append_span(
    rows: &mut SpansBuilder,
    context: &Context<'_>,
    begin: &HalfSpan,
    end: &HalfSpan,
    span_id: String,
    parent_span_id: Option<String>,
    depth: u32,
) {
    rows.identity
        .append(context.identity, context.insert_time_micros);
    rows.trace_id.append_null();
    rows.span_id.append_value(span_id);
    append_opt_str(&mut rows.parent_span_id, parent_span_id.as_deref());
    rows.trace_state.append_null();
    rows.flags.append_null();
    rows.name.append_value(&begin.name);
    rows.kind.append_null();
    rows.append_times(begin.time, end.time.max(begin.time));
    rows.status_code.append_null();
    rows.status_message.append_null();
    rows.depth
        .append_value(i32::try_from(depth).unwrap_or(i32::MAX));
    let properties = &mut rows.properties;
    if !begin.target.is_empty() {
        properties.key("code.namespace").append_str(&begin.target);
    }
    if let Some(file) = &begin.file {
        properties.key("code.filepath").append_str(file);
    }
    if let Some(line) = begin.line {
        properties.key("code.lineno").append_int(i64::from(line));
    }
    for (key, value) in &context.thread {
        properties.key(key).append_str(value);
    }
    for (key, value) in begin.properties.iter().chain(&end.properties) {
        properties.key(key).append_str(value);
    }
    properties.finish_row();
    rows.dropped_properties_count.append_null();
    rows.events.finish_row();
    rows.dropped_events_count.append_null();
    rows.links.finish_row();
    rows.dropped_links_count.append_null();
    rows.scope.append_none();
}

impl ThreadState {
    /// Pairs the events of positions `next_position..` that are all present.
    fn pair_ready(&mut self, rows: &mut SpansBuilder, context: &Context<'_>) {
        // Events of held blocks that now follow without a gap.
        while let Some((&start, &end)) = self.held_blocks.first_key_value() {
            if start > self.next_position {
                break;
            }
            self.held_blocks.remove(&start);
            let ready: Vec<u64> = self
                .held
                .range(..end)
                .map(|(position, _)| *position)
                .collect();
            for position in ready {
                if let Some(event) = self.held.remove(&position) {
                    self.pair(event, rows, context);
                }
            }
            self.next_position = self.next_position.max(end);
        }
        if self.held_blocks.is_empty() {
            self.held_since = None;
        }
    }

    fn pair(&mut self, event: HalfSpan, rows: &mut SpansBuilder, context: &Context<'_>) {
        if event.begin {
            self.open.push(event);
            return;
        }
        // An end without an open begin (its begin came before this stream was first seen):
        // nothing to pair it with.
        let Some(begin) = self.open.pop() else {
            return;
        };
        let depth = u32::try_from(self.open.len()).unwrap_or(u32::MAX);
        let parent = self.open.last().map(|parent| hex_id(parent.position + 1));
        append_span(
            rows,
            context,
            &begin,
            &event,
            hex_id(begin.position + 1),
            parent,
            depth,
        );
    }

    /// Takes the span events of a block covering positions `start..end`.
    fn add_block(
        &mut self,
        start: u64,
        end: u64,
        events: Vec<HalfSpan>,
        rows: &mut SpansBuilder,
        context: &Context<'_>,
        now_secs: i64,
    ) {
        if start <= self.next_position && self.held_blocks.is_empty() && self.held.is_empty() {
            // The block follows without a gap and nothing waits (the usual case): its events,
            // in position order already, pair as they come, without passing through `held`.
            for event in events {
                self.pair(event, rows, context);
            }
            self.next_position = self.next_position.max(end);
            self.held_since = None;
            return;
        }
        for event in events {
            if self.held.len() < MAX_HELD {
                self.held.insert(event.position, event);
            }
        }
        self.held_blocks.insert(start, end);
        self.pair_ready(rows, context);
        if !self.held_blocks.is_empty() {
            let since = *self.held_since.get_or_insert(now_secs);
            if now_secs - since > GAP_TIMEOUT_SECS || self.held.len() >= MAX_HELD {
                // The missing block is not coming: carry on after the gap.
                if let Some((&first, _)) = self.held_blocks.first_key_value() {
                    self.next_position = first;
                    self.held_since = None;
                    self.pair_ready(rows, context);
                }
            }
        }
    }
}

impl AsyncState {
    fn add(&mut self, event: HalfSpan, rows: &mut SpansBuilder, context: &Context<'_>) {
        let Some((span_id, parent, depth)) = event.async_ids else {
            return;
        };
        match self.open.remove(&span_id) {
            Some(other) if other.begin != event.begin => {
                let (begin, end) = if event.begin {
                    (&event, &other)
                } else {
                    (&other, &event)
                };
                let parent = (parent != 0).then(|| async_hex_id(parent));
                append_span(
                    rows,
                    context,
                    begin,
                    end,
                    async_hex_id(span_id),
                    parent,
                    depth,
                );
            }
            _ => {
                if self.open.len() >= MAX_ASYNC_OPEN {
                    // Halves whose partner never came: drop the oldest.
                    if let Some(oldest) = self
                        .open
                        .iter()
                        .min_by_key(|(_, half)| half.time)
                        .map(|(id, _)| *id)
                    {
                        self.open.remove(&oldest);
                    }
                }
                self.open.insert(span_id, event);
            }
        }
    }
}

/// Decodes one block into rows, advancing the span pairing states.
pub fn normalize_block(
    decoder: &StreamDecoder,
    block: &Block,
    context: &Context<'_>,
    thread: &mut ThreadState,
    async_spans: &mut AsyncState,
    max_payload_bytes: usize,
    now_secs: i64,
) -> Result<BlockRows, NativeError> {
    let content = decoder.decode_payload(&block.payload, max_payload_bytes)?;
    let mut rows = BlockRows::new();
    let start = u64::try_from(block.object_offset).unwrap_or(0);
    let mut thread_events = Vec::new();
    let mut index: u64 = 0;
    for event in decoder.events(&content) {
        let position = start + index;
        index += 1;
        match event? {
            Event::Log(log) => {
                let time = context.clock.nanos(log.time);
                let logs = &mut rows.logs;
                logs.identity
                    .append(context.identity, context.insert_time_micros);
                logs.append_time(time, time);
                logs.observed_time_unix_nano.append_null();
                append_opt_str(&mut logs.target, Some(log.target));
                logs.level
                    .append_value(i32::try_from(log.level).unwrap_or(6));
                logs.severity_number
                    .append_value(severity_number(log.level));
                logs.severity_text.append_value(level_name(log.level));
                logs.msg.append_value(&log.msg);
                logs.body.append_null();
                logs.trace_id.append_null();
                logs.span_id.append_null();
                logs.flags.append_null();
                logs.event_name.append_null();
                if let Some(set) = log.properties {
                    for (key, value) in set.iter() {
                        logs.properties.key(key).append_str(value);
                    }
                }
                logs.properties.finish_row();
                logs.dropped_properties_count.append_null();
                logs.scope.append_none();
            }
            Event::Measure(measure) => {
                let time = context.clock.nanos(measure.time);
                let rows = &mut rows.measures;
                rows.identity
                    .append(context.identity, context.insert_time_micros);
                rows.point.append_time(time);
                rows.point.start_time_unix_nano.append_null();
                append_opt_str(&mut rows.point.target, Some(measure.target));
                rows.point.name.append_value(measure.name);
                let ticks = measure.unit == "ticks";
                append_opt_str(
                    &mut rows.point.unit,
                    Some(if ticks { "seconds" } else { measure.unit }),
                );
                rows.point.description.append_null();
                rows.point.metric_type.append_value("gauge");
                match measure.value {
                    MeasureValue::Int(value) if ticks => {
                        rows.value.append_value(context.clock.seconds(value as f64));
                        rows.int_value.append_null();
                    }
                    MeasureValue::Int(value) => {
                        rows.value.append_value(value as f64);
                        rows.int_value
                            .append_value(i64::try_from(value).unwrap_or(i64::MAX));
                    }
                    MeasureValue::Float(value) => {
                        rows.value.append_value(if ticks {
                            context.clock.seconds(value)
                        } else {
                            value
                        });
                        rows.int_value.append_null();
                    }
                }
                rows.aggregation_temporality.append_null();
                rows.is_monotonic.append_null();
                rows.flags.append_null();
                rows.exemplars.finish_row();
                if let Some(set) = measure.properties {
                    for (key, value) in set.iter() {
                        rows.properties.key(key).append_str(value);
                    }
                }
                rows.properties.finish_row();
                rows.metric_metadata.finish_row();
                rows.scope.append_none();
            }
            Event::Span(span) => {
                let half = HalfSpan {
                    position,
                    begin: span.phase == SpanPhase::Begin,
                    time: context.clock.nanos(span.time),
                    name: span.name.to_owned(),
                    target: span.target.to_owned(),
                    file: span.file.map(str::to_owned),
                    line: span.line,
                    properties: properties_of(span.properties),
                    async_ids: span
                        .async_span
                        .map(|ids| (ids.span_id, ids.parent_span_id, ids.depth)),
                };
                if half.async_ids.is_some() {
                    async_spans.add(half, &mut rows.spans, context);
                } else {
                    thread_events.push(half);
                }
            }
            Event::Image(_) => rows.images += 1,
            Event::Other { .. } => rows.other += 1,
        }
    }
    let end = start + index.max(u64::try_from(block.nb_objects).unwrap_or(0));
    thread.add_block(
        start,
        end,
        thread_events,
        &mut rows.spans,
        context,
        now_secs,
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(identity: &Identity) -> Context<'_> {
        Context {
            identity,
            clock: Clock {
                start_nanos: 0,
                start_ticks: 0,
                frequency: 1e9,
            },
            insert_time_micros: 0,
            thread: Vec::new(),
        }
    }

    fn half(position: u64, begin: bool, name: &str) -> HalfSpan {
        HalfSpan {
            position,
            begin,
            time: i64::try_from(position).unwrap_or(0) * 10,
            name: name.into(),
            target: "t".into(),
            file: None,
            line: None,
            properties: Vec::new(),
            async_ids: None,
        }
    }

    #[test]
    fn thread_spans_pair_across_blocks_arriving_out_of_order() {
        let identity = Identity::default();
        let context = context(&identity);
        let mut state = ThreadState::default();
        let mut rows = SpansBuilder::default();
        // Second block first: outer end and a whole inner span, behind a gap.
        state.add_block(
            2,
            5,
            vec![
                half(2, true, "inner"),
                half(3, false, "inner"),
                half(4, false, "outer"),
            ],
            &mut rows,
            &context,
            0,
        );
        assert_eq!(rows.len(), 0, "held behind the gap");
        assert_eq!(state.held.len(), 3);
        // Then the first block: the outer begin and one more event position.
        state.add_block(0, 2, vec![half(0, true, "outer")], &mut rows, &context, 1);
        assert_eq!(rows.len(), 2);
        assert!(state.open.is_empty() && state.held.is_empty());
        let batch = rows.finish().expect("valid rows");
        let names = arrow::compute::cast(
            batch.column_by_name("name").expect("name"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("cast");
        let names: Vec<_> = names
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("strings")
            .iter()
            .collect();
        assert_eq!(names, [Some("inner"), Some("outer")]);
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up() {
        let identity = Identity::default();
        let context = context(&identity);
        let mut state = ThreadState::default();
        let mut rows = SpansBuilder::default();
        state.add_block(
            10,
            12,
            vec![half(10, true, "a"), half(11, false, "a")],
            &mut rows,
            &context,
            0,
        );
        assert_eq!(rows.len(), 0);
        state.add_block(12, 13, vec![], &mut rows, &context, GAP_TIMEOUT_SECS + 1);
        assert_eq!(rows.len(), 1);
        assert_eq!(state.next_position, 13);
    }

    #[test]
    fn async_spans_pair_by_id_in_any_order() {
        let identity = Identity::default();
        let context = context(&identity);
        let mut state = AsyncState::default();
        let mut rows = SpansBuilder::default();
        let mut end = half(0, false, "fut");
        end.async_ids = Some((7, 3, 2));
        let mut begin = half(0, true, "fut");
        begin.async_ids = Some((7, 3, 2));
        state.add(end, &mut rows, &context);
        assert_eq!(rows.len(), 0);
        state.add(begin, &mut rows, &context);
        assert_eq!(rows.len(), 1);
        assert!(state.open.is_empty());
    }
}
