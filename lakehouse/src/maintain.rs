//! Maintenance: what keeps the tables fast and small for every reader.
//!
//! - **Retention**: whole `date` partitions older than a table's retention are removed
//!   from the log (a metadata-only delete); vacuum deletes their files later.
//! - **Compaction**: small files of a partition are merged into files of about the target
//!   size, sorted by hour, then clustered (spans by trace, so a lookup by id reads one
//!   page; other tables by service), then by time: hour-level time pruning stays. The commit removes and adds with
//!   `dataChange = false`, so it never conflicts with concurrent appends. `processes` and
//!   `streams` rows are deduplicated by their id on the way.
//! - **Checkpoints** and expired-log cleanup keep the Delta log quick to read.
//! - **Vacuum** deletes files no version references any more (compacted inputs, dropped
//!   partitions, orphans of interrupted writes) once they are older than the grace period.
//!
//! One maintainer at a time: the caller holds the catalog lease `maintenance`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{self, SortColumn, SortOptions};
use arrow::datatypes::TimestampMicrosecondType;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::schema::{DATE_COLUMN, TableKind};
use crate::table::{LakeTable, format_date, stats_json, write_parquet, writer_properties_unsorted};

/// Maintenance settings.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Size compaction aims for, in bytes of Parquet.
    pub target_file_bytes: u64,
    /// Files smaller than this are merged.
    pub small_file_bytes: u64,
    /// Unreferenced files younger than this are kept (in-flight writes, slow readers).
    pub vacuum_grace: Duration,
    /// Days of data to keep per table; tables not listed keep everything.
    pub retention_days: BTreeMap<TableKind, u32>,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            target_file_bytes: 128 << 20,
            small_file_bytes: 32 << 20,
            vacuum_grace: Duration::from_secs(24 * 3600),
            retention_days: BTreeMap::new(),
        }
    }
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub files_before: usize,
    pub files_after: usize,
    pub files_compacted: usize,
    pub files_written: usize,
    pub partitions_dropped: usize,
    pub files_vacuumed: usize,
    pub checkpointed: bool,
}

/// Progress messages, for `tarn maintain`.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

fn file_count(table: &DeltaTable) -> Result<usize> {
    Ok(table.snapshot()?.log_data().iter().count())
}

/// Today's date as days since the epoch.
fn today() -> i32 {
    crate::rows::date_of_nanos(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0))
}

async fn commit(
    table: &mut DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
) -> Result<()> {
    let properties = CommitProperties::default().with_cleanup_expired_logs(Some(false));
    let snapshot = table.snapshot()?.clone();
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(&snapshot), table.log_store(), operation)
        .await?;
    table.state = Some(finalized.snapshot());
    Ok(())
}

/// Removes the partitions older than `days` days; returns how many.
async fn apply_retention(table: &mut DeltaTable, days: u32) -> Result<usize> {
    let cutoff = today() - i32::try_from(days).unwrap_or(i32::MAX);
    let cutoff_text = format_date(cutoff);
    let mut dropped = HashSet::new();
    let mut actions = Vec::new();
    for file in table.snapshot()?.log_data().iter() {
        let date = file
            .partition_values_map()
            .get(DATE_COLUMN)
            .cloned()
            .flatten();
        if let Some(date) = date
            && date < cutoff_text
        {
            dropped.insert(date);
            actions.push(Action::Remove(file.remove_action(true)));
        }
    }
    if actions.is_empty() {
        return Ok(0);
    }
    let operation = DeltaOperation::Delete {
        predicate: Some(format!("{DATE_COLUMN} < '{cutoff_text}'")),
    };
    commit(table, actions, operation).await?;
    Ok(dropped.len())
}

/// A file compaction may merge.
#[derive(Debug, Clone)]
struct Candidate {
    path: String,
    size: u64,
    remove: deltalake::kernel::Remove,
}

/// What compaction clusters rows by inside each hour of event time. Spans: by trace (then
/// stream, for native spans without one), so a trace's spans sit together, in one row
/// group and one or two pages, and a lookup by id reads one page of `trace_id` (the page
/// index's min/max prunes the rest); the others: by service, for per-service aggregations.
fn cluster_columns(kind: TableKind) -> &'static [&'static str] {
    match kind {
        TableKind::Spans => &["trace_id", "stream_id"],
        _ => &["service_name"],
    }
}

/// Sorts rows by (hour of the event time, [`cluster_columns`], event time).
fn sort_for_compaction(batch: &RecordBatch, kind: TableKind) -> Result<RecordBatch> {
    let schema = batch.schema();
    let time_index = schema
        .index_of(kind.time_column())
        .map_err(|_| Error::InvalidBatch(format!("no {} column", kind.time_column())))?;
    let time = batch.column(time_index);
    let hours: Int64Array = time
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .map(|micros| micros.map(|m| m.div_euclid(3_600_000_000)))
        .collect();
    let mut keys = vec![SortColumn {
        values: Arc::new(hours),
        options: Some(SortOptions::default()),
    }];
    for column in cluster_columns(kind) {
        if let Ok(index) = schema.index_of(column) {
            keys.push(SortColumn {
                values: Arc::clone(batch.column(index)),
                options: Some(SortOptions::default()),
            });
        }
    }
    keys.push(SortColumn {
        values: Arc::clone(time),
        options: Some(SortOptions::default()),
    });
    let indices = compute::lexsort_to_indices(&keys, None)?;
    Ok(crate::permute::take_batch(batch, &indices)?)
}

/// The column whose value a table holds once per row, if any: two gateways seeing a new
/// process or stream at the same moment can both write it.
fn dedup_column(kind: TableKind) -> Option<&'static str> {
    match kind {
        TableKind::Processes => Some("process_id"),
        TableKind::Streams => Some("stream_id"),
        _ => None,
    }
}

/// Keeps the first row of each value of `column`.
fn dedup_by(batch: &RecordBatch, column: &str) -> Result<RecordBatch> {
    let ids = batch
        .column_by_name(column)
        .ok_or_else(|| Error::InvalidBatch(format!("no {column}")))?;
    let ids = compute::cast(ids, &arrow::datatypes::DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    let mut seen = HashSet::new();
    let keep: BooleanArray = (0..ids.len())
        .map(|i| Some(ids.is_null(i) || seen.insert(ids.value(i).to_owned())))
        .collect();
    Ok(compute::filter_record_batch(batch, &keep)?)
}

/// Reads whole files (small ones: compaction only reads files below the small-file size).
async fn read_files(table: &DeltaTable, files: &[Candidate]) -> Result<Vec<RecordBatch>> {
    let store = table.object_store();
    let mut batches = Vec::new();
    for file in files {
        let bytes = store
            .get(&Path::from(file.path.as_str()))
            .await?
            .bytes()
            .await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for batch in reader {
            batches.push(batch?);
        }
    }
    Ok(batches)
}

/// Merges one group of small files of a partition into files of about the target size.
async fn compact_group(
    table: &mut DeltaTable,
    kind: TableKind,
    date: &str,
    group: &[Candidate],
    target_file_bytes: u64,
) -> Result<usize> {
    let batches = read_files(table, group).await?;
    let Some(first) = batches.first() else {
        return Ok(0);
    };
    let schema = first.schema();
    let mut merged = compute::concat_batches(&schema, &batches)?;
    if let Some(column) = dedup_column(kind) {
        merged = dedup_by(&merged, column)?;
    }
    let total_bytes: u64 = group.iter().map(|file| file.size).sum();
    let rows = merged.num_rows().max(1);
    let bytes_per_row = (total_bytes / rows as u64).max(1);
    let rows_per_file =
        usize::try_from((target_file_bytes / bytes_per_row).max(1)).unwrap_or(usize::MAX);
    let store = table.object_store();
    let mut actions: Vec<Action> = group
        .iter()
        .map(|file| Action::Remove(file.remove.clone()))
        .collect();
    let mut written = 0;
    let mut offset = 0;
    while offset < merged.num_rows() {
        let length = rows_per_file.min(merged.num_rows() - offset);
        let part = merged.slice(offset, length);
        offset += length;
        let (bytes, stats) = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, String)> {
            let part = sort_for_compaction(&part, kind)?;
            let properties = writer_properties_unsorted(kind, &part)?;
            let (bytes, metadata) = write_parquet(&part, properties)?;
            let stats = stats_json(&part, &metadata);
            Ok((bytes, stats))
        })
        .await
        .map_err(|e| Error::storage(format!("compaction task failed: {e}")))??;
        let path = format!(
            "{DATE_COLUMN}={date}/part-{}.zstd.parquet",
            uuid::Uuid::new_v4()
        );
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        store.put(&Path::from(path.as_str()), bytes.into()).await?;
        let mut partition_values = HashMap::new();
        partition_values.insert(DATE_COLUMN.to_owned(), Some(date.to_owned()));
        actions.push(Action::Add(Add {
            path,
            partition_values,
            size,
            modification_time: chrono::Utc::now().timestamp_millis(),
            data_change: false,
            stats: Some(stats),
            ..Default::default()
        }));
        written += 1;
    }
    let operation = DeltaOperation::Optimize {
        predicate: Some(format!("{DATE_COLUMN} = '{date}'")),
        target_size: i64::try_from(target_file_bytes).unwrap_or(i64::MAX),
    };
    commit(table, actions, operation).await?;
    Ok(written)
}

/// Compacts every partition's small files; returns (files merged, files written).
async fn compact(
    table: &mut DeltaTable,
    kind: TableKind,
    options: &MaintainOptions,
    progress: Progress<'_>,
) -> Result<(usize, usize)> {
    let mut by_date: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for file in table.snapshot()?.log_data().iter() {
        let size = u64::try_from(file.size()).unwrap_or(u64::MAX);
        if size >= options.small_file_bytes {
            continue;
        }
        let Some(date) = file
            .partition_values_map()
            .get(DATE_COLUMN)
            .cloned()
            .flatten()
        else {
            continue;
        };
        by_date.entry(date).or_default().push(Candidate {
            path: file.path().into_owned(),
            size,
            remove: file.remove_action(false),
        });
    }
    let mut merged = 0;
    let mut written = 0;
    for (date, files) in by_date {
        // Groups of small files whose total is about the target size.
        let mut groups: Vec<Vec<Candidate>> = vec![Vec::new()];
        let mut group_bytes = 0;
        for file in files {
            if group_bytes + file.size > options.target_file_bytes
                && groups.last().is_some_and(|group| !group.is_empty())
            {
                groups.push(Vec::new());
                group_bytes = 0;
            }
            group_bytes += file.size;
            if let Some(group) = groups.last_mut() {
                group.push(file);
            }
        }
        for group in groups.into_iter().filter(|group| group.len() >= 2) {
            progress(&format!(
                "{}: merging {} files of {date}",
                kind.name(),
                group.len()
            ));
            written += compact_group(table, kind, &date, &group, options.target_file_bytes).await?;
            merged += group.len();
        }
    }
    Ok((merged, written))
}

impl LakeTable {
    /// One maintenance pass over this table.
    pub async fn maintain(
        &self,
        options: &MaintainOptions,
        progress: Progress<'_>,
    ) -> Result<TableReport> {
        let kind = self.kind();
        let mut table = self.lock_commit().await;
        table.update_state().await?;
        let mut report = TableReport {
            table: kind.name().to_owned(),
            files_before: file_count(&table)?,
            ..Default::default()
        };
        let version_before = table.version();
        if let Some(days) = options.retention_days.get(&kind) {
            report.partitions_dropped = apply_retention(&mut table, *days).await?;
            if report.partitions_dropped > 0 {
                progress(&format!(
                    "{}: dropped {} partitions older than {days} days",
                    kind.name(),
                    report.partitions_dropped
                ));
            }
        }
        let (merged, written) = compact(&mut table, kind, options, progress).await?;
        report.files_compacted = merged;
        report.files_written = written;
        if table.version() != version_before || self.needs_checkpoint(table.version()) {
            deltalake::checkpoints::create_checkpoint(&table, None).await?;
            deltalake::checkpoints::cleanup_metadata(&table, None).await?;
            self.checkpointed_at(table.version());
            report.checkpointed = true;
        }
        let grace = chrono::Duration::from_std(options.vacuum_grace)
            .map_err(|e| Error::Config(format!("bad vacuum grace: {e}")))?;
        let (vacuumed, metrics) = table
            .clone()
            .vacuum()
            .with_retention_period(grace)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await?;
        report.files_vacuumed = metrics.files_deleted.len();
        *table = vacuumed;
        report.files_after = file_count(&table)?;
        self.publish_maintained(table.clone());
        progress(&format!(
            "{}: {} files -> {} (merged {}, wrote {}), {} partitions dropped, {} files vacuumed{}",
            kind.name(),
            report.files_before,
            report.files_after,
            report.files_compacted,
            report.files_written,
            report.partitions_dropped,
            report.files_vacuumed,
            if report.checkpointed {
                ", checkpointed"
            } else {
                ""
            }
        ));
        Ok(report)
    }
}

/// The name of the maintenance lease in the catalog.
pub const LEASE: &str = "maintenance";

/// How long a maintainer holds the lease without renewing it.
pub const LEASE_TTL: Duration = Duration::from_secs(600);

impl crate::Lakehouse {
    /// One maintenance pass over every table, if `holder` gets the lease (else `None`).
    pub async fn maintain(
        &self,
        options: &MaintainOptions,
        holder: &str,
        progress: Progress<'_>,
    ) -> Result<Option<Vec<TableReport>>> {
        if !self.catalog().try_lease(LEASE, holder, LEASE_TTL).await? {
            progress("another node holds the maintenance lease; skipping");
            return Ok(None);
        }
        let mut reports = Vec::new();
        let mut outcome = Ok(());
        for table in self.tables().values() {
            match table.maintain(options, progress).await {
                Ok(report) => reports.push(report),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
            if let Err(error) = self.catalog().try_lease(LEASE, holder, LEASE_TTL).await {
                outcome = Err(error);
                break;
            }
        }
        self.catalog().release_lease(LEASE, holder).await?;
        outcome.map(|()| Some(reports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    #[test]
    fn compaction_clusters_spans_by_trace_within_the_hour() {
        let hour = 3_600_000_000_i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "start_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("trace_id", DataType::Utf8, true),
            Field::new("service_name", DataType::Utf8, true),
        ]));
        let times = [hour + 5, hour + 1, 7, hour + 3, 2, hour + 2];
        let traces = [Some("b"), Some("b"), Some("z"), None, Some("a"), Some("a")];
        let services = ["s1", "s2", "s1", "s1", "s2", "s1"];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")),
                Arc::new(StringArray::from(traces.to_vec())),
                Arc::new(StringArray::from(services.to_vec())),
            ],
        )
        .unwrap();
        let sorted = sort_for_compaction(&batch, TableKind::Spans).unwrap();
        let times: Vec<i64> = sorted
            .column(0)
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec();
        let traces: Vec<Option<&str>> = sorted.column(1).as_string::<i32>().iter().collect();
        // Hour 0: traces a, z; hour 1: spans without a trace first, then a, then b (by time).
        assert_eq!(
            traces,
            [Some("a"), Some("z"), None, Some("a"), Some("b"), Some("b")]
        );
        assert_eq!(times, [2, 7, hour + 3, hour + 2, hour + 1, hour + 5]);
        // Each table sorts by its own time column, which must be there.
        let sorted = sort_for_compaction(&batch, TableKind::LogEntries);
        assert!(sorted.is_err(), "log_entries has no start_time column");
    }
}
