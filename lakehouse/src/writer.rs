//! The seam between ingestion and storage: rows in, durable rows out.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::schema::TableKind;
use crate::table::LakeTable;

/// Rows for one canonical table; the batch has the table's schema.
#[derive(Debug, Clone)]
pub struct TableRows {
    pub table: TableKind,
    pub batch: RecordBatch,
}

/// Makes rows durable. `write` returns only once every row is on durable storage, so the
/// caller may acknowledge them; an error means none of them should be acknowledged.
#[async_trait]
pub trait TableWriter: Send + Sync + Debug {
    async fn write(&self, rows: Vec<TableRows>) -> Result<()>;
}

/// Commits every write straight to its Delta table: one Parquet file per table and date,
/// one Delta version per table and write.
#[derive(Debug)]
pub struct DirectWriter {
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
}

impl DirectWriter {
    pub fn new(tables: BTreeMap<TableKind, Arc<LakeTable>>) -> DirectWriter {
        DirectWriter { tables }
    }
}

#[async_trait]
impl TableWriter for DirectWriter {
    async fn write(&self, rows: Vec<TableRows>) -> Result<()> {
        for TableRows { table, batch } in rows {
            if batch.schema() != table.schema() {
                return Err(Error::InvalidBatch(format!(
                    "rows for {} do not have its schema",
                    table.name()
                )));
            }
            let lake_table = self
                .tables
                .get(&table)
                .ok_or_else(|| Error::InvalidBatch(format!("no table {}", table.name())))?;
            lake_table.append(&batch, None).await?;
        }
        Ok(())
    }
}
