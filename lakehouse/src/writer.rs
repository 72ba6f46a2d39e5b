//! The seam between ingestion and storage: rows in, durable rows out.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::schema::TableKind;
use crate::table::LakeTable;
use crate::wal::{DurableSink, Wal, WalRecord, encode_batch};

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
    async fn write(&self, rows: Vec<TableRows>) -> Result<()> {
        self.write_noted(rows, None).await.map(|_| ())
    }

    /// Writes rows and, with them, a note (a [`crate::catalog::CatalogNote`] list, encoded)
    /// that must survive exactly when they do; returns the note's WAL sequence number. A
    /// writer without a WAL keeps no note (and returns `None`): its rows are committed when
    /// it returns, and the caller applies the note itself.
    async fn write_noted(&self, rows: Vec<TableRows>, note: Option<Vec<u8>>)
    -> Result<Option<u64>>;
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
    async fn write_noted(
        &self,
        rows: Vec<TableRows>,
        _note: Option<Vec<u8>>,
    ) -> Result<Option<u64>> {
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
        Ok(None)
    }
}

/// Sends durable WAL records to their table's fresh buffer.
#[derive(Debug)]
pub struct FreshSink {
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
}

impl FreshSink {
    pub fn new(tables: BTreeMap<TableKind, Arc<LakeTable>>) -> FreshSink {
        FreshSink { tables }
    }
}

impl DurableSink for FreshSink {
    fn durable(&self, record: WalRecord) {
        if let Some(table) = self.tables.get(&record.table) {
            table.add_fresh(record.seq, record.batch);
        }
    }
}

/// Bounds on what the gateway holds before it says "try later".
#[derive(Debug, Clone)]
pub struct Limits {
    /// Fresh (acknowledged, uncommitted) rows in memory, all tables together.
    pub max_fresh_bytes: usize,
    /// WAL segments on disk.
    pub max_wal_bytes: u64,
    /// The delay suggested to refused clients.
    pub retry_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_fresh_bytes: 1 << 30,
            max_wal_bytes: 8 << 30,
            retry_after: Duration::from_secs(2),
        }
    }
}

/// Acknowledges rows once they are in the fsync'd WAL; a flusher commits them to Delta
/// later. Refuses with [`Error::Busy`] past its memory or disk bounds.
#[derive(Debug)]
pub struct WalWriter {
    wal: Arc<Wal>,
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
    limits: Limits,
}

impl WalWriter {
    pub fn new(
        wal: Arc<Wal>,
        tables: BTreeMap<TableKind, Arc<LakeTable>>,
        limits: Limits,
    ) -> WalWriter {
        WalWriter {
            wal,
            tables,
            limits,
        }
    }

    fn fresh_bytes(&self) -> usize {
        self.tables.values().map(|table| table.fresh_bytes()).sum()
    }
}

#[async_trait]
impl TableWriter for WalWriter {
    async fn write_noted(
        &self,
        rows: Vec<TableRows>,
        note: Option<Vec<u8>>,
    ) -> Result<Option<u64>> {
        let fresh = self.fresh_bytes();
        if fresh > self.limits.max_fresh_bytes {
            return Err(Error::Busy {
                reason: format!(
                    "{fresh} bytes of rows wait to be committed (limit {}); storage is slower than ingest",
                    self.limits.max_fresh_bytes
                ),
                retry_after: self.limits.retry_after,
            });
        }
        let wal_bytes = self.wal.bytes();
        if wal_bytes > self.limits.max_wal_bytes {
            return Err(Error::Busy {
                reason: format!(
                    "the WAL holds {wal_bytes} bytes (limit {})",
                    self.limits.max_wal_bytes
                ),
                retry_after: self.limits.retry_after,
            });
        }
        let mut records = Vec::with_capacity(rows.len());
        for TableRows { table, batch } in rows {
            if batch.schema() != table.schema() {
                return Err(Error::InvalidBatch(format!(
                    "rows for {} do not have its schema",
                    table.name()
                )));
            }
            if batch.num_rows() == 0 {
                continue;
            }
            let bytes = encode_batch(&batch)?;
            records.push((table, batch, bytes));
        }
        if records.is_empty() && note.is_none() {
            return Ok(None);
        }
        Ok(self.wal.append_noted(records, note).await?.1)
    }
}
