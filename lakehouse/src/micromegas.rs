//! Micromegas' SQL surface over Tarn's tables, so its documented queries, its Python
//! client and its Grafana dashboards run unchanged.
//!
//! - `view_instance(view, id)`: the per-stream and per-process views of Micromegas:
//!   `thread_spans` (one stream's call tree: `id`, `parent`, `depth`, `hash`, `begin`,
//!   `end`, `duration`, `name`, `target`, `filename`, `line`, plus a root row for the
//!   thread), `async_events` (one process's async span begin and end events), `log_entries`
//!   and `measures` (one process's rows); `view_instance(view, 'global')` is the whole table.
//! - `process_spans(process_id, 'thread' | 'async' | 'both')`: all of a process's spans,
//!   each thread's call tree (as `thread_spans`) stream by stream, then its async spans,
//!   with `stream_id` and `thread_name` columns first.
//! - `log_stats`: log counts per minute, process, level and target.
//! - `hex_to_int64(text)`: up to 16 hex digits as the bits of a signed 64-bit integer (how
//!   Micromegas' integer span ids are spelled in Tarn's hex `span_id` columns).
//! - `scope_hash(name, filename, target, line)`: Micromegas' scope hash (an xxHash32 chain).
//!
//! The views are built over `spans`, so they follow what the gateway wrote: native thread
//! span `span_id`s are the begin event's position in its stream plus one, and native async
//! span ids have their top bit set (see the native normalizer). Upstream's ids, depths
//! (thread spans count from 1 under the root) and nanosecond timestamps are restored here.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt32Type};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, ScalarUDF, TableProviderFilterPushDown, TableType,
    Volatility, create_udf,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::{SessionContext, col};
use futures::StreamExt;
use twox_hash::XxHash32;

use crate::schema::TableKind;

/// Micromegas' scope hash of a span description.
pub fn scope_hash(name: &str, filename: &str, target: &str, line: u32) -> u32 {
    let mut hash = XxHash32::oneshot(0, name.as_bytes());
    hash = XxHash32::oneshot(hash, filename.as_bytes());
    hash = XxHash32::oneshot(hash, target.as_bytes());
    XxHash32::oneshot(hash, &line.to_le_bytes())
}

/// Parses up to 16 hex digits as the bits of an `i64`; `None` for anything else.
pub fn hex_to_int64(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16)
        .ok()
        .map(|value| i64::from_ne_bytes(value.to_ne_bytes()))
}

fn hex_to_int64_udf() -> ScalarUDF {
    create_udf(
        "hex_to_int64",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let text = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let mut out = Int64Builder::with_capacity(text.len());
            for value in text.iter() {
                out.append_option(value.and_then(hex_to_int64));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

fn scope_hash_udf() -> ScalarUDF {
    create_udf(
        "scope_hash",
        vec![
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
            DataType::UInt32,
        ],
        DataType::UInt32,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let text = |index: usize| arrow::compute::cast(&arrays[index], &DataType::Utf8);
            let (names, filenames, targets) = (text(0)?, text(1)?, text(2)?);
            let lines = arrow::compute::cast(&arrays[3], &DataType::UInt32)?;
            let (names, filenames, targets) = (
                names.as_string::<i32>(),
                filenames.as_string::<i32>(),
                targets.as_string::<i32>(),
            );
            let lines = lines.as_primitive::<UInt32Type>();
            let mut out = UInt32Builder::with_capacity(names.len());
            for row in 0..names.len() {
                let value = |array: &arrow::array::StringArray| {
                    if array.is_valid(row) {
                        array.value(row).to_owned()
                    } else {
                        String::new()
                    }
                };
                let line = if lines.is_valid(row) {
                    lines.value(row)
                } else {
                    0
                };
                out.append_value(scope_hash(
                    &value(names),
                    &value(filenames),
                    &value(targets),
                    line,
                ));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

fn nanos() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
}

static THREAD_SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("parent", DataType::Int64, true),
        Field::new("depth", DataType::UInt32, true),
        Field::new("hash", DataType::UInt32, true),
        Field::new("begin", nanos(), true),
        Field::new("end", nanos(), true),
        Field::new("duration", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("target", DataType::Utf8, true),
        Field::new("filename", DataType::Utf8, true),
        Field::new("line", DataType::UInt32, true),
    ]))
});

static ASYNC_EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::Utf8, true),
        Field::new("block_id", DataType::Utf8, true),
        Field::new("time", nanos(), true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("span_id", DataType::Int64, true),
        Field::new("parent_span_id", DataType::Int64, true),
        Field::new("depth", DataType::UInt32, true),
        Field::new("hash", DataType::UInt32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("filename", DataType::Utf8, true),
        Field::new("target", DataType::Utf8, true),
        Field::new("line", DataType::UInt32, true),
    ]))
});

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Native span columns shared by both span views (`s` in their SQL).
const NATIVE_SPAN_COLUMNS: &str = "span_id, parent_span_id, depth, name, stream_id, \
    start_time_unix_nano AS b, end_time_unix_nano AS e, duration_ns, \
    COALESCE(attr_str(properties, 'code.namespace'), '') AS target, \
    COALESCE(attr_str(properties, 'code.filepath'), '') AS filename, \
    arrow_cast(COALESCE(attr_int(properties, 'code.lineno'), 0), 'UInt32') AS line";

const NS: &str = "'Timestamp(Nanosecond, Some(\"+00:00\"))'";

/// The native spans matching `filter`: thread spans (ids below 2^63) or async spans (ids
/// with the top bit set), as a `FROM ... WHERE ...` clause.
fn native_spans(filter: &str, asynchronous: bool) -> String {
    let ids = if asynchronous { ">=" } else { "<" };
    format!(
        "FROM spans WHERE {filter} AND trace_id IS NULL AND depth IS NOT NULL \
         AND span_id {ids} '8000000000000000'"
    )
}

/// Clears the top bit Tarn sets on async span ids.
const CLEAR_TOP_BIT: &str = "& 9223372036854775807";

/// The thread spans matching `filter`, with a root row per stream: `stream_id`,
/// `thread_name`, then `thread_spans`' columns.
fn thread_rows_sql(filter: &str) -> String {
    let from = native_spans(filter, false);
    format!(
        "WITH s AS (SELECT {NATIVE_SPAN_COLUMNS}, {THREAD_NAME} AS thread {from}) \
        SELECT stream_id, thread AS thread_name, hex_to_int64(span_id) - 1 AS id, \
          COALESCE(hex_to_int64(parent_span_id) - 1, -1) AS parent, \
          arrow_cast(depth + 1, 'UInt32') AS depth, \
          scope_hash(name, filename, target, line) AS hash, \
          arrow_cast(b, {NS}) AS \"begin\", arrow_cast(e, {NS}) AS \"end\", \
          duration_ns AS duration, name, target, filename, line FROM s \
        UNION ALL \
        SELECT stream_id, first_value(thread), -1, 0, arrow_cast(0, 'UInt32'), \
          scope_hash(first_value(thread), '', '', arrow_cast(0, 'UInt32')), \
          arrow_cast(min(b), {NS}), arrow_cast(max(e), {NS}), max(e) - min(b), \
          first_value(thread), '', '', arrow_cast(0, 'UInt32') \
        FROM s GROUP BY stream_id"
    )
}

fn thread_spans_sql(stream_id: &str) -> String {
    let rows = thread_rows_sql(&format!("stream_id = {}", quote(stream_id)));
    format!(
        "SELECT id, parent, depth, hash, \"begin\", \"end\", duration, name, target, filename, \
          line FROM ({rows}) ORDER BY \"begin\", depth"
    )
}

fn async_events_sql(process_id: &str) -> String {
    let from = native_spans(&format!("process_id = {}", quote(process_id)), true);
    format!(
        "WITH s AS (SELECT {NATIVE_SPAN_COLUMNS} {from}), \
        ev AS ( \
          SELECT stream_id, b AS t, 'begin' AS event_type, span_id, parent_span_id, depth, \
            name, filename, target, line FROM s \
          UNION ALL \
          SELECT stream_id, e AS t, 'end' AS event_type, span_id, parent_span_id, depth, \
            name, filename, target, line FROM s) \
        SELECT stream_id, arrow_cast(NULL, 'Utf8') AS block_id, arrow_cast(t, {NS}) AS time, \
          event_type, hex_to_int64(span_id) {CLEAR_TOP_BIT} AS span_id, \
          COALESCE(hex_to_int64(parent_span_id) {CLEAR_TOP_BIT}, 0) AS parent_span_id, \
          arrow_cast(depth, 'UInt32') AS depth, \
          scope_hash(name, filename, target, line) AS hash, name, filename, target, line \
        FROM ev ORDER BY time, event_type"
    )
}

static PROCESS_SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("stream_id", DataType::Utf8, true),
        Field::new("thread_name", DataType::Utf8, true),
    ];
    fields.extend(THREAD_SPANS.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
});

/// The thread expression of a native span row: `name-id`, the id, or the stream.
const THREAD_NAME: &str = "COALESCE(attr_str(properties, 'thread.name') || '-' ||     attr_str(properties, 'thread.id'), attr_str(properties, 'thread.id'), stream_id)";

/// `process_spans(process_id, 'thread' | 'async' | 'both')`: every thread's call tree (each
/// with its root row, as `thread_spans` has it), stream by stream, then the process's
/// async spans by begin time (`stream_id` empty, `thread_name` 'async', depth as recorded).
fn process_spans_sql(process_id: &str, threads: bool, asyncs: bool) -> String {
    let process = format!("process_id = {}", quote(process_id));
    let thread_rows = format!("SELECT *, 0 AS lane FROM ({})", thread_rows_sql(&process));
    let async_from = native_spans(&process, true);
    let async_rows = format!(
        "SELECT '' AS stream_id, 'async' AS thread_name, \
          hex_to_int64(span_id) {CLEAR_TOP_BIT} AS id, \
          COALESCE(hex_to_int64(parent_span_id) {CLEAR_TOP_BIT}, 0) AS parent, \
          arrow_cast(depth, 'UInt32') AS depth, \
          scope_hash(name, filename, target, line) AS hash, \
          arrow_cast(b, {NS}) AS \"begin\", arrow_cast(e, {NS}) AS \"end\", \
          duration_ns AS duration, name, target, filename, line, 1 AS lane \
        FROM (SELECT {NATIVE_SPAN_COLUMNS} {async_from})"
    );
    let parts: Vec<String> = [(threads, thread_rows), (asyncs, async_rows)]
        .into_iter()
        .filter_map(|(wanted, sql)| wanted.then(|| format!("SELECT * FROM ({sql})")))
        .collect();
    format!(
        "SELECT stream_id, thread_name, id, parent, depth, hash, \"begin\", \"end\", duration, \
          name, target, filename, line FROM ({}) \
        ORDER BY lane, stream_id, \"begin\", depth",
        parts.join(" UNION ALL ")
    )
}

/// `process_spans(process_id, span_types)`.
#[derive(Debug)]
struct ProcessSpans;

impl TableFunctionImpl for ProcessSpans {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let [process, types] = args else {
            return plan_err!("process_spans(process_id, span_types) takes two arguments");
        };
        let process = literal_text(process, "process id")?;
        let types = literal_text(types, "span types")?;
        let (threads, asyncs) = match types.as_str() {
            "thread" => (true, false),
            "async" => (false, true),
            "both" => (true, true),
            _ => return plan_err!("span_types must be 'thread', 'async', or 'both'"),
        };
        let metadata = std::collections::HashMap::from([
            ("tarn.view".to_owned(), format!("process_spans/{types}")),
            ("tarn.instance".to_owned(), process.clone()),
        ]);
        let schema = Arc::new(Schema::new_with_metadata(
            PROCESS_SPANS.fields().clone(),
            metadata,
        ));
        Ok(Arc::new(InstanceView {
            sql: process_spans_sql(&process, threads, asyncs),
            schema,
        }))
    }
}

/// One instance of a view: SQL over the session's tables, planned when scanned (so the
/// session's time range and fresh rows apply), with a fixed schema.
#[derive(Debug)]
struct InstanceView {
    sql: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for InstanceView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Applied inside the plan (and pushed to the scans from there), checked again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("view_instance needs a full DataFusion session");
        };
        let plan = session.create_logical_plan(&self.sql).await?;
        // Every column cast to its declared type, so the plan matches the schema exactly.
        let columns: Vec<Expr> = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                datafusion::logical_expr::cast(col(field.name()), field.data_type().clone())
                    .alias(field.name())
            })
            .collect();
        let mut builder = LogicalPlanBuilder::from(plan).project(columns)?;
        for filter in filters {
            builder = builder.filter(filter.clone())?;
        }
        if let Some(projection) = projection {
            let columns: Vec<Expr> = projection
                .iter()
                .map(|&index| col(self.schema.field(index).name()))
                .collect();
            builder = builder.project(columns)?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        let plan = session.create_physical_plan(&builder.build()?).await?;
        let schema = Arc::new(Schema::new_with_metadata(
            plan.schema().fields().clone(),
            self.schema.metadata().clone(),
        ));
        Ok(Arc::new(WithMetadata::new(plan, schema)))
    }
}

/// Passes its input through under a schema that adds the instance's metadata (the logical
/// plan carries it, and DataFusion checks the physical schema against it).
#[derive(Debug)]
struct WithMetadata {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl WithMetadata {
    fn new(input: Arc<dyn ExecutionPlan>, schema: SchemaRef) -> WithMetadata {
        let properties = input
            .properties()
            .as_ref()
            .clone()
            .with_eq_properties(EquivalenceProperties::new(Arc::clone(&schema)));
        WithMetadata {
            input,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for WithMetadata {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "ViewInstanceExec")
    }
}

impl ExecutionPlan for WithMetadata {
    fn name(&self) -> &'static str {
        "ViewInstanceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return plan_err!("ViewInstanceExec has one child");
        }
        Ok(Arc::new(WithMetadata::new(
            children.swap_remove(0),
            Arc::clone(&self.schema),
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.schema);
        let input = self.input.execute(partition, context)?;
        let output = Arc::clone(&schema);
        let batches = input.map(move |batch| {
            batch.and_then(|batch| {
                batch
                    .with_schema(Arc::clone(&output))
                    .map_err(DataFusionError::from)
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// `view_instance(view, id)`.
#[derive(Debug)]
struct ViewInstance;

fn literal_text(expr: &Expr, what: &str) -> Result<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(text)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(text)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(text)), _) => Ok(text.clone()),
        other => plan_err!("the {what} must be a string literal, not {other}"),
    }
}

impl TableFunctionImpl for ViewInstance {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let [view, id] = args else {
            return plan_err!("view_instance(view, id) takes two arguments");
        };
        let view = literal_text(view, "view name")?;
        let id = literal_text(id, "instance id")?;
        let global = id == "global";
        let (sql, schema) = match view.as_str() {
            "thread_spans" | "async_events" if global => {
                return plan_err!("view_instance: {view} has no global instance; give an id");
            }
            "thread_spans" => (thread_spans_sql(&id), Arc::clone(&THREAD_SPANS)),
            "async_events" => (async_events_sql(&id), Arc::clone(&ASYNC_EVENTS)),
            "log_entries" | "measures" => {
                let kind = if view == "log_entries" {
                    TableKind::LogEntries
                } else {
                    TableKind::Measures
                };
                let filter = if global {
                    String::new()
                } else {
                    format!(" WHERE process_id = {}", quote(&id))
                };
                (format!("SELECT * FROM {view}{filter}"), kind.schema())
            }
            other => {
                return plan_err!(
                    "view_instance: unknown view {other:?} (thread_spans, async_events, \
                     log_entries, measures)"
                );
            }
        };
        // DataFusion names every table function scan `view_instance()` and compares scans
        // without their source, so two instances with the same projection would pass for
        // one plan (and a query comparing them would read one twice). The instance in the
        // schema's metadata tells them apart.
        let metadata = std::collections::HashMap::from([
            ("tarn.view".to_owned(), view),
            ("tarn.instance".to_owned(), id),
        ]);
        let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
        Ok(Arc::new(InstanceView { sql, schema }))
    }
}

const LOG_STATS_SQL: &str = "SELECT date_bin(INTERVAL '1 minute', time) AS time_bin, process_id, \
    level, target, count(*) AS count FROM log_entries GROUP BY 1, 2, 3, 4";

/// The views of this module, listed with the tables of every session.
pub const VIEWS: [&str; 1] = ["log_stats"];

/// Registers the functions of this module in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(hex_to_int64_udf());
    ctx.register_udf(scope_hash_udf());
    ctx.register_udtf("view_instance", Arc::new(ViewInstance));
    ctx.register_udtf("process_spans", Arc::new(ProcessSpans));
}

/// The view `name` (one of [`VIEWS`]) planned in `ctx`, or `None` for another name.
pub async fn view(ctx: &SessionContext, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
    match name {
        "log_stats" => Ok(Some(ctx.sql(LOG_STATS_SQL).await?.into_view())),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_keep_all_64_bits() {
        assert_eq!(hex_to_int64("0000000000000001"), Some(1));
        assert_eq!(hex_to_int64("8000000000003039"), Some(i64::MIN + 12345));
        assert_eq!(hex_to_int64("ffffffffffffffff"), Some(-1));
        assert_eq!(hex_to_int64("10000000000000000"), None);
        assert_eq!(hex_to_int64("xyz"), None);
        assert_eq!(hex_to_int64(""), None);
    }

    #[test]
    fn scope_hash_is_a_chain_over_the_description() {
        let hash = scope_hash("span", "src/main.rs", "app", 42);
        assert_eq!(hash, scope_hash("span", "src/main.rs", "app", 42));
        assert_ne!(hash, scope_hash("span", "src/main.rs", "app", 43));
        assert_ne!(hash, scope_hash("spa", "nsrc/main.rs", "app", 42));
        // The first link is xxHash32 of the name with seed 0.
        let first = XxHash32::oneshot(0, b"span");
        let expected = XxHash32::oneshot(
            XxHash32::oneshot(XxHash32::oneshot(first, b"src/main.rs"), b"app"),
            &42u32.to_le_bytes(),
        );
        assert_eq!(hash, expected);
    }
}
