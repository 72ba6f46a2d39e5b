//! The canonical tables: their names, Arrow schemas, partitioning and layout.
//!
//! Every table is a Delta table under the object-store root, partitioned by the event date
//! (`date`). Column names follow Micromegas where it has one (`log_entries`, `measures`,
//! `properties`, `msg`, `level`, `target` ...). `docs/schema.md` documents every column;
//! a test checks that it names them all.
//!
//! A row carries its process and service identity as plain columns; the full resource
//! (OTLP) or process description (native) is stored once, in `processes`, under the
//! `process_id` every row carries. That keeps the per-row cost of ingest independent of
//! how many resource attributes a producer sends.
//!
//! Types are chosen so every Delta reader can read them: signed integers only (OTLP's
//! unsigned fields are stored bit for bit in the next wider signed type, or as `long`),
//! plain `string`/`binary` (no view types), `timestamp` in microseconds with UTC, and
//! exact nanoseconds in `*_unix_nano` `long` columns beside the timestamps.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The partition column of every table.
pub const DATE_COLUMN: &str = "date";

/// A canonical table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableKind {
    /// OTLP spans and native thread/async spans, one row per span.
    Spans,
    /// OTLP log records and native log events.
    LogEntries,
    /// Numeric metric points: OTLP gauges and sums, native integer and float metrics.
    Measures,
    /// OTLP histogram, exponential-histogram and summary points.
    Histograms,
    /// One row per process (a native process, or an OTLP resource).
    Processes,
    /// One row per stream (a native stream, or an OTLP resource and signal).
    Streams,
}

impl TableKind {
    pub const ALL: [TableKind; 6] = [
        TableKind::Spans,
        TableKind::LogEntries,
        TableKind::Measures,
        TableKind::Histograms,
        TableKind::Processes,
        TableKind::Streams,
    ];

    /// The table's name, in SQL and in the object store.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Spans => "spans",
            TableKind::LogEntries => "log_entries",
            TableKind::Measures => "measures",
            TableKind::Histograms => "histograms",
            TableKind::Processes => "processes",
            TableKind::Streams => "streams",
        }
    }

    pub fn from_name(name: &str) -> Option<TableKind> {
        TableKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The Arrow schema of the table, partition column included (last).
    pub fn schema(self) -> SchemaRef {
        match self {
            TableKind::Spans => SPANS.clone(),
            TableKind::LogEntries => LOG_ENTRIES.clone(),
            TableKind::Measures => MEASURES.clone(),
            TableKind::Histograms => HISTOGRAMS.clone(),
            TableKind::Processes => PROCESSES.clone(),
            TableKind::Streams => STREAMS.clone(),
        }
    }

    /// The event-time column rows are sorted by and the date is derived from.
    pub fn time_column(self) -> &'static str {
        match self {
            TableKind::Spans => "start_time",
            TableKind::LogEntries | TableKind::Measures | TableKind::Histograms => "time",
            TableKind::Processes => "start_time",
            TableKind::Streams => "insert_time",
        }
    }

    /// Columns that get a Parquet bloom filter (point lookups on high-cardinality ids).
    pub fn bloom_filter_columns(self) -> &'static [&'static str] {
        match self {
            TableKind::Spans => &["trace_id"],
            TableKind::LogEntries => &["trace_id"],
            TableKind::Processes => &["process_id"],
            TableKind::Streams => &["stream_id"],
            TableKind::Measures | TableKind::Histograms => &[],
        }
    }

    /// Top-level columns whose values are all distinct (no dictionary encoding).
    pub fn unique_columns(self) -> &'static [&'static str] {
        match self {
            TableKind::Spans => &["span_id"],
            TableKind::Processes => &["process_id"],
            TableKind::Streams => &["stream_id"],
            TableKind::LogEntries | TableKind::Measures | TableKind::Histograms => &[],
        }
    }

    /// Version of the column layout; bumped (with a migration note in docs/schema.md)
    /// whenever a column is added.
    pub fn schema_version(self) -> i64 {
        1
    }
}

/// `timestamp` (µs, UTC), Delta's `timestamp` type.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The typed value of an attribute (OTLP `AnyValue`): exactly one member is set, or none
/// for an empty value. Arrays and key-value lists are kept whole, as OTLP/JSON in `json`
/// (`{"arrayValue":...}` / `{"kvlistValue":...}`), so nesting of any depth survives.
pub fn any_value_fields() -> Fields {
    Fields::from(vec![
        Field::new("str", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("double", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("bytes", DataType::Binary, true),
        Field::new("json", DataType::Utf8, true),
    ])
}

pub fn any_value_type() -> DataType {
    DataType::Struct(any_value_fields())
}

/// The entries field of an attribute map: `key_value` with `key` and `value`, the names
/// Parquet and Delta readers use, so every writer and reader agrees.
pub fn attributes_entries_field() -> Arc<Field> {
    Arc::new(Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", any_value_type(), true),
        ])),
        false,
    ))
}

/// An attribute map: key → typed value, in the order the producer sent them.
pub fn attributes_type() -> DataType {
    DataType::Map(attributes_entries_field(), false)
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn int64(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}

fn int32(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int32, nullable)
}

fn float64(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Float64, nullable)
}

fn timestamp(name: &str, nullable: bool) -> Field {
    Field::new(name, timestamp_type(), nullable)
}

fn attributes(name: &str) -> Field {
    Field::new(name, attributes_type(), true)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("element", item, true))),
        true,
    )
}

fn date() -> Field {
    // Nullable because Delta readers expect partition columns to be; never null in practice.
    Field::new(DATE_COLUMN, DataType::Date32, true)
}

/// Who produced the row: the process and stream, and the promoted service identity.
fn identity() -> Vec<Field> {
    vec![
        utf8("process_id", false),
        utf8("stream_id", false),
        timestamp("insert_time", false),
        utf8("exe", true),
        utf8("username", true),
        utf8("computer", true),
        utf8("service_name", true),
        utf8("service_namespace", true),
        utf8("service_version", true),
        utf8("service_instance_id", true),
    ]
}

/// The instrumentation scope of an OTLP record. The resource is not repeated on every row:
/// it is the row's process (`process_id`), whose full attributes are in `processes`.
fn envelope() -> Vec<Field> {
    vec![
        utf8("scope_name", true),
        utf8("scope_version", true),
        attributes("scope_properties"),
        int64("scope_dropped_properties_count", true),
        utf8("scope_schema_url", true),
    ]
}

fn exemplars() -> Field {
    list_of(
        "exemplars",
        DataType::Struct(Fields::from(vec![
            int64("time_unix_nano", false),
            float64("value", true),
            int64("int_value", true),
            utf8("trace_id", true),
            utf8("span_id", true),
            attributes("filtered_properties"),
        ])),
    )
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = identity();
    fields.extend([
        utf8("trace_id", true),
        utf8("span_id", false),
        utf8("parent_span_id", true),
        utf8("trace_state", true),
        int64("flags", true),
        utf8("name", false),
        int32("kind", true),
        timestamp("start_time", false),
        timestamp("end_time", false),
        int64("duration_ns", false),
        int64("start_time_unix_nano", false),
        int64("end_time_unix_nano", false),
        int32("status_code", true),
        utf8("status_message", true),
        int32("depth", true),
        attributes("properties"),
        int64("dropped_properties_count", true),
        list_of(
            "events",
            DataType::Struct(Fields::from(vec![
                int64("time_unix_nano", false),
                utf8("name", true),
                attributes("properties"),
                int64("dropped_properties_count", true),
            ])),
        ),
        int64("dropped_events_count", true),
        list_of(
            "links",
            DataType::Struct(Fields::from(vec![
                utf8("trace_id", true),
                utf8("span_id", true),
                utf8("trace_state", true),
                int64("flags", true),
                attributes("properties"),
                int64("dropped_properties_count", true),
            ])),
        ),
        int64("dropped_links_count", true),
    ]);
    fields.extend(envelope());
    fields.push(date());
    schema(fields)
});

static LOG_ENTRIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = identity();
    fields.extend([
        timestamp("time", false),
        int64("time_unix_nano", false),
        int64("observed_time_unix_nano", true),
        utf8("target", true),
        int32("level", false),
        int32("severity_number", true),
        utf8("severity_text", true),
        utf8("msg", true),
        Field::new("body", any_value_type(), true),
        utf8("trace_id", true),
        utf8("span_id", true),
        int64("flags", true),
        utf8("event_name", true),
        attributes("properties"),
        int64("dropped_properties_count", true),
    ]);
    fields.extend(envelope());
    fields.push(date());
    schema(fields)
});

/// Columns shared by both metric tables, after the identity.
fn metric_point() -> Vec<Field> {
    vec![
        timestamp("time", false),
        int64("time_unix_nano", false),
        int64("start_time_unix_nano", true),
        utf8("target", true),
        utf8("name", false),
        utf8("unit", true),
        utf8("description", true),
        utf8("metric_type", false),
    ]
}

static MEASURES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = identity();
    fields.extend(metric_point());
    fields.extend([
        float64("value", true),
        int64("int_value", true),
        int32("aggregation_temporality", true),
        Field::new("is_monotonic", DataType::Boolean, true),
        int64("flags", true),
        exemplars(),
        attributes("properties"),
        attributes("metric_metadata"),
    ]);
    fields.extend(envelope());
    fields.push(date());
    schema(fields)
});

static HISTOGRAMS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = identity();
    fields.extend(metric_point());
    fields.extend([
        int64("count", false),
        float64("sum", true),
        float64("min", true),
        float64("max", true),
        list_of("bucket_counts", DataType::Int64),
        list_of("explicit_bounds", DataType::Float64),
        int32("scale", true),
        int64("zero_count", true),
        float64("zero_threshold", true),
        int32("positive_offset", true),
        list_of("positive_bucket_counts", DataType::Int64),
        int32("negative_offset", true),
        list_of("negative_bucket_counts", DataType::Int64),
        list_of(
            "quantile_values",
            DataType::Struct(Fields::from(vec![
                float64("quantile", false),
                float64("value", false),
            ])),
        ),
        int32("aggregation_temporality", true),
        int64("flags", true),
        exemplars(),
        attributes("properties"),
        attributes("metric_metadata"),
    ]);
    fields.extend(envelope());
    fields.push(date());
    schema(fields)
});

static PROCESSES: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("process_id", false),
        utf8("exe", true),
        utf8("username", true),
        utf8("realname", true),
        utf8("computer", true),
        utf8("distro", true),
        utf8("cpu_brand", true),
        int64("tsc_frequency", false),
        timestamp("start_time", false),
        int64("start_ticks", false),
        utf8("parent_process_id", true),
        utf8("service_name", true),
        utf8("service_namespace", true),
        utf8("service_version", true),
        utf8("service_instance_id", true),
        attributes("properties"),
        int64("dropped_properties_count", true),
        utf8("schema_url", true),
        utf8("entity_refs", true),
        utf8("source", false),
        timestamp("insert_time", false),
        date(),
    ])
});

static STREAMS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("stream_id", false),
        utf8("process_id", false),
        list_of("tags", DataType::Utf8),
        attributes("properties"),
        Field::new("dependencies_metadata", DataType::Binary, true),
        Field::new("objects_metadata", DataType::Binary, true),
        utf8("format", false),
        timestamp("insert_time", false),
        date(),
    ])
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_ends_with_the_date_partition() {
        for kind in TableKind::ALL {
            let schema = kind.schema();
            let last = schema.fields().last().expect("non-empty schema");
            assert_eq!(last.name(), DATE_COLUMN, "{}", kind.name());
            assert!(schema.field_with_name(kind.time_column()).is_ok());
            for column in kind
                .bloom_filter_columns()
                .iter()
                .chain(kind.unique_columns())
            {
                assert!(schema.field_with_name(column).is_ok(), "{column}");
            }
            assert_eq!(TableKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn no_view_or_unsigned_types() {
        fn check(data_type: &DataType, path: &str) {
            match data_type {
                DataType::Utf8View
                | DataType::BinaryView
                | DataType::LargeUtf8
                | DataType::LargeBinary
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => panic!("{path} has a type Delta readers do not all read"),
                DataType::Struct(fields) => {
                    for field in fields {
                        check(field.data_type(), &format!("{path}.{}", field.name()));
                    }
                }
                DataType::List(item) | DataType::Map(item, _) => check(item.data_type(), path),
                _ => {}
            }
        }
        for kind in TableKind::ALL {
            for field in kind.schema().fields() {
                check(
                    field.data_type(),
                    &format!("{}.{}", kind.name(), field.name()),
                );
            }
        }
    }
}
