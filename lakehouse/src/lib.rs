//! Tarn's lakehouse: the canonical tables as Delta tables on object storage, the catalog
//! (PostgreSQL or SQLite), and the SQL engine over them.
//!
//! The lakehouse knows no wire format and opens no socket: the gateway normalizes what it
//! receives into rows of the canonical tables ([`rows`]), hands them to a
//! [`writer::TableWriter`], and answers queries through [`query::QueryEngine`].

pub mod bloom;
pub mod catalog;
pub mod error;
pub mod histogram;
pub mod maintain;
pub mod metrics;
pub mod micromegas;
pub mod percentile;
pub mod permute;
pub mod query;
pub mod rows;
pub mod schema;
pub mod table;
pub mod udf;
pub mod wal;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::catalog::{Catalog, TableEntry};
use crate::error::{Error, Result};
use crate::schema::TableKind;
use crate::table::LakeTable;
use crate::wal::{Wal, WalOptions};
use crate::writer::{DirectWriter, FreshSink, Limits, TableWriter, WalWriter};

/// Where the lake and its catalog live.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// Root of the lake: `file:///abs/path`, `s3://bucket/prefix`, `memory://`, ...
    pub object_store_url: String,
    /// Options for the object store (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...).
    pub storage_options: HashMap<String, String>,
    /// `postgres://...` or `sqlite://...`.
    pub catalog_url: String,
    /// Directory of the write-ahead log. Without one, every write commits to Delta before
    /// returning (slow, but durable too).
    pub wal_dir: Option<PathBuf>,
    /// Memory and disk bounds of the write path.
    pub limits: Limits,
    /// When fresh rows are committed to Delta.
    pub flush: FlushPolicy,
}

/// When the flusher commits a table's fresh rows.
#[derive(Debug, Clone)]
pub struct FlushPolicy {
    /// Commit rows once the oldest has waited this long.
    pub interval: Duration,
    /// Commit rows once this many bytes wait, whatever their age.
    pub bytes: usize,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            interval: Duration::from_secs(10),
            bytes: 128 << 20,
        }
    }
}

impl LakeConfig {
    /// Embedded defaults: no WAL, default limits and flushing.
    pub fn new(object_store_url: impl Into<String>, catalog_url: impl Into<String>) -> LakeConfig {
        LakeConfig {
            object_store_url: object_store_url.into(),
            storage_options: HashMap::new(),
            catalog_url: catalog_url.into(),
            wal_dir: None,
            limits: Limits::default(),
            flush: FlushPolicy::default(),
        }
    }
}

/// An open lakehouse: catalog, tables, writer.
#[derive(Debug)]
pub struct Lakehouse {
    catalog: Catalog,
    root: Url,
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
    writer: Arc<dyn TableWriter>,
    storage_options: HashMap<String, String>,
    wal: Option<Arc<Wal>>,
    flush: FlushPolicy,
}

/// The URL of a table under the lake root.
pub fn table_url(root: &Url, kind: TableKind) -> Result<Url> {
    let mut base = root.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(&format!("{}/", kind.name()))
        .map_err(|e| Error::Config(format!("bad lake root {root}: {e}")))
}

impl Lakehouse {
    /// Connects the catalog, opens (or creates) every canonical table and registers it,
    /// and replays the WAL: rows it holds that Delta does not are fresh again, to be
    /// committed by the flusher.
    pub async fn open(config: LakeConfig) -> Result<Lakehouse> {
        deltalake::aws::register_handlers(None);
        let root = Url::parse(&config.object_store_url).map_err(|e| {
            Error::Config(format!(
                "bad object store URL {}: {e}",
                config.object_store_url
            ))
        })?;
        let catalog = Catalog::connect(&config.catalog_url).await?;
        let app_id = config.wal_dir.as_deref().map(wal::wal_id).transpose()?;
        let mut tables = BTreeMap::new();
        for kind in TableKind::ALL {
            let url = table_url(&root, kind)?;
            let table = LakeTable::open_or_create(
                kind,
                url.clone(),
                &config.storage_options,
                app_id.clone(),
            )
            .await?;
            catalog
                .register_table(&TableEntry {
                    name: kind.name().to_owned(),
                    uri: url.to_string(),
                    schema_version: kind.schema_version(),
                })
                .await?;
            tables.insert(kind, Arc::new(table));
        }
        let (writer, wal): (Arc<dyn TableWriter>, _) = match &config.wal_dir {
            Some(dir) => {
                let sink = Arc::new(FreshSink::new(tables.clone()));
                let committed = tables
                    .values()
                    .map(|table| table.committed_seq())
                    .max()
                    .unwrap_or(0);
                let options = WalOptions {
                    min_next_seq: committed.saturating_add(1),
                    ..WalOptions::default()
                };
                let (wal, replay) = Wal::open(dir, options, sink)?;
                let mut replayed = 0;
                for record in replay.records {
                    if let Some(table) = tables.get(&record.table)
                        && record.seq > table.committed_seq()
                    {
                        replayed += record.batch.num_rows();
                        table.add_fresh(record.seq, record.batch);
                    }
                }
                tracing::info!(
                    wal = %dir.display(),
                    replayed_rows = replayed,
                    truncated_bytes = replay.truncated_bytes,
                    "write-ahead log opened"
                );
                let wal = Arc::new(wal);
                let writer = Arc::new(WalWriter::new(
                    Arc::clone(&wal),
                    tables.clone(),
                    config.limits.clone(),
                ));
                (writer, Some(wal))
            }
            None => (Arc::new(DirectWriter::new(tables.clone())), None),
        };
        Ok(Lakehouse {
            catalog,
            root,
            tables,
            writer,
            storage_options: config.storage_options,
            wal,
            flush: config.flush,
        })
    }

    /// Commits every table's fresh rows now; returns the rows committed.
    pub async fn flush_all(&self) -> Result<usize> {
        let mut rows = 0;
        for table in self.tables.values() {
            rows += table.flush().await?;
        }
        self.release_wal()?;
        Ok(rows)
    }

    /// Flushes the tables that are due by the policy; errors are logged and retried on the
    /// next round (the rows stay fresh and durable meanwhile).
    pub async fn flush_due(&self) -> usize {
        let mut rows = 0;
        for table in self.tables.values() {
            let due = table.fresh_bytes() >= self.flush.bytes
                || table
                    .fresh_age()
                    .is_some_and(|age| age >= self.flush.interval);
            if due {
                match table.flush().await {
                    Ok(committed) => rows += committed,
                    Err(error) => {
                        tracing::warn!(table = table.kind().name(), %error, "commit failed; will retry")
                    }
                }
            }
        }
        if rows > 0
            && let Err(error) = self.release_wal()
        {
            tracing::warn!(%error, "cannot release WAL segments");
        }
        rows
    }

    fn release_wal(&self) -> Result<()> {
        if let Some(wal) = &self.wal {
            let committed = self
                .tables
                .iter()
                .map(|(kind, table)| (*kind, table.committed_seq()))
                .collect();
            wal.release(&committed)?;
        }
        Ok(())
    }

    /// Runs the flusher until `stop` turns true, then commits what is left.
    pub async fn run_flusher(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.flush_due().await;
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        if let Err(error) = self.flush_all().await {
            tracing::error!(%error, "final commit failed; the WAL keeps the rows for the next start");
        }
    }

    /// Bytes of WAL segments on disk (0 without a WAL).
    pub fn wal_bytes(&self) -> u64 {
        self.wal.as_ref().map_or(0, |wal| wal.bytes())
    }

    /// Stops the WAL writer (after what it was given is written).
    pub fn close(&self) {
        if let Some(wal) = &self.wal {
            wal.close();
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    /// The writer ingestion hands rows to.
    pub fn writer(&self) -> &dyn TableWriter {
        self.writer.as_ref()
    }

    /// The canonical tables.
    pub fn tables(&self) -> &BTreeMap<TableKind, Arc<LakeTable>> {
        &self.tables
    }

    /// A query engine over the lake.
    pub fn query_engine(&self) -> query::QueryEngine {
        query::QueryEngine::new(self.tables.clone())
    }
}
