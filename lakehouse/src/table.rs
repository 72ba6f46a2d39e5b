//! One canonical Delta table: creation, appends written as Parquet files we lay out
//! ourselves, and commits.
//!
//! Files are written by Tarn, not by delta-rs' writer, so their layout serves the queries
//! people run (reference/query-anchor.md): rows sorted by event time, 128K-row row groups,
//! page-level statistics and the page index, bloom filters on trace and process ids, ZSTD.
//! The Delta `add` actions carry min/max statistics of the top-level primitive columns,
//! so readers skip files by time, duration or status without opening them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
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
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use url::Url;

use crate::error::{Error, Result};
use crate::schema::{DATE_COLUMN, TableKind};

/// Rows per Parquet row group: small enough for statistics and bloom filters to prune,
/// large enough to keep per-group overhead low (reference/query-anchor.md, layout B/C).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// A canonical table and the handle commits go through.
#[derive(Debug)]
pub struct LakeTable {
    kind: TableKind,
    url: Url,
    /// The latest state this process knows; commits serialize on it.
    table: Mutex<DeltaTable>,
}

/// Delta protocol properties every table is created with. None of them raises the
/// protocol above reader 1 / writer 2, the versions every Spark Delta release reads.
fn table_properties() -> Vec<(TableProperty, &'static str)> {
    vec![
        (TableProperty::CheckpointInterval, "50"),
        (TableProperty::DataSkippingNumIndexedCols, "-1"),
    ]
}

impl LakeTable {
    /// Opens the table at `url`, creating it when it does not exist yet.
    pub async fn open_or_create(
        kind: TableKind,
        url: Url,
        storage_options: &HashMap<String, String>,
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
        Ok(LakeTable {
            kind,
            url,
            table: Mutex::new(table),
        })
    }

    pub fn kind(&self) -> TableKind {
        self.kind
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The latest committed state, refreshed from the log (cheap when nothing changed).
    pub async fn latest(&self) -> Result<DeltaTable> {
        let mut table = self.table.lock().await;
        table.update_state().await?;
        Ok(table.clone())
    }

    /// Writes `batch` as Parquet files (one per date) and commits them in one Delta
    /// version. With `txn`, the commit records the application transaction
    /// `(app_id, version)` so a replay can tell it already happened.
    pub async fn append(
        &self,
        batch: &RecordBatch,
        txn: Option<Transaction>,
    ) -> Result<Option<i64>> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let mut table = self.table.lock().await;
        let store = table.object_store();
        let mut actions = Vec::new();
        for (date, rows) in split_by_date(batch)? {
            let rows = sort_by_time(&rows, self.kind)?;
            let relative = format!(
                "{DATE_COLUMN}={}/part-{}.zstd.parquet",
                format_date(date),
                uuid::Uuid::new_v4()
            );
            let size = write_parquet(store.clone(), &relative, &rows, self.kind).await?;
            let mut partition_values = HashMap::new();
            partition_values.insert(DATE_COLUMN.to_owned(), Some(format_date(date)));
            actions.push(Action::Add(Add {
                path: relative,
                partition_values,
                size,
                modification_time: chrono::Utc::now().timestamp_millis(),
                data_change: true,
                stats: Some(stats_json(&rows)),
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

/// Splits rows by their `date` and drops the column (partition values are not stored in
/// the files).
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
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| compute::take(column.as_ref(), &indices, None))
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Parquet writer settings for a table's data files.
pub fn writer_properties(kind: TableKind, file_schema: &SchemaRef) -> Result<WriterProperties> {
    let zstd = ZstdLevel::try_new(3)?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page);
    for column in kind.bloom_filter_columns() {
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, ROW_GROUP_ROWS as u64);
    }
    if let Ok(index) = file_schema.index_of(kind.time_column()) {
        builder = builder.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: i32::try_from(index).unwrap_or(0),
            descending: false,
            nulls_first: false,
        }]));
    }
    Ok(builder.build())
}

/// Writes one Parquet file at `relative` (to the table root); returns its size in bytes.
async fn write_parquet(
    store: Arc<dyn object_store::ObjectStore>,
    relative: &str,
    batch: &RecordBatch,
    kind: TableKind,
) -> Result<i64> {
    let schema = batch.schema();
    let properties = writer_properties(kind, &schema)?;
    let sink = BufWriter::new(store, Path::from(relative));
    let mut writer = AsyncArrowWriter::try_new(sink, schema, Some(properties))?;
    writer.write(batch).await?;
    writer.finish().await?;
    Ok(i64::try_from(writer.bytes_written()).unwrap_or(i64::MAX))
}

/// Delta file statistics (`numRecords`, `minValues`, `maxValues`, `nullCount`) of the
/// top-level primitive columns. Timestamps are truncated to milliseconds for the minimum
/// and rounded up for the maximum, so the range always covers the rows.
pub fn stats_json(batch: &RecordBatch) -> String {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let mut nulls = Map::new();
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().clone();
        let (low, high) = min_max(column.as_ref());
        match field.data_type() {
            DataType::Struct(_) | DataType::List(_) | DataType::Map(_, _) | DataType::Binary => {
                continue;
            }
            _ => {}
        }
        nulls.insert(name.clone(), json!(column.null_count()));
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

fn format_micros(micros: i64) -> Option<Value> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|time| Value::from(time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
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
        DataType::Utf8 => {
            let values = column.as_string::<i32>();
            (
                compute::min_string(values).map(Value::from),
                compute::max_string(values).map(Value::from),
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let values = column.as_primitive::<TimestampMicrosecondType>();
            let low = compute::min(values).map(|us| us - us.rem_euclid(1_000));
            let high = compute::max(values).map(|us| {
                let rest = us.rem_euclid(1_000);
                if rest == 0 { us } else { us - rest + 1_000 }
            });
            (low.and_then(format_micros), high.and_then(format_micros))
        }
        _ => (None, None),
    }
}
