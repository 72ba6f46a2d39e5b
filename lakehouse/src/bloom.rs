//! Point lookups by id (`trace_id = '…'`) without reading every bloom filter of the table.
//!
//! DataFusion checks a row group's bloom filter only after opening its file, reading the
//! filter from storage for every row group that survives the min/max statistics — and ids
//! are random, so min/max statistics never prune them: a lookup read every filter of the
//! table, each time (80 reads for 10M spans, most of a 60 ms lookup). Files never change
//! once written, so their filters are kept here, in memory, per file and row group, within
//! a byte budget. A scan asks which row groups may hold the wanted ids, drops the files
//! with none, and hands DataFusion a [`ParquetAccessPlan`] that skips the rest.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parking_lot::Mutex;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::error::{Error, Result};

/// Filters of one column of one file, per row group (`None`: that row group has none).
#[derive(Debug)]
struct FileFilters {
    row_groups: Vec<Option<Sbbf>>,
    bytes: usize,
}

/// The bloom filters read so far, by file path and column.
#[derive(Debug)]
pub struct BloomCache {
    budget_bytes: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    files: HashMap<(String, String), Arc<FileFilters>>,
    bytes: usize,
}

/// Bytes read from a file's end at once: footers of Tarn's files fit.
const FOOTER_GUESS: u64 = 64 * 1024;

/// A Parquet file's metadata, read from its footer.
async fn read_footer(
    store: &dyn ObjectStore,
    location: &object_store::path::Path,
    size: u64,
) -> Result<parquet::file::metadata::ParquetMetaData> {
    let bad = |what: &str| Error::storage(format!("{location}: {what}"));
    if size < 12 {
        return Err(bad("too short for a Parquet file"));
    }
    let tail_start = size.saturating_sub(FOOTER_GUESS);
    let tail = store
        .get_range(location, tail_start..size)
        .await
        .map_err(|e| bad(&format!("reading the footer: {e}")))?;
    let end = tail.len();
    if end < 8 || &tail[end - 4..] != b"PAR1" {
        return Err(bad("not a Parquet file (no PAR1 at its end)"));
    }
    let length = u64::from(u32::from_le_bytes(
        tail[end - 8..end - 4]
            .try_into()
            .expect("a 4-byte slice converts to [u8; 4]"),
    ));
    if length + 8 > size {
        return Err(bad("footer length past the file's start"));
    }
    let metadata_start = size - 8 - length;
    let bytes = if metadata_start >= tail_start {
        let offset = usize::try_from(metadata_start - tail_start)
            .map_err(|_| bad("footer offset out of range"))?;
        tail.slice(offset..end - 8)
    } else {
        store
            .get_range(location, metadata_start..size - 8)
            .await
            .map_err(|e| bad(&format!("reading the footer: {e}")))?
    };
    ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| bad(&format!("bad footer: {e}")))
}

/// Files read at once when filling the cache.
const CONCURRENT_READS: usize = 16;

impl BloomCache {
    /// A cache holding at most `budget_bytes` of filters; past it, the oldest contents are
    /// dropped wholesale (a lookup then reads them again, as DataFusion would).
    pub fn new(budget_bytes: usize) -> BloomCache {
        BloomCache {
            budget_bytes,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// Bytes of filters held.
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    fn get(&self, path: &str, column: &str) -> Option<Arc<FileFilters>> {
        self.state
            .lock()
            .files
            .get(&(path.to_owned(), column.to_owned()))
            .cloned()
    }

    fn put(&self, path: &str, column: &str, filters: Arc<FileFilters>) {
        if filters.bytes > self.budget_bytes {
            return;
        }
        let mut state = self.state.lock();
        if state.bytes + filters.bytes > self.budget_bytes {
            state.files.clear();
            state.bytes = 0;
        }
        state.bytes += filters.bytes;
        let previous = state
            .files
            .insert((path.to_owned(), column.to_owned()), filters);
        if let Some(previous) = previous {
            state.bytes = state.bytes.saturating_sub(previous.bytes);
        }
    }

    /// Reads (or finds) `column`'s filters of one file.
    async fn filters(
        &self,
        store: &Arc<dyn ObjectStore>,
        file: &PartitionedFile,
        column: &str,
    ) -> Result<Arc<FileFilters>> {
        let path = file.object_meta.location.as_ref();
        if let Some(found) = self.get(path, column) {
            return Ok(found);
        }
        let location = file.object_meta.location.clone();
        let metadata = read_footer(store.as_ref(), &location, file.object_meta.size).await?;
        let index = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.path().parts() == [column]);
        let mut ranges = Vec::new();
        let mut wanted = Vec::new();
        for (group, row_group) in metadata.row_groups().iter().enumerate() {
            let Some(index) = index else { continue };
            let chunk = row_group.column(index);
            if let (Some(offset), Some(length)) =
                (chunk.bloom_filter_offset(), chunk.bloom_filter_length())
                && let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length))
            {
                ranges.push(offset..offset + length);
                wanted.push(group);
            }
        }
        let mut row_groups: Vec<Option<Sbbf>> = vec![None; metadata.num_row_groups()];
        let mut bytes = 0;
        if !ranges.is_empty() {
            let chunks = store
                .get_ranges(&location, &ranges)
                .await
                .map_err(|e| Error::storage(format!("reading bloom filters of {path}: {e}")))?;
            for (group, chunk) in wanted.into_iter().zip(chunks) {
                // A filter that does not parse is treated as absent: the row group is read.
                if let Ok(filter) = Sbbf::from_bytes(&chunk) {
                    bytes += chunk.len();
                    row_groups[group] = Some(filter);
                }
            }
        }
        let filters = Arc::new(FileFilters { row_groups, bytes });
        self.put(path, column, Arc::clone(&filters));
        Ok(filters)
    }

    /// Reads the filters of `files` not held yet, so the first lookup is as fast as the
    /// next ones.
    pub async fn warm(
        &self,
        store: Arc<dyn ObjectStore>,
        files: Arc<Vec<PartitionedFile>>,
        column: &str,
    ) {
        let store = &store;
        let mut reads = futures::stream::iter(files.iter().cloned())
            .map(|file| async move { self.filters(store, &file, column).await })
            .buffer_unordered(CONCURRENT_READS);
        while let Some(result) = reads.next().await {
            if let Err(error) = result {
                tracing::debug!(%error, "warming bloom filters");
            }
        }
    }

    /// Keeps the files, and within them the row groups, whose filters may hold one of
    /// `values` in `column`. A file whose filters cannot be read is kept whole.
    pub async fn select(
        &self,
        store: Arc<dyn ObjectStore>,
        files: Vec<PartitionedFile>,
        column: &str,
        values: &[String],
    ) -> Vec<PartitionedFile> {
        let store = &store;
        let mut selected: Vec<(usize, PartitionedFile)> = futures::stream::iter(
            files.into_iter().enumerate(),
        )
        .map(|(position, file)| async move {
            match self.filters(store, &file, column).await {
                Ok(filters) => restrict(file, &filters, values).map(|file| (position, file)),
                Err(error) => {
                    tracing::debug!(%error, "bloom filters unreadable: scanning the file whole");
                    Some((position, file))
                }
            }
        })
        .buffer_unordered(CONCURRENT_READS)
        .filter_map(|kept| async move { kept })
        .collect()
        .await;
        selected.sort_by_key(|(position, _)| *position);
        selected.into_iter().map(|(_, file)| file).collect()
    }
}

/// `file` restricted to the row groups whose filter may hold a value, or `None` when no
/// row group may.
fn restrict(
    mut file: PartitionedFile,
    filters: &FileFilters,
    values: &[String],
) -> Option<PartitionedFile> {
    let mut plan = ParquetAccessPlan::new_all(filters.row_groups.len());
    let mut any = false;
    for (group, filter) in filters.row_groups.iter().enumerate() {
        let may_hold = match filter {
            Some(filter) => values.iter().any(|value| filter.check(&value.as_str())),
            None => true,
        };
        if may_hold {
            any = true;
        } else {
            plan.skip(group);
        }
    }
    if !any {
        return None;
    }
    file.extensions.insert(plan);
    Some(file)
}

/// The values `filters` require `column` to equal (`column = 'x'`, `'x' = column`,
/// `column IN ('x', 'y')`), when one of them does.
pub fn wanted_values(filters: &[Expr], column: &str) -> Option<Vec<String>> {
    filters.iter().find_map(|filter| values_of(filter, column))
}

fn values_of(filter: &Expr, column: &str) -> Option<Vec<String>> {
    let is_column = |expr: &Expr| matches!(expr, Expr::Column(c) if c.name == column);
    let text = |expr: &Expr| match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)),
            _,
        ) => Some(text.clone()),
        _ => None,
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_column(left) {
                text(right).map(|v| vec![v])
            } else if is_column(right) {
                text(left).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => values_of(left, column).or_else(|| values_of(right, column)),
        Expr::InList(list) if !list.negated && is_column(&list.expr) => {
            list.list.iter().map(text).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn equality_and_in_lists_name_the_wanted_ids() {
        let filters = [
            col("service_name").eq(lit("a")),
            lit("ab").eq(col("trace_id")),
        ];
        assert_eq!(
            wanted_values(&filters, "trace_id"),
            Some(vec!["ab".to_owned()])
        );
        let within = [col("x").gt(lit(1)).and(col("trace_id").eq(lit("cd")))];
        assert_eq!(
            wanted_values(&within, "trace_id"),
            Some(vec!["cd".to_owned()])
        );
        let list = [col("trace_id").in_list(vec![lit("a"), lit("b")], false)];
        assert_eq!(
            wanted_values(&list, "trace_id"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        // Negations, disjunctions and non-literals say nothing about what must be read.
        let negated = [col("trace_id").in_list(vec![lit("a")], true)];
        assert_eq!(wanted_values(&negated, "trace_id"), None);
        let either = [col("trace_id").eq(lit("a")).or(col("x").eq(lit(1)))];
        assert_eq!(wanted_values(&either, "trace_id"), None);
        let other = [col("span_id").eq(lit("a"))];
        assert_eq!(wanted_values(&other, "trace_id"), None);
    }

    #[test]
    fn row_groups_without_the_id_are_skipped() {
        let mut present = Sbbf::new_with_ndv_fpp(10, 0.01).expect("valid parameters");
        present.insert(&"wanted");
        let absent = Sbbf::new_with_ndv_fpp(10, 0.01).expect("valid parameters");
        let filters = FileFilters {
            row_groups: vec![Some(absent.clone()), Some(present), None],
            bytes: 0,
        };
        let file = PartitionedFile::new("f.parquet", 10);
        let kept = restrict(file.clone(), &filters, &["wanted".to_owned()])
            .expect("row group 1 may hold the id");
        let plan = kept
            .extensions
            .get::<ParquetAccessPlan>()
            .expect("an access plan is attached");
        assert!(!plan.should_scan(0));
        assert!(plan.should_scan(1));
        // No filter: the row group must be read.
        assert!(plan.should_scan(2));
        let none = FileFilters {
            row_groups: vec![Some(absent)],
            bytes: 0,
        };
        assert!(restrict(file, &none, &["wanted".to_owned()]).is_none());
    }

    /// A real Parquet file of 4 row groups (ids `t0-*` .. `t3-*`) in a local object store.
    #[tokio::test]
    async fn lookups_select_row_groups_of_real_files() {
        use arrow::array::{RecordBatch, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        use parquet::schema::types::ColumnPath;

        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "trace_id",
            DataType::Utf8,
            true,
        )]));
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .set_column_bloom_filter_enabled(ColumnPath::from("trace_id"), true)
            .set_column_bloom_filter_fpp(ColumnPath::from("trace_id"), 0.001)
            .build();
        let file = std::fs::File::create(dir.path().join("a.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties)).unwrap();
        for group in 0..4 {
            let ids: Vec<String> = (0..100).map(|i| format!("t{group}-{i}")).collect();
            let batch =
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(ids))])
                    .unwrap();
            writer.write(&batch).unwrap();
            writer.flush().unwrap();
        }
        writer.close().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let size = std::fs::metadata(dir.path().join("a.parquet"))
            .unwrap()
            .len();
        let files = vec![PartitionedFile::new("a.parquet", size)];
        let cache = BloomCache::new(1 << 20);

        let kept = cache
            .select(
                Arc::clone(&store),
                files.clone(),
                "trace_id",
                &["t2-17".to_owned()],
            )
            .await;
        assert_eq!(kept.len(), 1);
        let plan = kept[0].extensions.get::<ParquetAccessPlan>().unwrap();
        assert_eq!(plan.len(), 4);
        let scanned: Vec<usize> = (0..4).filter(|&g| plan.should_scan(g)).collect();
        assert_eq!(scanned, [2]);
        assert!(cache.bytes() > 0, "the filters are kept");

        // Two ids, two row groups; an id nowhere drops the file.
        let kept = cache
            .select(
                Arc::clone(&store),
                files.clone(),
                "trace_id",
                &["t0-1".to_owned(), "t3-99".to_owned()],
            )
            .await;
        let plan = kept[0].extensions.get::<ParquetAccessPlan>().unwrap();
        let scanned: Vec<usize> = (0..4).filter(|&g| plan.should_scan(g)).collect();
        assert_eq!(scanned, [0, 3]);
        let kept = cache
            .select(
                Arc::clone(&store),
                files.clone(),
                "trace_id",
                &["nowhere".to_owned()],
            )
            .await;
        assert!(kept.is_empty());

        // A file that cannot be read is kept whole, not lost.
        let missing = vec![PartitionedFile::new("missing.parquet", 10)];
        let kept = cache
            .select(store, missing, "trace_id", &["t0-1".to_owned()])
            .await;
        assert_eq!(kept.len(), 1);
        assert!(kept[0].extensions.get::<ParquetAccessPlan>().is_none());
    }
}
