//! SQL over the lake, with DataFusion: read-only statements only.
//!
//! Each table is scanned natively (DESIGN.md decision 11): the Delta log supplies the file
//! list, the `date` partition values and per-file statistics; DataFusion's own Parquet scan
//! reads the files with filter pushdown, the page index and bloom filters. Rows that are
//! acknowledged but not committed yet (fresh) are united with the scan, so a query sees
//! every acknowledged row exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionState;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, project_schema};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use deltalake::DeltaTable;
use futures::StreamExt;
use parking_lot::RwLock;

use crate::bloom::BloomCache;
use crate::error::{Error, Result};
use crate::schema::{DATE_COLUMN, TableKind};
use crate::table::LakeTable;

/// Statements a query may run: no DDL (`CREATE EXTERNAL TABLE` included), no DML
/// (`COPY` included), no `SET`, so SQL can never touch a file the lake does not own.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Turns a DataFusion error into a lakehouse error that says whose fault it is.
pub fn from_datafusion(error: DataFusionError) -> Error {
    let message = error.to_string();
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_) => Error::QueryLimit(message),
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => Error::Storage(message),
        _ => Error::Query(message),
    }
}

/// The object-store URL a table's files are registered under in a session.
fn store_url(kind: TableKind) -> Result<ObjectStoreUrl> {
    ObjectStoreUrl::parse(format!("tarn://{}", kind.name().replace('_', "-")))
        .map_err(from_datafusion)
}

/// Parses a Delta statistics value of a column into an exact scalar, or `None` when the
/// value is not known exactly (timestamps truncated to milliseconds by other writers).
fn exact_scalar(data_type: &DataType, value: &serde_json::Value) -> Option<ScalarValue> {
    match data_type {
        DataType::Int64 => value.as_i64().map(|v| ScalarValue::Int64(Some(v))),
        DataType::Int32 => value
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .map(|v| ScalarValue::Int32(Some(v))),
        DataType::Float64 => value.as_f64().map(|v| ScalarValue::Float64(Some(v))),
        DataType::Utf8 => value
            .as_str()
            .map(|v| ScalarValue::Utf8(Some(v.to_owned()))),
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let text = value.as_str()?;
            // Only microsecond-precise values are exact (Tarn writes them so).
            let fraction = text
                .rsplit_once('.')
                .map(|(_, f)| f.trim_end_matches('Z'))?;
            if fraction.len() != 6 {
                return None;
            }
            let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
            Some(ScalarValue::TimestampMicrosecond(
                Some(time.timestamp_micros()),
                zone.clone(),
            ))
        }
        _ => None,
    }
}

/// Per-file statistics from the Delta `add` action's stats JSON, for the file's columns.
fn file_statistics(file_schema: &Schema, stats: Option<&str>) -> Statistics {
    let mut statistics = Statistics::new_unknown(file_schema);
    let Some(parsed) = stats.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return statistics;
    };
    if let Some(rows) = parsed.get("numRecords").and_then(serde_json::Value::as_u64) {
        statistics.num_rows = Precision::Exact(usize::try_from(rows).unwrap_or(usize::MAX));
    }
    let mins = parsed.get("minValues");
    let maxs = parsed.get("maxValues");
    let nulls = parsed.get("nullCount");
    for (field, column) in file_schema
        .fields()
        .iter()
        .zip(statistics.column_statistics.iter_mut())
    {
        let name = field.name().as_str();
        let min = mins
            .and_then(|m| m.get(name))
            .and_then(|v| exact_scalar(field.data_type(), v));
        let max = maxs
            .and_then(|m| m.get(name))
            .and_then(|v| exact_scalar(field.data_type(), v));
        let null_count = nulls
            .and_then(|n| n.get(name))
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        let mut stats = ColumnStatistics::new_unknown();
        if let (Some(min), Some(max)) = (min, max) {
            stats = stats
                .with_min_value(Precision::Exact(min))
                .with_max_value(Precision::Exact(max));
        }
        if let Some(null_count) = null_count {
            stats = stats.with_null_count(Precision::Exact(null_count));
        }
        *column = stats;
    }
    statistics
}

/// Days since the epoch of a `YYYY-MM-DD` partition value.
fn parse_date(text: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// A time range (Unix microseconds, both ends inclusive) a query is restricted to, as
/// Micromegas clients send it in the `query_range_begin` / `query_range_end` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub begin_micros: i64,
    pub end_micros: i64,
}

impl TimeRange {
    /// Parses RFC 3339 times (`2024-01-01T00:00:00Z`, `...+00:00`, with or without
    /// fractions).
    pub fn parse(begin: &str, end: &str) -> Result<TimeRange> {
        TimeRange::parse_open(Some(begin), Some(end))
    }

    /// Like [`TimeRange::parse`], where a missing end (or begin) leaves that side open.
    pub fn parse_open(begin: Option<&str>, end: Option<&str>) -> Result<TimeRange> {
        let parse = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text.trim())
                .map(|time| time.timestamp_micros())
                .map_err(|e| Error::query(format!("bad time {text:?} (RFC 3339 expected): {e}")))
        };
        let range = TimeRange {
            begin_micros: begin.map(parse).transpose()?.unwrap_or(i64::MIN),
            end_micros: end.map(parse).transpose()?.unwrap_or(i64::MAX),
        };
        if range.begin_micros > range.end_micros {
            return Err(Error::query("time range begins after it ends"));
        }
        Ok(range)
    }

    /// The filter `begin <= column <= end` on a timestamp column.
    fn filter(&self, column: &str) -> Expr {
        let utc: Option<Arc<str>> = Some("UTC".into());
        let at = |micros| {
            datafusion::logical_expr::lit(ScalarValue::TimestampMicrosecond(
                Some(micros),
                utc.clone(),
            ))
        };
        datafusion::logical_expr::col(column)
            .gt_eq(at(self.begin_micros))
            .and(datafusion::logical_expr::col(column).lt_eq(at(self.end_micros)))
    }
}

/// One canonical table as DataFusion sees it: committed files plus fresh rows.
#[derive(Debug)]
pub struct LakeTableProvider {
    kind: TableKind,
    range: Option<TimeRange>,
    schema: SchemaRef,
    file_schema: SchemaRef,
    store_url: ObjectStoreUrl,
    files: Arc<Vec<PartitionedFile>>,
    fresh: Vec<RecordBatch>,
    blooms: Arc<BloomCache>,
}

/// The columns stored in the Parquet files: all but the `date` partition column.
fn file_schema(kind: TableKind) -> SchemaRef {
    let fields: Vec<Field> = kind
        .schema()
        .fields()
        .iter()
        .filter(|field| field.name() != DATE_COLUMN)
        .map(|field| field.as_ref().clone())
        .collect();
    Arc::new(Schema::new(fields))
}

/// The files of a snapshot with their `date` partition value and statistics.
fn snapshot_files(kind: TableKind, table: &DeltaTable) -> Vec<PartitionedFile> {
    let file_schema = file_schema(kind);
    let mut files = Vec::new();
    if let Ok(snapshot) = table.snapshot() {
        for file in snapshot.log_data().iter() {
            let date = file
                .partition_values_map()
                .get(DATE_COLUMN)
                .cloned()
                .flatten()
                .and_then(|text| parse_date(&text));
            let size = u64::try_from(file.size()).unwrap_or(0);
            let statistics = file_statistics(&file_schema, file.stats().as_deref());
            let partitioned = PartitionedFile::new(file.path().into_owned(), size)
                .with_partition_values(vec![ScalarValue::Date32(date)])
                .with_statistics(Arc::new(statistics));
            files.push(partitioned);
        }
    }
    files
}

impl LakeTableProvider {
    /// A provider over `table`'s snapshot and `fresh` rows, restricted to `range` of the
    /// table's event time when given.
    pub fn new(
        kind: TableKind,
        files: Arc<Vec<PartitionedFile>>,
        fresh: Vec<RecordBatch>,
        range: Option<TimeRange>,
        blooms: Arc<BloomCache>,
    ) -> Result<LakeTableProvider> {
        Ok(LakeTableProvider {
            kind,
            range,
            schema: kind.schema(),
            file_schema: file_schema(kind),
            store_url: store_url(kind)?,
            files,
            fresh,
            blooms,
        })
    }

    fn table_schema(&self) -> TableSchema {
        let date: Arc<Field> = Arc::new(Field::new(DATE_COLUMN, DataType::Date32, true));
        TableSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(vec![date])
            .build()
    }

    /// The files whose statistics may hold rows matching `filters`.
    fn prune(&self, state: &dyn Session, filters: &[Expr]) -> Vec<PartitionedFile> {
        let files = self.files.as_ref().clone();
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return files;
        };
        let Ok(df_schema) = DFSchema::try_from(Arc::clone(&self.schema)) else {
            return files;
        };
        let Ok(physical) = state.create_physical_expr(predicate, &df_schema) else {
            return files;
        };
        let Ok(pruning) = PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&self.schema))
            .try_build(physical)
        else {
            return files;
        };
        let statistics = datafusion::common::pruning::PrunableStatistics::new(
            files
                .iter()
                .map(|file| {
                    file.statistics
                        .clone()
                        .unwrap_or_else(|| Arc::new(Statistics::new_unknown(&self.schema)))
                })
                .collect(),
            Arc::clone(&self.schema),
        );
        match pruning.prune(&statistics) {
            Ok(keep) => files
                .into_iter()
                .zip(keep)
                .filter_map(|(file, keep)| keep.then_some(file))
                .collect(),
            Err(_) => files,
        }
    }
}

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let range_filter = self
            .range
            .map(|range| range.filter(self.kind.time_column()));
        let mut all_filters = filters.to_vec();
        all_filters.extend(range_filter.clone());
        let mut files = self.prune(state, &all_filters);
        // A lookup by id reads only the row groups whose bloom filter may hold it.
        for column in self.kind.bloom_filter_columns() {
            if files.is_empty() {
                break;
            }
            if let Some(values) = crate::bloom::wanted_values(&all_filters, column) {
                let store = state.runtime_env().object_store(&self.store_url)?;
                files = self.blooms.select(store, files, column, &values).await;
            }
        }
        // The range filters rows too, so a limit applies only after it.
        let limit = if range_filter.is_some() { None } else { limit };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let format = ParquetFormat::new().with_options(state.default_table_options().parquet);
            let source = format.file_source(self.table_schema());
            let groups = FileGroup::new(files).split_files(state.config().target_partitions());
            let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(format.create_physical_plan(state, config).await?);
        }
        if !self.fresh.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&self.fresh),
                Arc::clone(&self.schema),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let union = UnionExec::try_new(inputs)?;
        let Some(range_filter) = range_filter else {
            return Ok(union);
        };
        let df_schema = DFSchema::try_from(union.schema())?;
        if let Ok(predicate) = state.create_physical_expr(range_filter, &df_schema) {
            return Ok(Arc::new(FilterExec::try_new(predicate, union)?));
        }
        // The time column is projected away: scan it too, filter, then drop it.
        let time_index = self.schema.index_of(self.kind.time_column())?;
        let mut widened: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let wanted = widened.len();
        widened.push(time_index);
        let inner = self.scan(state, Some(&widened), filters, None).await?;
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = inner
            .schema()
            .fields()
            .iter()
            .take(wanted)
            .enumerate()
            .map(|(index, field)| {
                (
                    Arc::new(Column::new(field.name(), index)) as Arc<dyn PhysicalExpr>,
                    field.name().clone(),
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, inner)?))
    }
}

/// Budgets and restrictions of one query.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Rows outside this range of each table's event time are not read.
    pub range: Option<TimeRange>,
    /// Memory the query's operators may hold (sorts and joins spill or fail past it).
    pub memory_limit: Option<usize>,
    /// Wall-clock time the query may run, from planning to its last batch.
    pub timeout: Option<Duration>,
    /// Rows the query may return; past it the stream ends with an error.
    pub max_rows: Option<usize>,
}

/// Memory for cached bloom filters (each sized by the ids of its row group).
const BLOOM_CACHE_BYTES: usize = 256 << 20;

/// Plans and runs SQL against every table: its latest commits and its fresh rows.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
    files: Arc<FileCache>,
    /// Bloom filters of the id columns, read once per file.
    blooms: Arc<BloomCache>,
    /// Shared by every session: its cache of Parquet footers and page indexes spares each
    /// statement re-reading them (Delta files never change once written).
    runtime: Arc<RuntimeEnv>,
}

/// Each table's file list (with parsed statistics) for its latest Delta version, so a
/// statement does not re-read the statistics of every file.
#[derive(Debug, Default)]
struct FileCache {
    entries: Mutex<HashMap<TableKind, CachedFiles>>,
}

/// A table's files at one Delta version.
#[derive(Debug)]
struct CachedFiles {
    version: Option<deltalake::kernel::Version>,
    files: Arc<Vec<PartitionedFile>>,
}

impl FileCache {
    /// The files of `table`'s current version. A version not seen before also starts
    /// reading the bloom filters of its files into `blooms`, in the background.
    fn files(
        &self,
        kind: TableKind,
        table: &DeltaTable,
        blooms: &Arc<BloomCache>,
    ) -> Arc<Vec<PartitionedFile>> {
        let version = table.version();
        if let Some(cached) = self.lock().get(&kind)
            && cached.version == version
        {
            return Arc::clone(&cached.files);
        }
        let files = Arc::new(snapshot_files(kind, table));
        if let Some(column) = kind.bloom_filter_columns().first()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (blooms, listed, store) =
                (Arc::clone(blooms), Arc::clone(&files), table.object_store());
            runtime.spawn(async move { blooms.warm(store, listed, column).await });
        }
        let cached = CachedFiles {
            version,
            files: Arc::clone(&files),
        };
        self.lock().insert(kind, cached);
        files
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TableKind, CachedFiles>> {
        // The map holds no invariant a panicking holder could break.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The default schema of a query session: each table's provider is built when a statement
/// names it, so a statement pays only for the tables it reads.
#[derive(Debug)]
struct LakeSchema {
    engine: QueryEngine,
    range: Option<TimeRange>,
    state: Weak<RwLock<SessionState>>,
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.engine
            .tables
            .keys()
            .map(|kind| kind.name().to_owned())
            .chain(
                crate::micromegas::VIEWS
                    .iter()
                    .map(|name| (*name).to_owned()),
            )
            .collect()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if let Some(kind) = TableKind::from_name(name)
            && let Some(table) = self.engine.tables.get(&kind)
        {
            let view = table.view().await.map_err(to_datafusion)?;
            let files = self
                .engine
                .files
                .files(kind, &view.table, &self.engine.blooms);
            let provider = LakeTableProvider::new(
                kind,
                files,
                view.fresh,
                self.range,
                Arc::clone(&self.engine.blooms),
            )
            .map_err(to_datafusion)?;
            return Ok(Some(Arc::new(provider)));
        }
        if crate::micromegas::VIEWS.contains(&name) {
            let Some(state) = self.state.upgrade() else {
                return Ok(None);
            };
            let ctx = SessionContext::new_with_state(state.read().clone());
            return crate::micromegas::view(&ctx, name).await;
        }
        Ok(None)
    }

    async fn table_type(&self, name: &str) -> datafusion::error::Result<Option<TableType>> {
        Ok(if TableKind::from_name(name).is_some() {
            Some(TableType::Base)
        } else if crate::micromegas::VIEWS.contains(&name) {
            Some(TableType::View)
        } else {
            None
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        TableKind::from_name(name).is_some_and(|kind| self.engine.tables.contains_key(&kind))
            || crate::micromegas::VIEWS.contains(&name)
    }
}

fn to_datafusion(error: Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

impl QueryEngine {
    pub fn new(tables: BTreeMap<TableKind, Arc<LakeTable>>) -> QueryEngine {
        let runtime = Arc::new(RuntimeEnv::default());
        // Every session reads each table's files through the table's store, registered
        // once here in the shared runtime.
        for (kind, table) in &tables {
            let url = store_url(*kind).expect("tarn://<table name> is a valid URL");
            runtime.register_object_store(url.as_ref(), table.object_store());
        }
        QueryEngine {
            tables,
            files: Arc::default(),
            blooms: Arc::new(BloomCache::new(BLOOM_CACHE_BYTES)),
            runtime,
        }
    }

    /// A session over every table, each read at its current state when a statement names
    /// it.
    pub async fn context(&self, range: Option<TimeRange>) -> Result<SessionContext> {
        // PostgreSQL's dialect: the generic one refuses `SELECT begin, end ...`, which
        // Micromegas' documented thread_spans queries use.
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        {
            let parquet = &mut config.options_mut().execution.parquet;
            parquet.pushdown_filters = true;
            parquet.reorder_filters = true;
            parquet.enable_page_index = true;
            parquet.bloom_filter_on_read = true;
        }
        let ctx = SessionContext::new_with_config_rt(config, Arc::clone(&self.runtime));
        // Table functions that generate rows from nothing are a way to exhaust memory.
        ctx.deregister_udtf("generate_series");
        ctx.deregister_udtf("range");
        crate::udf::register(&ctx);
        crate::micromegas::register(&ctx);
        crate::histogram::register(&ctx);
        crate::percentile::register(&ctx);
        let schema = LakeSchema {
            engine: self.clone(),
            range,
            state: ctx.state_weak_ref(),
        };
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Query("the default catalog is missing".to_owned()))?;
        catalog
            .register_schema("public", Arc::new(schema))
            .map_err(from_datafusion)?;
        Ok(ctx)
    }

    /// Plans `sql` (checking it is read-only) without running it.
    pub async fn plan(&self, sql: &str, range: Option<TimeRange>) -> Result<DataFrame> {
        let ctx = self.context(range).await?;
        ctx.sql_with_options(sql, read_only())
            .await
            .map_err(from_datafusion)
    }

    /// The schema `sql` returns.
    pub async fn schema(&self, sql: &str, range: Option<TimeRange>) -> Result<SchemaRef> {
        let frame = self.plan(sql, range).await?;
        Ok(Arc::clone(frame.schema().inner()))
    }

    /// Runs `sql` within `options` and streams its result.
    pub async fn execute(
        &self,
        sql: &str,
        options: &QueryOptions,
    ) -> Result<SendableRecordBatchStream> {
        let started = Instant::now();
        let frame = self.plan(sql, options.range).await?;
        let plan = frame
            .create_physical_plan()
            .await
            .map_err(from_datafusion)?;
        let mut task = frame.task_ctx();
        if let Some(limit) = options.memory_limit {
            let runtime = RuntimeEnvBuilder::from_runtime_env(task.runtime_env().as_ref())
                .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
                .build_arc()
                .map_err(from_datafusion)?;
            task = task.with_runtime(runtime);
        }
        let stream = execute_stream(plan, Arc::new(task)).map_err(from_datafusion)?;
        let deadline = options.timeout.map(|limit| (started + limit, limit));
        Ok(limit_stream(stream, options.max_rows, deadline))
    }
}

/// Ends a stream with an error once it passes `max_rows` or the deadline (with the
/// limit it comes from, for the message).
fn limit_stream(
    stream: SendableRecordBatchStream,
    max_rows: Option<usize>,
    deadline: Option<(Instant, Duration)>,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let mut rows = 0_usize;
    let limited = futures::stream::unfold((stream, false), move |(mut stream, done)| async move {
        if done {
            return None;
        }
        let next = match deadline {
            Some((deadline, limit)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let error = DataFusionError::ResourcesExhausted(format!(
                            "the query ran past its time limit of {limit:?}"
                        ));
                        return Some((Err(error), (stream, true)));
                    }
                }
            }
            None => stream.next().await,
        };
        next.map(|item| (item, (stream, false)))
    })
    .map(move |item| {
        let batch = item?;
        rows = rows.saturating_add(batch.num_rows());
        if let Some(max) = max_rows
            && rows > max
        {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query returned more than {max} rows; add a LIMIT or narrow it"
            )));
        }
        Ok(batch)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, limited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_statistics_prune() {
        let micros = exact_scalar(
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            &serde_json::json!("2026-01-01T00:00:00.123456Z"),
        );
        assert_eq!(
            micros,
            Some(ScalarValue::TimestampMicrosecond(
                Some(1_767_225_600_123_456),
                Some("UTC".into())
            ))
        );
        // Another writer's millisecond-truncated maximum is not trusted.
        let millis = exact_scalar(
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            &serde_json::json!("2026-01-01T00:00:00.123Z"),
        );
        assert_eq!(millis, None);
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
    }

    #[test]
    fn statistics_follow_the_file_schema() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let stats = file_statistics(
            &schema,
            Some(
                r#"{"numRecords":3,"minValues":{"a":1,"s":"x"},"maxValues":{"a":9},"nullCount":{"a":0,"s":1}}"#,
            ),
        );
        assert_eq!(stats.num_rows, Precision::Exact(3));
        assert_eq!(
            stats.column_statistics[0].min_value,
            Precision::Exact(ScalarValue::Int64(Some(1)))
        );
        assert_eq!(
            stats.column_statistics[0].max_value,
            Precision::Exact(ScalarValue::Int64(Some(9)))
        );
        // Half a range is no range.
        assert_eq!(stats.column_statistics[1].min_value, Precision::Absent);
        assert_eq!(stats.column_statistics[1].null_count, Precision::Exact(1));
    }
}
