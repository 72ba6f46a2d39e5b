//! One canonical Delta table: creation, appends written as Parquet files we lay out
//! ourselves, and commits.
//!
//! Files are written by Tarn, not by delta-rs' writer, so their layout serves the queries
//! people run (reference/query-anchor.md): rows sorted by event time, 128K-row row groups,
//! page-level statistics and the page index on top-level columns, bloom filters on trace
//! and process ids, ZSTD.
//! The Delta `add` actions carry min/max statistics of the top-level primitive columns,
//! so readers skip files by time, duration or status without opening them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{self, SortColumn, SortOptions};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, TableProperty};
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::ByteArray;
use parquet::file::metadata::{ParquetMetaData, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use serde_json::{Map, Value, json};
use url::Url;

use crate::error::{Error, Result};
use crate::schema::{DATE_COLUMN, TableKind};

/// Rows per Parquet row group: small enough for statistics and bloom filters to prune,
/// large enough to keep per-group overhead low (reference/query-anchor.md, layout B/C).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The ZSTD level of every data file (see `base_writer_properties`).
pub const ZSTD_LEVEL: i32 = 1;

/// How often a table's published snapshot is refreshed from the log, so queries see what
/// other gateways commit.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The committed state queries read: a snapshot, and the highest WAL sequence of this
/// gateway it contains (0 when none).
#[derive(Debug, Clone)]
struct Published {
    table: DeltaTable,
    committed_seq: u64,
    refreshed: Instant,
}

/// Acknowledged rows not yet committed to Delta, in WAL sequence order.
#[derive(Debug, Default)]
struct Fresh {
    entries: VecDeque<(u64, RecordBatch)>,
    bytes: usize,
    oldest: Option<Instant>,
}

/// What a query reads of a table: the committed files and the fresh rows not in them.
#[derive(Debug, Clone)]
pub struct TableView {
    pub table: DeltaTable,
    pub fresh: Vec<RecordBatch>,
}

/// A canonical table: its Delta log, the rows acknowledged but not committed yet, and the
/// state queries read.
#[derive(Debug)]
pub struct LakeTable {
    kind: TableKind,
    url: Url,
    /// The Delta application id of this gateway's WAL, stamped on every commit of WAL rows.
    app_id: Option<String>,
    /// Serializes this process's commits.
    commit: tokio::sync::Mutex<DeltaTable>,
    published: std::sync::RwLock<Published>,
    fresh: std::sync::Mutex<Fresh>,
    /// Version of the last checkpoint maintenance wrote.
    last_checkpoint: std::sync::Mutex<Option<Option<u64>>>,
}

/// Delta protocol properties every table is created with. None of them raises the
/// protocol above reader 1 / writer 2, the versions every Spark Delta release reads.
fn table_properties() -> Vec<(TableProperty, &'static str)> {
    vec![
        (TableProperty::CheckpointInterval, "50"),
        (TableProperty::DataSkippingNumIndexedCols, "-1"),
    ]
}

/// Rows per data file: larger flushes are split.
const FILE_ROWS: usize = 1 << 20;

impl LakeTable {
    /// Opens the table at `url`, creating it when it does not exist yet. `app_id` names
    /// the WAL whose rows this process commits.
    pub async fn open_or_create(
        kind: TableKind,
        url: Url,
        storage_options: &HashMap<String, String>,
        app_id: Option<String>,
    ) -> Result<LakeTable> {
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| Error::Config(format!("bad file URL {url}")))?;
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::storage(format!("creating {}: {e}", path.display())))?;
        }
        let mut table = DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(storage_options.clone())
            .build()?;
        match table.load().await {
            Ok(()) => {}
            Err(deltalake::DeltaTableError::NotATable(_)) => {
                table = create(&table, kind).await?;
            }
            Err(error) => return Err(error.into()),
        }
        let committed_seq = committed_seq(&table, app_id.as_deref()).await?;
        Ok(LakeTable {
            kind,
            url,
            app_id,
            commit: tokio::sync::Mutex::new(table.clone()),
            published: std::sync::RwLock::new(Published {
                table,
                committed_seq,
                refreshed: Instant::now(),
            }),
            fresh: std::sync::Mutex::new(Fresh::default()),
            last_checkpoint: std::sync::Mutex::new(None),
        })
    }

    pub fn kind(&self) -> TableKind {
        self.kind
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object store the table's files live in.
    pub fn object_store(&self) -> deltalake::logstore::ObjectStoreRef {
        self.published().table.object_store()
    }

    fn published(&self) -> Published {
        match self.published.read() {
            Ok(published) => published.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, table: DeltaTable, committed_seq: u64) {
        let mut published = match self.published.write() {
            Ok(published) => published,
            Err(poisoned) => poisoned.into_inner(),
        };
        let newer = table.version() >= published.table.version();
        if newer {
            *published = Published {
                table,
                committed_seq: committed_seq.max(published.committed_seq),
                refreshed: Instant::now(),
            };
        }
    }

    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, Fresh> {
        match self.fresh.lock() {
            Ok(fresh) => fresh,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The handle commits go through; holding it keeps this process's other commits out.
    pub(crate) async fn lock_commit(&self) -> tokio::sync::MutexGuard<'_, DeltaTable> {
        self.commit.lock().await
    }

    /// Whether maintenance should checkpoint `version` (not checkpointed by it yet).
    pub(crate) fn needs_checkpoint(&self, version: Option<u64>) -> bool {
        match self.last_checkpoint.lock() {
            Ok(last) => *last != Some(version),
            Err(_) => true,
        }
    }

    pub(crate) fn checkpointed_at(&self, version: Option<u64>) {
        if let Ok(mut last) = self.last_checkpoint.lock() {
            *last = Some(version);
        }
    }

    /// Makes a state written by maintenance (same rows, other files) the one queries read.
    pub(crate) fn publish_maintained(&self, table: DeltaTable) {
        self.publish(table, 0);
    }

    /// The highest WAL sequence committed to this table.
    pub fn committed_seq(&self) -> u64 {
        self.published().committed_seq
    }

    /// Adds acknowledged rows (durable in the WAL at `seq`) to the fresh buffer, where
    /// queries see them at once. Rows already committed (a replay) are ignored.
    pub fn add_fresh(&self, seq: u64, batch: RecordBatch) {
        if seq <= self.committed_seq() {
            return;
        }
        let mut fresh = self.lock_fresh();
        fresh.bytes += batch.get_array_memory_size();
        fresh.oldest.get_or_insert_with(Instant::now);
        fresh.entries.push_back((seq, batch));
    }

    /// Bytes of fresh rows held in memory.
    pub fn fresh_bytes(&self) -> usize {
        self.lock_fresh().bytes
    }

    /// How long the oldest fresh row has waited.
    pub fn fresh_age(&self) -> Option<Duration> {
        self.lock_fresh().oldest.map(|oldest| oldest.elapsed())
    }

    /// What a query reads: committed files and fresh rows, never a row twice or not at all
    /// (fresh rows are read first, then the snapshot, and fresh rows the snapshot already
    /// holds are dropped).
    pub async fn view(&self) -> Result<TableView> {
        let fresh: Vec<(u64, RecordBatch)> = self.lock_fresh().entries.iter().cloned().collect();
        let mut published = self.published();
        if published.refreshed.elapsed() >= REFRESH_INTERVAL {
            self.refresh().await?;
            published = self.published();
        }
        let fresh = fresh
            .into_iter()
            .filter(|(seq, _)| *seq > published.committed_seq)
            .map(|(_, batch)| batch)
            .collect();
        Ok(TableView {
            table: published.table,
            fresh,
        })
    }

    /// Reloads the snapshot from the log (what other gateways committed).
    pub async fn refresh(&self) -> Result<()> {
        let mut table = self.published().table;
        let before = table.version();
        table.update_state().await?;
        let committed = if table.version() != before {
            committed_seq(&table, self.app_id.as_deref()).await?
        } else {
            0
        };
        self.publish(table, committed);
        Ok(())
    }

    /// The latest committed state (for maintenance and tests).
    pub async fn latest(&self) -> Result<DeltaTable> {
        self.refresh().await?;
        Ok(self.published().table)
    }

    /// Commits the fresh rows to Delta (one file per date, split every [`FILE_ROWS`]
    /// rows), stamped with the WAL application transaction, then drops them from memory.
    /// Returns the number of rows committed.
    pub async fn flush(&self) -> Result<usize> {
        let mut table = self.commit.lock().await;
        let entries: Vec<(u64, RecordBatch)> = self.lock_fresh().entries.iter().cloned().collect();
        let Some(last_seq) = entries.last().map(|(seq, _)| *seq) else {
            return Ok(0);
        };
        let batches: Vec<RecordBatch> = entries.into_iter().map(|(_, batch)| batch).collect();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let txn = self.app_id.as_ref().map(|app_id| {
            Transaction::new_with_last_update(app_id, seq_i64(last_seq), Some(now_millis()))
        });
        let started = Instant::now();
        let span = tracing::info_span!("delta_commit", table = self.kind.name(), rows);
        let committed =
            tracing::Instrument::instrument(self.commit_batches(&mut table, &batches, txn), span)
                .await;
        crate::metrics::delta_commit(self.kind.name(), started.elapsed(), rows, committed.is_ok());
        let version = committed?;
        if version.is_some() {
            self.publish(table.clone(), last_seq);
        }
        let mut fresh = self.lock_fresh();
        while fresh
            .entries
            .front()
            .is_some_and(|(seq, _)| *seq <= last_seq)
        {
            if let Some((_, batch)) = fresh.entries.pop_front() {
                fresh.bytes = fresh.bytes.saturating_sub(batch.get_array_memory_size());
            }
        }
        fresh.oldest = if fresh.entries.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        Ok(rows)
    }

    /// Writes `batch` straight to Delta, without the WAL: one commit per call.
    pub async fn append(
        &self,
        batch: &RecordBatch,
        txn: Option<Transaction>,
    ) -> Result<Option<i64>> {
        let mut table = self.commit.lock().await;
        let version = self
            .commit_batches(&mut table, std::slice::from_ref(batch), txn)
            .await?;
        self.publish(table.clone(), 0);
        Ok(version)
    }

    async fn commit_batches(
        &self,
        table: &mut DeltaTable,
        batches: &[RecordBatch],
        txn: Option<Transaction>,
    ) -> Result<Option<i64>> {
        if batches.iter().all(|batch| batch.num_rows() == 0) {
            return Ok(None);
        }
        table.update_state().await?;
        if let Some(txn) = &txn {
            // A replay of rows this WAL already committed adds nothing.
            let done = table
                .snapshot()?
                .transaction_version(table.log_store().as_ref(), &txn.app_id)
                .await?
                .unwrap_or(0);
            if done >= txn.version {
                return Ok(None);
            }
        }
        let store = table.object_store();
        let kind = self.kind;
        let batches = batches.to_vec();
        // Sorting and Parquet encoding are CPU work: keep them off the async workers.
        let files = tokio::task::spawn_blocking(move || encode_files(kind, &batches))
            .await
            .map_err(|e| Error::storage(format!("encoding task failed: {e}")))??;
        let mut actions = Vec::with_capacity(files.len());
        for file in files {
            let size = i64::try_from(file.bytes.len()).unwrap_or(i64::MAX);
            store
                .put(&Path::from(file.path.as_str()), file.bytes.into())
                .await?;
            let mut partition_values = HashMap::new();
            partition_values.insert(DATE_COLUMN.to_owned(), Some(format_date(file.date)));
            actions.push(Action::Add(Add {
                path: file.path,
                partition_values,
                size,
                modification_time: now_millis(),
                data_change: true,
                stats: Some(file.stats),
                ..Default::default()
            }));
        }
        let mut properties = CommitProperties::default().with_cleanup_expired_logs(Some(false));
        if let Some(txn) = txn {
            properties = properties.with_application_transaction(txn);
        }
        let snapshot = table.snapshot()?.clone();
        let finalized = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(
                Some(&snapshot),
                table.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: Some(vec![DATE_COLUMN.to_owned()]),
                    predicate: None,
                },
            )
            .await?;
        let version = finalized.version();
        table.state = Some(finalized.snapshot());
        Ok(Some(i64::try_from(version).unwrap_or(i64::MAX)))
    }
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The highest WAL sequence `app_id` has committed to `table`.
async fn committed_seq(table: &DeltaTable, app_id: Option<&str>) -> Result<u64> {
    let Some(app_id) = app_id else {
        return Ok(0);
    };
    let version = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await?
        .unwrap_or(0);
    Ok(u64::try_from(version).unwrap_or(0))
}

/// A data file ready to upload.
struct EncodedFile {
    path: String,
    date: i32,
    bytes: Vec<u8>,
    stats: String,
}

/// Splits by date, sorts by time and encodes rows as Parquet files.
fn encode_files(kind: TableKind, batches: &[RecordBatch]) -> Result<Vec<EncodedFile>> {
    let mut files = Vec::new();
    for (date, part) in sorted_parts(kind, batches)? {
        let path = format!(
            "{DATE_COLUMN}={}/part-{}.zstd.parquet",
            format_date(date),
            uuid::Uuid::new_v4()
        );
        let (bytes, metadata) = write_parquet(&part, writer_properties(kind, &part)?)?;
        let stats = stats_json(&part, &metadata);
        files.push(EncodedFile {
            path,
            date,
            bytes,
            stats,
        });
    }
    Ok(files)
}

async fn create(table: &DeltaTable, kind: TableKind) -> Result<DeltaTable> {
    let schema = StructType::try_from_arrow(kind.schema().as_ref())
        .map_err(|e| Error::InvalidBatch(format!("{} schema: {e}", kind.name())))?;
    let mut builder = table
        .create()
        .with_table_name(kind.name())
        .with_columns(schema.fields().cloned())
        .with_partition_columns([DATE_COLUMN])
        .with_save_mode(SaveMode::Ignore);
    for (property, value) in table_properties() {
        builder = builder.with_configuration_property(property, Some(value));
    }
    match builder.await {
        Ok(table) => Ok(table),
        // Another gateway created it at the same moment: load theirs.
        Err(deltalake::DeltaTableError::Transaction { .. }) => {
            let mut table = table.clone();
            table.load().await?;
            Ok(table)
        }
        Err(error) => Err(error.into()),
    }
}

/// `YYYY-MM-DD` of a day number.
pub fn format_date(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|time| time.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_owned())
}

/// The rows of `batches` (a table's fresh batches) as the contents of its data files: split
/// by `date`, cut every [`FILE_ROWS`] rows, each part sorted by the table's time column
/// (stable, so producers' order breaks ties), without the date column (partition values
/// are not stored in the files).
///
/// The batches are concatenated first and the rows taken from the whole: gathering them
/// straight from the fresh batches with arrow's `interleave` saves that copy but took
/// twice as long (`commit/spans` in `gateway/benches/ingest.rs`).
pub fn sorted_parts(kind: TableKind, batches: &[RecordBatch]) -> Result<Vec<(i32, RecordBatch)>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let batch = compute::concat_batches(&first.schema(), batches)?;
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    for (date, rows) in split_by_date(&batch)? {
        let mut offset = 0;
        while offset < rows.num_rows() {
            let length = FILE_ROWS.min(rows.num_rows() - offset);
            parts.push((date, sort_by_time(&rows.slice(offset, length), kind)?));
            offset += length;
        }
    }
    Ok(parts)
}

/// Splits rows by their `date` and drops the column.
fn split_by_date(batch: &RecordBatch) -> Result<Vec<(i32, RecordBatch)>> {
    let schema = batch.schema();
    let date_index = schema
        .index_of(DATE_COLUMN)
        .map_err(|_| Error::InvalidBatch("batch has no date column".into()))?;
    let dates = batch.column(date_index).as_primitive::<Date32Type>();
    let mut without_date = batch.clone();
    without_date.remove_column(date_index);
    let first = dates.iter().flatten().next().unwrap_or(0);
    if dates.null_count() == 0 && dates.values().iter().all(|day| *day == first) {
        return Ok(vec![(first, without_date)]);
    }
    let mut days: Vec<i32> = dates.iter().map(|day| day.unwrap_or(0)).collect();
    days.sort_unstable();
    days.dedup();
    let mut parts = Vec::with_capacity(days.len());
    for day in days {
        let mask = compute::kernels::cmp::eq(dates, &arrow::array::Date32Array::new_scalar(day))?;
        parts.push((day, compute::filter_record_batch(&without_date, &mask)?));
    }
    Ok(parts)
}

/// Sorts rows by the table's time column (stable, so producers' order breaks ties).
fn sort_by_time(batch: &RecordBatch, kind: TableKind) -> Result<RecordBatch> {
    let index = batch
        .schema()
        .index_of(kind.time_column())
        .map_err(|_| Error::InvalidBatch(format!("no {} column", kind.time_column())))?;
    let column = batch.column(index);
    let indices = compute::lexsort_to_indices(
        &[SortColumn {
            values: column.clone(),
            options: Some(SortOptions::default()),
        }],
        None,
    )?;
    Ok(crate::permute::take_batch(batch, &indices)?)
}

/// Parquet writer settings for `batch` (one file) of a table, sorted by the time column.
pub fn writer_properties(kind: TableKind, batch: &RecordBatch) -> Result<WriterProperties> {
    let mut builder = base_writer_properties(kind, batch)?;
    if let Ok(index) = batch.schema().index_of(kind.time_column()) {
        builder = builder.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: i32::try_from(index).unwrap_or(0),
            descending: false,
            nulls_first: false,
        }]));
    }
    Ok(builder.build())
}

/// Parquet writer settings for `batch` (one file), not sorted by time alone (compaction
/// output).
pub fn writer_properties_unsorted(
    kind: TableKind,
    batch: &RecordBatch,
) -> Result<WriterProperties> {
    Ok(base_writer_properties(kind, batch)?.build())
}

/// The most distinct values of `column` in any row group of `batch` (row groups are
/// consecutive runs of [`ROW_GROUP_ROWS`] rows); a row group's count if the column is not a
/// string column.
fn row_group_distinct(batch: &RecordBatch, column: &str) -> usize {
    let Some(values) = batch
        .column_by_name(column)
        .and_then(|values| values.as_string_opt::<i32>())
    else {
        return ROW_GROUP_ROWS;
    };
    let mut most = 0;
    let mut start = 0;
    while start < values.len() {
        let length = ROW_GROUP_ROWS.min(values.len() - start);
        let slice = values.slice(start, length);
        let distinct: std::collections::HashSet<&str> = slice.iter().flatten().collect();
        most = most.max(distinct.len());
        start += length;
    }
    most
}

fn base_writer_properties(
    kind: TableKind,
    batch: &RecordBatch,
) -> Result<parquet::file::properties::WriterPropertiesBuilder> {
    // Level 1, not 3: on the commit's sorted spans (10 attributes each) level 3 was over
    // half of the Parquet writer's time, and level 1 cut the writer's time by 30 % for files
    // no larger (1-2 % smaller on spans, log entries and measures): `commit/*/parquet` in
    // gateway/benches/ingest.rs.
    let zstd = ZstdLevel::try_new(ZSTD_LEVEL)?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Whole values in the row groups' statistics: the Delta statistics are read off
        // them, and promise exact strings (`stats_json`).
        .set_statistics_truncate_length(None);
    for path in repeated_leaves(batch.schema_ref())? {
        // Minimum and maximum of a map's keys and values, or of a list's elements, prune
        // nothing (no reader turns a predicate on one entry into a range on the column),
        // and computing them on every entry cost a tenth of the commit path.
        builder = builder.set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    for column in kind.unique_columns() {
        // Every value distinct: a dictionary only costs a hash per value until it spills.
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    for column in kind.bloom_filter_columns() {
        // Sized for the ids a row group really holds (a trace's spans share one): a filter
        // sized for one id per row is ~8 times larger, and a lookup reads every row group's.
        let distinct = row_group_distinct(batch, column);
        let ndv = (distinct + distinct / 4).clamp(1_024, ROW_GROUP_ROWS);
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, ndv as u64);
    }
    Ok(builder)
}

/// The Parquet paths of the leaf columns under a list or a map.
fn repeated_leaves(schema: &SchemaRef) -> Result<Vec<ColumnPath>> {
    let descriptor = ArrowSchemaConverter::new().convert(schema)?;
    Ok(descriptor
        .columns()
        .iter()
        .filter(|column| column.max_rep_level() > 0)
        .map(|column| column.path().clone())
        .collect())
}

/// `part` as one Parquet file written with `properties`: its bytes, and the metadata the
/// writer gathered (what [`stats_json`] reads the string bounds from).
pub fn write_parquet(
    part: &RecordBatch,
    properties: WriterProperties,
) -> Result<(Vec<u8>, ParquetMetaData)> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, part.schema(), Some(properties))?;
    writer.write(part)?;
    let metadata = writer.close()?;
    Ok((bytes, metadata))
}

/// Delta file statistics (`numRecords`, `minValues`, `maxValues`, `nullCount`) of the
/// top-level primitive columns of `batch`, written as the Parquet file `metadata` describes.
/// Values are exact: strings whole, timestamps to the microsecond (other Delta writers
/// truncate timestamps to milliseconds; readers that add a millisecond to a maximum stay
/// correct with exact values).
///
/// The bounds of string columns come from the file's own row group statistics, which the
/// writer computed while encoding (untruncated: see `base_writer_properties`), instead of
/// from another pass comparing every string (`commit/*/parquet/stats_json` in
/// gateway/benches/ingest.rs). Numbers and times are read off the batch: arrow's kernels
/// are cheap there, and keep their NaN rule (a float column holding NaN has no maximum).
pub fn stats_json(batch: &RecordBatch, metadata: &ParquetMetaData) -> String {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let mut nulls = Map::new();
    let leaves: HashMap<&str, usize> = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, column)| column.path().parts().len() == 1)
        .map(|(index, column)| (column.name(), index))
        .collect();
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Struct(_) | DataType::List(_) | DataType::Map(_, _) | DataType::Binary => {
                continue;
            }
            _ => {}
        }
        let name = field.name().clone();
        nulls.insert(name.clone(), json!(column.null_count()));
        let (low, high) = match (field.data_type(), leaves.get(name.as_str())) {
            // Comparing strings is what costs: the writer did it already.
            (DataType::Utf8, Some(&leaf)) => file_string_bounds(metadata, leaf),
            (DataType::Utf8, None) => (None, None),
            _ => min_max(column.as_ref()),
        };
        if let Some(low) = low {
            mins.insert(name.clone(), low);
        }
        if let Some(high) = high {
            maxs.insert(name, high);
        }
    }
    json!({
        "numRecords": batch.num_rows(),
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    })
    .to_string()
}

/// The least and the greatest string of leaf column `leaf` in a file, from its row groups'
/// statistics; `None` for a bound that some row group does not give exactly. Row groups of
/// nulls only have no bounds and are passed over.
fn file_string_bounds(metadata: &ParquetMetaData, leaf: usize) -> (Option<Value>, Option<Value>) {
    let (mut low, mut high): (Option<&ByteArray>, Option<&ByteArray>) = (None, None);
    let (mut low_exact, mut high_exact) = (true, true);
    for group in metadata.row_groups() {
        let Some(Statistics::ByteArray(statistics)) = group.column(leaf).statistics() else {
            return (None, None);
        };
        if let Some(min) = statistics.min_opt() {
            low_exact &= statistics.min_is_exact();
            if low.is_none_or(|low| min < low) {
                low = Some(min);
            }
        }
        if let Some(max) = statistics.max_opt() {
            high_exact &= statistics.max_is_exact();
            if high.is_none_or(|high| max > high) {
                high = Some(max);
            }
        }
    }
    let text = |value: Option<&ByteArray>, exact: bool| {
        value
            .filter(|_| exact)
            .and_then(|value| value.as_utf8().ok())
            .map(Value::from)
    };
    (text(low, low_exact), text(high, high_exact))
}

fn format_micros(micros: i64) -> Option<Value> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|time| Value::from(time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
}

fn min_max(column: &dyn Array) -> (Option<Value>, Option<Value>) {
    match column.data_type() {
        DataType::Int64 => {
            let values = column.as_primitive::<Int64Type>();
            (
                compute::min(values).map(Value::from),
                compute::max(values).map(Value::from),
            )
        }
        DataType::Int32 => {
            let values = column.as_primitive::<Int32Type>();
            (
                compute::min(values).map(Value::from),
                compute::max(values).map(Value::from),
            )
        }
        DataType::Float64 => {
            let values = column.as_primitive::<Float64Type>();
            let finite = |value: Option<f64>| value.filter(|v| v.is_finite()).map(Value::from);
            (finite(compute::min(values)), finite(compute::max(values)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let values = column.as_primitive::<TimestampMicrosecondType>();
            (
                compute::min(values).and_then(format_micros),
                compute::max(values).and_then(format_micros),
            )
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};

    use super::*;

    fn ids(values: Vec<String>) -> RecordBatch {
        let column: ArrayRef = Arc::new(StringArray::from(values));
        RecordBatch::try_from_iter([("trace_id", column)]).expect("one column")
    }

    #[test]
    fn bloom_filters_are_sized_by_the_ids_of_the_fullest_row_group() {
        // Ten spans per trace in the first row group, one per row in the second.
        let mut values: Vec<String> = (0..ROW_GROUP_ROWS)
            .map(|row| format!("t{}", row / 10))
            .collect();
        values.extend((0..5_000).map(|row| format!("u{row}")));
        assert_eq!(
            row_group_distinct(&ids(values), "trace_id"),
            ROW_GROUP_ROWS / 10 + 1
        );
        let few = ids(vec!["a".to_owned(), "a".to_owned(), "b".to_owned()]);
        assert_eq!(row_group_distinct(&few, "trace_id"), 2);
        // Not a string column: sized for a row group of distinct values.
        assert_eq!(row_group_distinct(&few, "missing"), ROW_GROUP_ROWS);
    }

    /// `sorted_parts` the slow way: per date filter, sort, and take with arrow's own `take`.
    fn concatenated_then_sorted(
        kind: TableKind,
        batches: &[RecordBatch],
    ) -> Vec<(i32, RecordBatch)> {
        let batch = compute::concat_batches(&kind.schema(), batches).expect("concat");
        let index = batch.schema().index_of(DATE_COLUMN).expect("date column");
        let dates = batch.column(index).as_primitive::<Date32Type>().clone();
        let mut days: Vec<i32> = dates.values().to_vec();
        days.sort_unstable();
        days.dedup();
        let mut without_date = batch.clone();
        without_date.remove_column(index);
        days.into_iter()
            .map(|day| {
                let mask =
                    compute::kernels::cmp::eq(&dates, &arrow::array::Date32Array::new_scalar(day))
                        .expect("mask");
                let rows = compute::filter_record_batch(&without_date, &mask).expect("filter");
                let time = rows
                    .column_by_name(kind.time_column())
                    .expect("time column");
                let order = compute::lexsort_to_indices(
                    &[SortColumn {
                        values: time.clone(),
                        options: Some(SortOptions::default()),
                    }],
                    None,
                )
                .expect("sort");
                (
                    day,
                    compute::take_record_batch(&rows, &order).expect("take"),
                )
            })
            .collect()
    }

    /// The Delta statistics of `batch` written with `properties`, parsed.
    fn written_stats(batch: &RecordBatch, properties: WriterProperties) -> (Value, usize) {
        let (_, metadata) = write_parquet(batch, properties).expect("write");
        let stats = serde_json::from_str(&stats_json(batch, &metadata)).expect("JSON");
        (stats, metadata.num_row_groups())
    }

    #[test]
    fn string_bounds_are_read_off_the_file_whole_across_row_groups() {
        use arrow::array::Int64Array;
        // Longer than the 64 bytes Parquet truncates statistics to by default, and the
        // greatest value ("é" sorts after every ASCII letter).
        let long = "é".repeat(100);
        let names: ArrayRef = Arc::new(StringArray::from(vec![
            Some("m"),
            None,
            Some(long.as_str()),
            Some("é"),
            Some("a"),
            Some("b"),
        ]));
        let nothing: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>; 6]));
        // Null in the first two row groups only.
        let tail: ArrayRef = Arc::new(StringArray::from(vec![
            None,
            None,
            None,
            None,
            Some("x".repeat(100)),
            Some("w".to_owned()),
        ]));
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![5, -3, 7, 0, 2, 1]));
        let batch = RecordBatch::try_from_iter([
            ("name", names),
            ("nothing", nothing),
            ("tail", tail),
            ("number", numbers),
        ])
        .expect("batch");
        let properties = base_writer_properties(TableKind::Spans, &batch)
            .expect("properties")
            .set_max_row_group_row_count(Some(2))
            .build();
        let (stats, groups) = written_stats(&batch, properties);
        assert_eq!(groups, 3);
        assert_eq!(stats["numRecords"], json!(6));
        assert_eq!(stats["minValues"]["name"], json!("a"));
        assert_eq!(stats["maxValues"]["name"], json!(long));
        assert_eq!(stats["minValues"]["tail"], json!("w"));
        assert_eq!(stats["maxValues"]["tail"], json!("x".repeat(100)));
        assert_eq!(stats["minValues"]["number"], json!(-3));
        assert_eq!(stats["maxValues"]["number"], json!(7));
        assert!(stats["minValues"].get("nothing").is_none(), "{stats}");
        assert!(stats["maxValues"].get("nothing").is_none(), "{stats}");
        assert_eq!(stats["nullCount"]["name"], json!(1));
        assert_eq!(stats["nullCount"]["nothing"], json!(6));
        assert_eq!(stats["nullCount"]["tail"], json!(4));
    }

    #[test]
    fn committed_files_carry_the_bounds_of_every_string_column() {
        use crate::permute::tests::spans_at;
        let batches = vec![
            spans_at(300, 1_700_000_000_000_000_000, 977),
            spans_at(200, 1_700_000_000_000_000_000 + 5, 1_003),
        ];
        let files = encode_files(TableKind::Spans, &batches).expect("files");
        let parts = sorted_parts(TableKind::Spans, &batches).expect("parts");
        assert_eq!(files.len(), parts.len());
        let mut checked = 0;
        for (file, (_, part)) in files.iter().zip(&parts) {
            let stats: Value = serde_json::from_str(&file.stats).expect("JSON");
            for (field, column) in part.schema().fields().iter().zip(part.columns()) {
                if field.data_type() != &DataType::Utf8 {
                    continue;
                }
                let values = column.as_string::<i32>();
                let name = field.name().as_str();
                let expected = |value: Option<&str>| value.map_or(Value::Null, Value::from);
                let found = |bound: &str| stats[bound].get(name).cloned().unwrap_or(Value::Null);
                assert_eq!(
                    found("minValues"),
                    expected(compute::min_string(values)),
                    "{name}"
                );
                assert_eq!(
                    found("maxValues"),
                    expected(compute::max_string(values)),
                    "{name}"
                );
                checked += usize::from(values.null_count() < values.len());
            }
        }
        assert!(checked >= 5, "{checked} string columns with values");
    }

    #[test]
    fn parts_are_split_by_date_and_sorted_by_time() {
        use crate::permute::tests::{assert_same_columns, spans_at};
        const HOUR: i64 = 3_600_000_000_000;
        // Batches out of time order, overlapping, crossing midnight, one of them empty.
        let batches = vec![
            spans_at(40, 1_700_000_000_000_000_000 + 30 * HOUR, 977),
            spans_at(0, 1_700_000_000_000_000_000, 1),
            spans_at(57, 1_700_000_000_000_000_000, HOUR),
            spans_at(3, 1_700_000_000_000_000_000 + 5, 1_003),
        ];
        let ours = sorted_parts(TableKind::Spans, &batches).expect("sorted parts");
        let reference = concatenated_then_sorted(TableKind::Spans, &batches);
        assert!(ours.len() >= 3, "{} dates", ours.len());
        assert_eq!(ours.len(), reference.len());
        for ((day, part), (reference_day, reference_part)) in ours.iter().zip(&reference) {
            assert_eq!(day, reference_day);
            assert_eq!(part.schema(), reference_part.schema());
            assert_eq!(part.num_rows(), reference_part.num_rows());
            assert_same_columns(part, reference_part, &format!("day {day}"));
        }
        let rows: usize = ours.iter().map(|(_, part)| part.num_rows()).sum();
        assert_eq!(rows, 100);
        assert!(
            sorted_parts(TableKind::Spans, &[])
                .expect("no batches")
                .is_empty()
        );
    }

    #[test]
    fn rows_of_the_same_time_keep_their_arrival_order_across_batches() {
        use crate::permute::tests::spans_at;
        let time = 1_700_000_000_000_000_000;
        let batches = vec![
            spans_at(4, time, 0),
            spans_at(3, time, 0),
            spans_at(2, time, 0),
        ];
        let parts = sorted_parts(TableKind::Spans, &batches).expect("sorted parts");
        assert_eq!(parts.len(), 1);
        let ids = parts[0].1.column_by_name("span_id").expect("span_id");
        let ids: Vec<&str> = ids.as_string::<i32>().iter().flatten().collect();
        let expected: Vec<String> = [4, 3, 2]
            .into_iter()
            .flat_map(|rows| (0..rows).map(|row: usize| format!("{row:016x}")))
            .collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn statistics_where_they_prune_dictionaries_where_values_repeat() {
        let spans = RecordBatch::new_empty(TableKind::Spans.schema());
        let properties = writer_properties(TableKind::Spans, &spans).expect("properties");
        let path = |p: &str| ColumnPath::new(p.split('.').map(str::to_owned).collect());
        for top in ["start_time", "trace_id", "name", "duration_ns"] {
            assert_eq!(
                properties.statistics_enabled(&path(top)),
                EnabledStatistics::Page,
                "{top}"
            );
        }
        for nested in [
            "properties.key_value.key",
            "properties.key_value.value.str",
            "events.list.element.name",
            "links.list.element.properties.key_value.value.int",
            "scope_properties.key_value.key",
        ] {
            assert_eq!(
                properties.statistics_enabled(&path(nested)),
                EnabledStatistics::None,
                "{nested}"
            );
        }
        assert!(!properties.dictionary_enabled(&path("span_id")));
        assert!(properties.dictionary_enabled(&path("trace_id")));
        assert!(properties.dictionary_enabled(&path("properties.key_value.key")));
    }
}
