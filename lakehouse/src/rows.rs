//! Builders for rows of the canonical tables.
//!
//! The gateway maps each wire format onto these builders; the builders know the table
//! layouts (see [`crate::schema`]) but nothing of any wire format. Column builders are
//! public fields so a normalizer appends straight into Arrow buffers; `finish` checks that
//! every column got a value for every row.

use std::sync::Arc;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder,
    Int32Builder, Int64Builder, ListArray, MapArray, PrimitiveBuilder, RecordBatch, StringArray,
    StringBuilder, StructArray, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, FieldRef, Fields, Float64Type, Int64Type,
};
use arrow::error::ArrowError;

use crate::schema::{TableKind, any_value_fields, attributes_entries_field};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Days since the Unix epoch of a time in Unix nanoseconds (the `date` partition value).
pub fn date_of_nanos(unix_nanos: i64) -> i32 {
    // |i64::MAX / NANOS_PER_DAY| is about 106,751: always fits an i32.
    i32::try_from(unix_nanos.div_euclid(NANOS_PER_DAY)).unwrap_or(i32::MAX)
}

/// Microseconds of a time in Unix nanoseconds, rounded down.
pub fn micros_of_nanos(unix_nanos: i64) -> i64 {
    unix_nanos.div_euclid(1_000)
}

fn timestamp_builder() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

/// Appends `Some` strings, and nulls for `None` and empty strings (proto3 cannot tell an
/// empty string from an absent one, so Tarn stores both as null).
pub fn append_opt_str(builder: &mut StringBuilder, value: Option<&str>) {
    match value {
        Some(text) if !text.is_empty() => builder.append_value(text),
        _ => builder.append_null(),
    }
}

/// Builds the typed-value struct of attributes (OTLP `AnyValue`).
#[derive(Debug, Default)]
pub struct AnyValueBuilder {
    str: StringBuilder,
    int: Int64Builder,
    double: Float64Builder,
    bool: BooleanBuilder,
    bytes: BinaryBuilder,
    json: StringBuilder,
    validity: Vec<bool>,
}

impl AnyValueBuilder {
    fn nulls_except(&mut self, keep: usize) {
        if keep != 0 {
            self.str.append_null();
        }
        if keep != 1 {
            self.int.append_null();
        }
        if keep != 2 {
            self.double.append_null();
        }
        if keep != 3 {
            self.bool.append_null();
        }
        if keep != 4 {
            self.bytes.append_null();
        }
        if keep != 5 {
            self.json.append_null();
        }
        self.validity.push(true);
    }

    pub fn append_str(&mut self, value: &str) {
        self.str.append_value(value);
        self.nulls_except(0);
    }

    pub fn append_int(&mut self, value: i64) {
        self.int.append_value(value);
        self.nulls_except(1);
    }

    pub fn append_double(&mut self, value: f64) {
        self.double.append_value(value);
        self.nulls_except(2);
    }

    pub fn append_bool(&mut self, value: bool) {
        self.bool.append_value(value);
        self.nulls_except(3);
    }

    pub fn append_bytes(&mut self, value: &[u8]) {
        self.bytes.append_value(value);
        self.nulls_except(4);
    }

    /// An array or key-value list, as its OTLP/JSON `AnyValue` object.
    pub fn append_json(&mut self, value: &str) {
        self.json.append_value(value);
        self.nulls_except(5);
    }

    /// A value that is present but holds nothing (an `AnyValue` with no member set).
    pub fn append_empty(&mut self) {
        self.nulls_except(usize::MAX);
    }

    /// No value at all (a key-value pair whose value is absent).
    pub fn append_null(&mut self) {
        self.nulls_except(usize::MAX);
        if let Some(last) = self.validity.last_mut() {
            *last = false;
        }
    }

    pub fn len(&self) -> usize {
        self.validity.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validity.is_empty()
    }

    pub fn finish(&mut self) -> StructArray {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.str.finish()),
            Arc::new(self.int.finish()),
            Arc::new(self.double.finish()),
            Arc::new(self.bool.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.json.finish()),
        ];
        let validity = std::mem::take(&mut self.validity);
        let nulls = if validity.iter().all(|valid| *valid) {
            None
        } else {
            Some(NullBuffer::from(validity))
        };
        StructArray::new(any_value_fields(), columns, nulls)
    }
}

/// Builds an attribute-map column: per row, `key(..)` then one value per entry, then
/// `finish_row()`.
#[derive(Debug)]
pub struct AttributesBuilder {
    keys: StringBuilder,
    values: AnyValueBuilder,
    offsets: Vec<i32>,
}

impl Default for AttributesBuilder {
    fn default() -> Self {
        AttributesBuilder {
            keys: StringBuilder::new(),
            values: AnyValueBuilder::default(),
            offsets: vec![0],
        }
    }
}

impl AttributesBuilder {
    /// Starts an entry; append exactly one value to the returned builder.
    pub fn key(&mut self, key: &str) -> &mut AnyValueBuilder {
        self.keys.append_value(key);
        &mut self.values
    }

    /// Ends the current row's map.
    pub fn finish_row(&mut self) {
        // More than i32::MAX entries in one batch would overflow Arrow's offsets; batches
        // are bounded far below that by the request size limits.
        let end = i32::try_from(self.values.len()).unwrap_or(i32::MAX);
        self.offsets.push(end);
    }

    /// Number of rows finished so far.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<MapArray, ArrowError> {
        let entries_field = attributes_entries_field();
        let DataType::Struct(entry_fields) = entries_field.data_type() else {
            return Err(ArrowError::SchemaError(
                "map entries must be a struct".into(),
            ));
        };
        let keys: ArrayRef = Arc::new(self.keys.finish());
        let values: ArrayRef = Arc::new(self.values.finish());
        let entries = StructArray::try_new(entry_fields.clone(), vec![keys, values], None)?;
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        MapArray::try_new(
            entries_field,
            OffsetBuffer::new(offsets.into()),
            entries,
            None,
            false,
        )
    }
}

/// Builds a `list<struct>` column from a struct-row builder.
#[derive(Debug)]
pub struct ListBuilder<T> {
    pub items: T,
    offsets: Vec<i32>,
}

/// A builder of struct rows that can sit inside a [`ListBuilder`].
pub trait StructRows {
    /// Items appended so far.
    fn item_count(&self) -> usize;
    fn fields(&self) -> Fields;
    fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError>;
}

impl<T: StructRows + Default> Default for ListBuilder<T> {
    fn default() -> Self {
        ListBuilder {
            items: T::default(),
            offsets: vec![0],
        }
    }
}

impl<T: StructRows> ListBuilder<T> {
    /// Ends the current row's list (after appending its items to `items`).
    pub fn finish_row(&mut self) {
        let end = i32::try_from(self.items.item_count()).unwrap_or(i32::MAX);
        self.offsets.push(end);
    }

    pub fn finish(&mut self) -> Result<ListArray, ArrowError> {
        let fields = self.items.fields();
        let columns = self.items.finish_columns()?;
        let values = StructArray::try_new(fields.clone(), columns, None)?;
        let item: FieldRef = Arc::new(Field::new("element", DataType::Struct(fields), true));
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        ListArray::try_new(
            item,
            OffsetBuffer::new(offsets.into()),
            Arc::new(values),
            None,
        )
    }
}

/// The identity every row carries: who produced it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub process_id: String,
    pub stream_id: String,
    pub exe: Option<String>,
    pub username: Option<String>,
    pub computer: Option<String>,
    pub service_name: Option<String>,
    pub service_namespace: Option<String>,
    pub service_version: Option<String>,
    pub service_instance_id: Option<String>,
}

/// Identity columns, in schema order. Rows come in runs that share one identity and one
/// insert time (every row of a request's resource, of a native block), so the builder keeps
/// runs and writes each column whole at `finish`: one comparison per row instead of ten
/// appends.
#[derive(Debug, Default)]
pub struct IdentityColumns {
    runs: Vec<IdentityRun>,
}

#[derive(Debug)]
struct IdentityRun {
    identity: Identity,
    insert_time_micros: i64,
    rows: usize,
}

impl IdentityColumns {
    /// Appends one row of identity, received at `insert_time_micros`.
    pub fn append(&mut self, identity: &Identity, insert_time_micros: i64) {
        if let Some(last) = self.runs.last_mut()
            && last.insert_time_micros == insert_time_micros
            && last.identity == *identity
        {
            last.rows += 1;
            return;
        }
        self.runs.push(IdentityRun {
            identity: identity.clone(),
            insert_time_micros,
            rows: 1,
        });
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.runs.iter().map(|run| run.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    fn finish(&mut self, columns: &mut Vec<ArrayRef>) -> Result<(), ArrowError> {
        let runs = std::mem::take(&mut self.runs);
        let rows = runs.iter().map(|run| run.rows).sum();
        columns.push(repeated_strings(&runs, rows, |i| {
            Some(i.process_id.as_str())
        })?);
        columns.push(repeated_strings(&runs, rows, |i| {
            Some(i.stream_id.as_str())
        })?);
        let mut times = Vec::with_capacity(rows);
        for run in &runs {
            times.extend(std::iter::repeat_n(run.insert_time_micros, run.rows));
        }
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(times).with_timezone("UTC"),
        ));
        let optional: [fn(&Identity) -> Option<&str>; 7] = [
            |i| i.exe.as_deref(),
            |i| i.username.as_deref(),
            |i| i.computer.as_deref(),
            |i| i.service_name.as_deref(),
            |i| i.service_namespace.as_deref(),
            |i| i.service_version.as_deref(),
            |i| i.service_instance_id.as_deref(),
        ];
        for field in optional {
            // Empty is null, as `append_opt_str` stores it.
            columns.push(repeated_strings(&runs, rows, |i| {
                field(i).filter(|text| !text.is_empty())
            })?);
        }
        Ok(())
    }
}

/// A string column of `rows` rows holding each run's `field`, `rows` times.
fn repeated_strings(
    runs: &[IdentityRun],
    rows: usize,
    field: impl Fn(&Identity) -> Option<&str>,
) -> Result<ArrayRef, ArrowError> {
    let bytes: usize = runs
        .iter()
        .map(|run| field(&run.identity).map_or(0, str::len) * run.rows)
        .sum();
    let too_long = |_| ArrowError::InvalidArgumentError(format!("{bytes} bytes in one column"));
    i32::try_from(bytes).map_err(too_long)?;
    let mut values = Vec::with_capacity(bytes);
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0_i32);
    let mut valid = BooleanBufferBuilder::new(rows);
    let mut end = 0_i32;
    for run in runs {
        match field(&run.identity) {
            Some(text) => {
                // Fits: the total was checked above.
                let len = i32::try_from(text.len()).unwrap_or(i32::MAX);
                for _ in 0..run.rows {
                    values.extend_from_slice(text.as_bytes());
                    end += len;
                    offsets.push(end);
                }
                valid.append_n(run.rows, true);
            }
            None => {
                offsets.extend(std::iter::repeat_n(end, run.rows));
                valid.append_n(run.rows, false);
            }
        }
    }
    let nulls = NullBuffer::new(valid.finish());
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Ok(Arc::new(StringArray::try_new(
        OffsetBuffer::new(offsets.into()),
        values.into(),
        nulls,
    )?))
}

/// Instrumentation-scope columns, in schema order.
#[derive(Debug, Default)]
pub struct ScopeColumns {
    pub name: StringBuilder,
    pub version: StringBuilder,
    pub properties: AttributesBuilder,
    pub dropped_properties_count: Int64Builder,
    pub schema_url: StringBuilder,
}

impl ScopeColumns {
    /// A row with no scope (native data).
    pub fn append_none(&mut self) {
        self.name.append_null();
        self.version.append_null();
        self.properties.finish_row();
        self.dropped_properties_count.append_null();
        self.schema_url.append_null();
    }

    fn finish(&mut self, columns: &mut Vec<ArrayRef>) -> Result<(), ArrowError> {
        columns.push(Arc::new(self.name.finish()));
        columns.push(Arc::new(self.version.finish()));
        columns.push(Arc::new(self.properties.finish()?));
        columns.push(Arc::new(self.dropped_properties_count.finish()));
        columns.push(Arc::new(self.schema_url.finish()));
        Ok(())
    }
}

/// Items of `spans.events`.
#[derive(Debug, Default)]
pub struct SpanEvents {
    pub time_unix_nano: Int64Builder,
    pub name: StringBuilder,
    pub properties: AttributesBuilder,
    pub dropped_properties_count: Int64Builder,
}

impl StructRows for SpanEvents {
    fn item_count(&self) -> usize {
        self.time_unix_nano.len()
    }

    fn fields(&self) -> Fields {
        struct_fields(TableKind::Spans, "events")
    }

    fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.time_unix_nano.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.properties.finish()?),
            Arc::new(self.dropped_properties_count.finish()),
        ])
    }
}

/// Items of `spans.links`.
#[derive(Debug, Default)]
pub struct SpanLinks {
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub trace_state: StringBuilder,
    pub flags: Int64Builder,
    pub properties: AttributesBuilder,
    pub dropped_properties_count: Int64Builder,
}

impl StructRows for SpanLinks {
    fn item_count(&self) -> usize {
        self.span_id.len()
    }

    fn fields(&self) -> Fields {
        struct_fields(TableKind::Spans, "links")
    }

    fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.properties.finish()?),
            Arc::new(self.dropped_properties_count.finish()),
        ])
    }
}

/// The struct fields of a `list<struct>` column of a table.
fn struct_fields(table: TableKind, column: &str) -> Fields {
    let schema = table.schema();
    let Ok(field) = schema.field_with_name(column) else {
        return Fields::empty();
    };
    match field.data_type() {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fields) => fields.clone(),
            _ => Fields::empty(),
        },
        _ => Fields::empty(),
    }
}

/// Rows of `spans`.
#[derive(Debug)]
pub struct SpansBuilder {
    pub identity: IdentityColumns,
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub parent_span_id: StringBuilder,
    pub trace_state: StringBuilder,
    pub flags: Int64Builder,
    pub name: StringBuilder,
    pub kind: Int32Builder,
    start_time: TimestampMicrosecondBuilder,
    end_time: TimestampMicrosecondBuilder,
    duration_ns: Int64Builder,
    start_time_unix_nano: Int64Builder,
    end_time_unix_nano: Int64Builder,
    pub status_code: Int32Builder,
    pub status_message: StringBuilder,
    pub depth: Int32Builder,
    pub properties: AttributesBuilder,
    pub dropped_properties_count: Int64Builder,
    pub events: ListBuilder<SpanEvents>,
    pub dropped_events_count: Int64Builder,
    pub links: ListBuilder<SpanLinks>,
    pub dropped_links_count: Int64Builder,
    pub scope: ScopeColumns,
    date: Date32Builder,
}

impl Default for SpansBuilder {
    fn default() -> Self {
        SpansBuilder {
            identity: IdentityColumns::default(),
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            parent_span_id: StringBuilder::new(),
            trace_state: StringBuilder::new(),
            flags: Int64Builder::new(),
            name: StringBuilder::new(),
            kind: Int32Builder::new(),
            start_time: timestamp_builder(),
            end_time: timestamp_builder(),
            duration_ns: Int64Builder::new(),
            start_time_unix_nano: Int64Builder::new(),
            end_time_unix_nano: Int64Builder::new(),
            status_code: Int32Builder::new(),
            status_message: StringBuilder::new(),
            depth: Int32Builder::new(),
            properties: AttributesBuilder::default(),
            dropped_properties_count: Int64Builder::new(),
            events: ListBuilder::default(),
            dropped_events_count: Int64Builder::new(),
            links: ListBuilder::default(),
            dropped_links_count: Int64Builder::new(),
            scope: ScopeColumns::default(),
            date: Date32Builder::new(),
        }
    }
}

impl SpansBuilder {
    /// Sets the span's times (Unix nanoseconds): the timestamps, the exact nanoseconds, the
    /// duration and the date partition all derive from them.
    pub fn append_times(&mut self, start_unix_nano: i64, end_unix_nano: i64) {
        self.start_time
            .append_value(micros_of_nanos(start_unix_nano));
        self.end_time.append_value(micros_of_nanos(end_unix_nano));
        self.duration_ns
            .append_value(end_unix_nano.saturating_sub(start_unix_nano));
        self.start_time_unix_nano.append_value(start_unix_nano);
        self.end_time_unix_nano.append_value(end_unix_nano);
        self.date.append_value(date_of_nanos(start_unix_nano));
    }

    pub fn len(&self) -> usize {
        self.span_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(40);
        self.identity.finish(&mut columns)?;
        columns.push(Arc::new(self.trace_id.finish()));
        columns.push(Arc::new(self.span_id.finish()));
        columns.push(Arc::new(self.parent_span_id.finish()));
        columns.push(Arc::new(self.trace_state.finish()));
        columns.push(Arc::new(self.flags.finish()));
        columns.push(Arc::new(self.name.finish()));
        columns.push(Arc::new(self.kind.finish()));
        columns.push(Arc::new(self.start_time.finish()));
        columns.push(Arc::new(self.end_time.finish()));
        columns.push(Arc::new(self.duration_ns.finish()));
        columns.push(Arc::new(self.start_time_unix_nano.finish()));
        columns.push(Arc::new(self.end_time_unix_nano.finish()));
        columns.push(Arc::new(self.status_code.finish()));
        columns.push(Arc::new(self.status_message.finish()));
        columns.push(Arc::new(self.depth.finish()));
        columns.push(Arc::new(self.properties.finish()?));
        columns.push(Arc::new(self.dropped_properties_count.finish()));
        columns.push(Arc::new(self.events.finish()?));
        columns.push(Arc::new(self.dropped_events_count.finish()));
        columns.push(Arc::new(self.links.finish()?));
        columns.push(Arc::new(self.dropped_links_count.finish()));
        self.scope.finish(&mut columns)?;
        columns.push(Arc::new(self.date.finish()));
        RecordBatch::try_new(TableKind::Spans.schema(), columns)
    }
}

/// Rows of `processes`.
#[derive(Debug)]
pub struct ProcessesBuilder {
    pub process_id: StringBuilder,
    pub exe: StringBuilder,
    pub username: StringBuilder,
    pub realname: StringBuilder,
    pub computer: StringBuilder,
    pub distro: StringBuilder,
    pub cpu_brand: StringBuilder,
    pub tsc_frequency: Int64Builder,
    start_time: TimestampMicrosecondBuilder,
    pub start_ticks: Int64Builder,
    pub parent_process_id: StringBuilder,
    pub service_name: StringBuilder,
    pub service_namespace: StringBuilder,
    pub service_version: StringBuilder,
    pub service_instance_id: StringBuilder,
    pub properties: AttributesBuilder,
    pub dropped_properties_count: Int64Builder,
    pub schema_url: StringBuilder,
    pub entity_refs: StringBuilder,
    pub source: StringBuilder,
    pub insert_time: TimestampMicrosecondBuilder,
    date: Date32Builder,
}

impl Default for ProcessesBuilder {
    fn default() -> Self {
        ProcessesBuilder {
            process_id: StringBuilder::new(),
            exe: StringBuilder::new(),
            username: StringBuilder::new(),
            realname: StringBuilder::new(),
            computer: StringBuilder::new(),
            distro: StringBuilder::new(),
            cpu_brand: StringBuilder::new(),
            tsc_frequency: Int64Builder::new(),
            start_time: timestamp_builder(),
            start_ticks: Int64Builder::new(),
            parent_process_id: StringBuilder::new(),
            service_name: StringBuilder::new(),
            service_namespace: StringBuilder::new(),
            service_version: StringBuilder::new(),
            service_instance_id: StringBuilder::new(),
            properties: AttributesBuilder::default(),
            dropped_properties_count: Int64Builder::new(),
            schema_url: StringBuilder::new(),
            entity_refs: StringBuilder::new(),
            source: StringBuilder::new(),
            insert_time: timestamp_builder(),
            date: Date32Builder::new(),
        }
    }
}

impl ProcessesBuilder {
    /// Sets the process start time (Unix nanoseconds) and the date partition.
    pub fn append_start_time(&mut self, unix_nanos: i64) {
        self.start_time.append_value(micros_of_nanos(unix_nanos));
        self.date.append_value(date_of_nanos(unix_nanos));
    }

    pub fn len(&self) -> usize {
        self.process_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.process_id.finish()),
            Arc::new(self.exe.finish()),
            Arc::new(self.username.finish()),
            Arc::new(self.realname.finish()),
            Arc::new(self.computer.finish()),
            Arc::new(self.distro.finish()),
            Arc::new(self.cpu_brand.finish()),
            Arc::new(self.tsc_frequency.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.start_ticks.finish()),
            Arc::new(self.parent_process_id.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.service_namespace.finish()),
            Arc::new(self.service_version.finish()),
            Arc::new(self.service_instance_id.finish()),
            Arc::new(self.properties.finish()?),
            Arc::new(self.dropped_properties_count.finish()),
            Arc::new(self.schema_url.finish()),
            Arc::new(self.entity_refs.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.insert_time.finish()),
            Arc::new(self.date.finish()),
        ];
        RecordBatch::try_new(TableKind::Processes.schema(), columns)
    }
}

/// Rows of `streams`.
#[derive(Debug)]
pub struct StreamsBuilder {
    pub stream_id: StringBuilder,
    pub process_id: StringBuilder,
    tags: arrow::array::ListBuilder<StringBuilder>,
    pub properties: AttributesBuilder,
    pub dependencies_metadata: BinaryBuilder,
    pub objects_metadata: BinaryBuilder,
    pub format: StringBuilder,
    insert_time: TimestampMicrosecondBuilder,
    date: Date32Builder,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        StreamsBuilder {
            stream_id: StringBuilder::new(),
            process_id: StringBuilder::new(),
            tags: arrow::array::ListBuilder::new(StringBuilder::new())
                .with_field(Arc::new(Field::new("element", DataType::Utf8, true))),
            properties: AttributesBuilder::default(),
            dependencies_metadata: BinaryBuilder::new(),
            objects_metadata: BinaryBuilder::new(),
            format: StringBuilder::new(),
            insert_time: timestamp_builder(),
            date: Date32Builder::new(),
        }
    }
}

impl StreamsBuilder {
    /// Sets the stream's tags.
    pub fn append_tags<'a>(&mut self, tags: impl IntoIterator<Item = &'a str>) {
        for tag in tags {
            self.tags.values().append_value(tag);
        }
        self.tags.append(true);
    }

    /// Sets when the stream was first seen (Unix microseconds), and the date partition.
    pub fn append_insert_time(&mut self, micros: i64) {
        self.insert_time.append_value(micros);
        self.date
            .append_value(date_of_nanos(micros.saturating_mul(1_000)));
    }

    pub fn len(&self) -> usize {
        self.stream_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.stream_id.finish()),
            Arc::new(self.process_id.finish()),
            Arc::new(self.tags.finish()),
            Arc::new(self.properties.finish()?),
            Arc::new(self.dependencies_metadata.finish()),
            Arc::new(self.objects_metadata.finish()),
            Arc::new(self.format.finish()),
            Arc::new(self.insert_time.finish()),
            Arc::new(self.date.finish()),
        ];
        RecordBatch::try_new(TableKind::Streams.schema(), columns)
    }
}

/// Times of an event-like row: the timestamp, the exact nanoseconds and the date.
#[derive(Debug)]
struct EventTime {
    time: TimestampMicrosecondBuilder,
    time_unix_nano: Int64Builder,
    date: Date32Builder,
}

impl Default for EventTime {
    fn default() -> Self {
        EventTime {
            time: timestamp_builder(),
            time_unix_nano: Int64Builder::new(),
            date: Date32Builder::new(),
        }
    }
}

impl EventTime {
    /// `exact` is stored as is; `effective` (the time the row is sorted and partitioned
    /// by) fills the timestamp and the date.
    fn append(&mut self, exact: i64, effective: i64) {
        self.time.append_value(micros_of_nanos(effective));
        self.time_unix_nano.append_value(exact);
        self.date.append_value(date_of_nanos(effective));
    }
}

/// Rows of `log_entries`.
#[derive(Debug, Default)]
pub struct LogEntriesBuilder {
    pub identity: IdentityColumns,
    times: EventTime,
    pub observed_time_unix_nano: Int64Builder,
    pub target: StringBuilder,
    pub level: Int32Builder,
    pub severity_number: Int32Builder,
    pub severity_text: StringBuilder,
    pub msg: StringBuilder,
    pub body: AnyValueBuilder,
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub flags: Int64Builder,
    pub event_name: StringBuilder,
    pub properties: AttributesBuilder,
    pub dropped_properties_count: Int64Builder,
    pub scope: ScopeColumns,
}

impl LogEntriesBuilder {
    /// Sets the record's time: `time_unix_nano` as sent, and the time the row is sorted
    /// and partitioned by (the observed time when `time_unix_nano` is 0).
    pub fn append_time(&mut self, time_unix_nano: i64, effective_unix_nano: i64) {
        self.times.append(time_unix_nano, effective_unix_nano);
    }

    pub fn len(&self) -> usize {
        self.level.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(32);
        self.identity.finish(&mut columns)?;
        columns.push(Arc::new(self.times.time.finish()));
        columns.push(Arc::new(self.times.time_unix_nano.finish()));
        columns.push(Arc::new(self.observed_time_unix_nano.finish()));
        columns.push(Arc::new(self.target.finish()));
        columns.push(Arc::new(self.level.finish()));
        columns.push(Arc::new(self.severity_number.finish()));
        columns.push(Arc::new(self.severity_text.finish()));
        columns.push(Arc::new(self.msg.finish()));
        columns.push(Arc::new(self.body.finish()));
        columns.push(Arc::new(self.trace_id.finish()));
        columns.push(Arc::new(self.span_id.finish()));
        columns.push(Arc::new(self.flags.finish()));
        columns.push(Arc::new(self.event_name.finish()));
        columns.push(Arc::new(self.properties.finish()?));
        columns.push(Arc::new(self.dropped_properties_count.finish()));
        self.scope.finish(&mut columns)?;
        columns.push(Arc::new(self.times.date.finish()));
        RecordBatch::try_new(TableKind::LogEntries.schema(), columns)
    }
}

/// Items of `exemplars` (in `measures` and `histograms`).
#[derive(Debug, Default)]
pub struct Exemplars {
    pub time_unix_nano: Int64Builder,
    pub value: Float64Builder,
    pub int_value: Int64Builder,
    pub trace_id: StringBuilder,
    pub span_id: StringBuilder,
    pub filtered_properties: AttributesBuilder,
}

impl StructRows for Exemplars {
    fn item_count(&self) -> usize {
        self.time_unix_nano.len()
    }

    fn fields(&self) -> Fields {
        struct_fields(TableKind::Measures, "exemplars")
    }

    fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.time_unix_nano.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.int_value.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.filtered_properties.finish()?),
        ])
    }
}

/// Columns every metric point has, after the identity.
#[derive(Debug, Default)]
pub struct MetricPointColumns {
    times: EventTime,
    pub start_time_unix_nano: Int64Builder,
    pub target: StringBuilder,
    pub name: StringBuilder,
    pub unit: StringBuilder,
    pub description: StringBuilder,
    pub metric_type: StringBuilder,
}

impl MetricPointColumns {
    /// Sets the point's time (Unix nanoseconds).
    pub fn append_time(&mut self, time_unix_nano: i64) {
        self.times.append(time_unix_nano, time_unix_nano);
    }

    fn finish(&mut self, columns: &mut Vec<ArrayRef>) {
        columns.push(Arc::new(self.times.time.finish()));
        columns.push(Arc::new(self.times.time_unix_nano.finish()));
        columns.push(Arc::new(self.start_time_unix_nano.finish()));
        columns.push(Arc::new(self.target.finish()));
        columns.push(Arc::new(self.name.finish()));
        columns.push(Arc::new(self.unit.finish()));
        columns.push(Arc::new(self.description.finish()));
        columns.push(Arc::new(self.metric_type.finish()));
    }
}

/// Rows of `measures`.
#[derive(Debug, Default)]
pub struct MeasuresBuilder {
    pub identity: IdentityColumns,
    pub point: MetricPointColumns,
    pub value: Float64Builder,
    pub int_value: Int64Builder,
    pub aggregation_temporality: Int32Builder,
    pub is_monotonic: BooleanBuilder,
    pub flags: Int64Builder,
    pub exemplars: ListBuilder<Exemplars>,
    pub properties: AttributesBuilder,
    pub metric_metadata: AttributesBuilder,
    pub scope: ScopeColumns,
}

impl MeasuresBuilder {
    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(32);
        self.identity.finish(&mut columns)?;
        self.point.finish(&mut columns);
        columns.push(Arc::new(self.value.finish()));
        columns.push(Arc::new(self.int_value.finish()));
        columns.push(Arc::new(self.aggregation_temporality.finish()));
        columns.push(Arc::new(self.is_monotonic.finish()));
        columns.push(Arc::new(self.flags.finish()));
        columns.push(Arc::new(self.exemplars.finish()?));
        columns.push(Arc::new(self.properties.finish()?));
        columns.push(Arc::new(self.metric_metadata.finish()?));
        self.scope.finish(&mut columns)?;
        columns.push(Arc::new(self.point.times.date.finish()));
        RecordBatch::try_new(TableKind::Measures.schema(), columns)
    }
}

/// Items of `histograms.quantile_values`.
#[derive(Debug, Default)]
pub struct QuantileValues {
    pub quantile: Float64Builder,
    pub value: Float64Builder,
}

impl StructRows for QuantileValues {
    fn item_count(&self) -> usize {
        self.quantile.len()
    }

    fn fields(&self) -> Fields {
        struct_fields(TableKind::Histograms, "quantile_values")
    }

    fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.quantile.finish()),
            Arc::new(self.value.finish()),
        ])
    }
}

/// A `list<long>` or `list<double>` column, with Delta's `element` item name.
#[derive(Debug)]
pub struct PrimitiveList<T: ArrowPrimitiveType> {
    values: PrimitiveBuilder<T>,
    offsets: Vec<i32>,
    validity: Vec<bool>,
}

impl<T: ArrowPrimitiveType> Default for PrimitiveList<T> {
    fn default() -> Self {
        PrimitiveList {
            values: PrimitiveBuilder::new(),
            offsets: vec![0],
            validity: Vec::new(),
        }
    }
}

impl<T: ArrowPrimitiveType> PrimitiveList<T> {
    /// Appends one list (`None` for a null list).
    pub fn append(&mut self, items: Option<&[T::Native]>) {
        if let Some(items) = items {
            self.values.append_slice(items);
        }
        let end = i32::try_from(self.values.len()).unwrap_or(i32::MAX);
        self.offsets.push(end);
        self.validity.push(items.is_some());
    }

    pub fn finish(&mut self) -> Result<ListArray, ArrowError> {
        let values = self.values.finish();
        let item: FieldRef = Arc::new(Field::new("element", values.data_type().clone(), true));
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let validity = std::mem::take(&mut self.validity);
        let nulls = (!validity.iter().all(|valid| *valid)).then(|| NullBuffer::from(validity));
        ListArray::try_new(
            item,
            OffsetBuffer::new(offsets.into()),
            Arc::new(values),
            nulls,
        )
    }
}

/// Rows of `histograms`.
#[derive(Debug, Default)]
pub struct HistogramsBuilder {
    pub identity: IdentityColumns,
    pub point: MetricPointColumns,
    pub count: Int64Builder,
    pub sum: Float64Builder,
    pub min: Float64Builder,
    pub max: Float64Builder,
    pub bucket_counts: PrimitiveList<Int64Type>,
    pub explicit_bounds: PrimitiveList<Float64Type>,
    pub scale: Int32Builder,
    pub zero_count: Int64Builder,
    pub zero_threshold: Float64Builder,
    pub positive_offset: Int32Builder,
    pub positive_bucket_counts: PrimitiveList<Int64Type>,
    pub negative_offset: Int32Builder,
    pub negative_bucket_counts: PrimitiveList<Int64Type>,
    pub quantile_values: ListBuilder<QuantileValues>,
    pub aggregation_temporality: Int32Builder,
    pub flags: Int64Builder,
    pub exemplars: ListBuilder<Exemplars>,
    pub properties: AttributesBuilder,
    pub metric_metadata: AttributesBuilder,
    pub scope: ScopeColumns,
}

impl HistogramsBuilder {
    pub fn len(&self) -> usize {
        self.count.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(40);
        self.identity.finish(&mut columns)?;
        self.point.finish(&mut columns);
        columns.push(Arc::new(self.count.finish()));
        columns.push(Arc::new(self.sum.finish()));
        columns.push(Arc::new(self.min.finish()));
        columns.push(Arc::new(self.max.finish()));
        columns.push(Arc::new(self.bucket_counts.finish()?));
        columns.push(Arc::new(self.explicit_bounds.finish()?));
        columns.push(Arc::new(self.scale.finish()));
        columns.push(Arc::new(self.zero_count.finish()));
        columns.push(Arc::new(self.zero_threshold.finish()));
        columns.push(Arc::new(self.positive_offset.finish()));
        columns.push(Arc::new(self.positive_bucket_counts.finish()?));
        columns.push(Arc::new(self.negative_offset.finish()));
        columns.push(Arc::new(self.negative_bucket_counts.finish()?));
        columns.push(Arc::new(self.quantile_values.finish()?));
        columns.push(Arc::new(self.aggregation_temporality.finish()));
        columns.push(Arc::new(self.flags.finish()));
        columns.push(Arc::new(self.exemplars.finish()?));
        columns.push(Arc::new(self.properties.finish()?));
        columns.push(Arc::new(self.metric_metadata.finish()?));
        self.scope.finish(&mut columns)?;
        columns.push(Arc::new(self.point.times.date.finish()));
        RecordBatch::try_new(TableKind::Histograms.schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn identity_runs_become_the_same_columns_as_row_by_row_appends() {
        let a = Identity {
            process_id: "p1".into(),
            stream_id: "s1".into(),
            exe: Some("exe".into()),
            service_name: Some(String::new()),
            service_version: Some("1.2".into()),
            ..Identity::default()
        };
        let mut b = a.clone();
        b.stream_id = "s2".into();
        b.exe = None;
        b.computer = Some("host".into());
        let rows = [(&a, 10), (&a, 10), (&b, 10), (&b, 11), (&a, 11), (&a, 11)];
        let mut columns = IdentityColumns::default();
        for (identity, time) in rows {
            columns.append(identity, time);
        }
        assert_eq!(columns.len(), 6);
        assert_eq!(columns.runs.len(), 4);
        let mut arrays = Vec::new();
        columns.finish(&mut arrays).expect("columns");
        assert!(columns.is_empty());
        assert_eq!(arrays.len(), 10);
        let strings = |i: usize| -> Vec<Option<String>> {
            arrays[i]
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect()
        };
        let expect = |f: fn(&Identity) -> Option<&str>| -> Vec<Option<String>> {
            rows.iter()
                .map(|(identity, _)| f(identity).filter(|t| !t.is_empty()).map(str::to_owned))
                .collect()
        };
        assert_eq!(strings(0), expect(|i| Some(i.process_id.as_str())));
        assert_eq!(strings(1), expect(|i| Some(i.stream_id.as_str())));
        let times: Vec<i64> = arrays[2]
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .values()
            .to_vec();
        assert_eq!(times, [10, 10, 10, 11, 11, 11]);
        assert_eq!(arrays[2].data_type(), &crate::schema::timestamp_type());
        assert_eq!(strings(3), expect(|i| i.exe.as_deref()));
        assert_eq!(strings(5), expect(|i| i.computer.as_deref()));
        // An empty service name is null, as on the row-by-row path.
        assert_eq!(strings(6), vec![None; 6]);
        assert_eq!(arrays[6].null_count(), 6);
        assert_eq!(strings(8), expect(|i| i.service_version.as_deref()));
        assert_eq!(arrays[9].null_count(), 6);
    }

    #[test]
    fn dates_and_micros_round_down() {
        assert_eq!(date_of_nanos(0), 0);
        assert_eq!(date_of_nanos(NANOS_PER_DAY - 1), 0);
        assert_eq!(date_of_nanos(-1), -1);
        assert_eq!(micros_of_nanos(1_999), 1);
        assert_eq!(micros_of_nanos(-1), -1);
    }

    #[test]
    fn attributes_keep_types_order_and_empty_values() {
        let mut builder = AttributesBuilder::default();
        builder.key("b").append_int(7);
        builder.key("a").append_str("x");
        builder.key("e").append_empty();
        builder.key("n").append_null();
        builder.finish_row();
        builder.finish_row();
        let map = builder.finish().expect("valid map");
        assert_eq!(map.len(), 2);
        assert_eq!(map.value_length(0), 4);
        assert_eq!(map.value_length(1), 0);
        let keys = map.keys().as_string::<i32>();
        assert_eq!(keys.value(0), "b");
        assert_eq!(keys.value(1), "a");
        let values = map.values().as_struct();
        let ints = values.column(1).as_primitive::<Int64Type>();
        assert_eq!(ints.value(0), 7);
        assert!(values.is_valid(2) && values.column(0).is_null(2));
        assert!(values.is_null(3));
        assert_eq!(map.data_type(), &crate::schema::attributes_type());
    }
}
