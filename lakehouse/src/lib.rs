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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::catalog::{Catalog, CatalogNote, TableEntry};
use crate::error::{Error, Result};
use crate::schema::TableKind;
use crate::table::LakeTable;
use crate::wal::{Wal, WalOptions};
use crate::writer::{DirectWriter, FreshSink, Limits, TableRows, TableWriter, WalWriter};

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
    /// Catalog notes whose rows are durable but which the catalog has not taken yet, in
    /// the order written.
    pending_notes: tokio::sync::Mutex<VecDeque<PendingNotes>>,
}

/// Notes to apply, and the WAL record that keeps them. They were tried before, perhaps in
/// part (before a crash, or before the catalog failed midway), so a span state found moved
/// on may be their own doing: no warning then.
#[derive(Debug)]
struct PendingNotes {
    seq: Option<u64>,
    notes: Vec<CatalogNote>,
}

fn warn_moved(keys: &[String]) {
    for key in keys {
        tracing::warn!(
            key,
            "span state changed by another gateway; spans may pair twice"
        );
    }
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
        let mut replayed_notes = VecDeque::new();
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
                for (seq, bytes) in &replay.notes {
                    match serde_json::from_slice::<Vec<CatalogNote>>(bytes) {
                        Ok(notes) => replayed_notes.push_back(PendingNotes {
                            seq: Some(*seq),
                            notes,
                        }),
                        // The record's CRC held: only a bug writes such a note. Keeping
                        // it would pin the WAL forever.
                        Err(error) => {
                            tracing::error!(seq, %error, "a WAL note does not decode; skipping it");
                            wal.note_applied(*seq);
                        }
                    }
                }
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
        let lake = Lakehouse {
            catalog,
            root,
            tables,
            writer,
            storage_options: config.storage_options,
            wal,
            flush: config.flush,
            pending_notes: tokio::sync::Mutex::new(replayed_notes),
        };
        if let Err(error) = lake.apply_pending_notes().await {
            tracing::warn!(%error, "catalog notes from the WAL not applied yet; will retry");
        }
        Ok(lake)
    }

    /// Writes rows and the catalog notes that belong to them. When this returns `Ok`, the
    /// rows are durable and so are the notes: applied already, or (if the catalog failed
    /// just then) applied by the next [`Lakehouse::apply_pending_notes`] that succeeds, at
    /// the latest when the lake is next opened. Without a WAL a note the catalog refuses
    /// is kept in memory only.
    pub async fn write_noted(&self, rows: Vec<TableRows>, notes: Vec<CatalogNote>) -> Result<()> {
        if notes.is_empty() {
            return self.writer.write(rows).await;
        }
        let encoded = serde_json::to_vec(&notes)
            .map_err(|e| Error::storage(format!("encoding catalog notes: {e}")))?;
        let seq = self.writer.write_noted(rows, Some(encoded)).await?;
        match self.catalog.apply_notes(&notes).await {
            Ok(moved) => {
                self.applied(seq);
                warn_moved(&moved);
            }
            Err(error) => {
                tracing::warn!(%error, "catalog notes of durable rows not applied; will retry");
                self.pending_notes
                    .lock()
                    .await
                    .push_back(PendingNotes { seq, notes });
            }
        }
        Ok(())
    }

    /// Applies the notes left over by a failed catalog write or found in the WAL, oldest
    /// first; stops at the first the catalog refuses.
    pub async fn apply_pending_notes(&self) -> Result<()> {
        let mut pending = self.pending_notes.lock().await;
        while let Some(front) = pending.front() {
            self.catalog.apply_notes(&front.notes).await?;
            self.applied(front.seq);
            pending.pop_front();
        }
        Ok(())
    }

    fn applied(&self, seq: Option<u64>) {
        if let (Some(wal), Some(seq)) = (&self.wal, seq) {
            wal.note_applied(seq);
        }
    }

    /// Commits every table's fresh rows now; returns the rows committed.
    pub async fn flush_all(&self) -> Result<usize> {
        let mut rows = 0;
        for table in self.tables.values() {
            rows += table.flush().await?;
        }
        if let Err(error) = self.apply_pending_notes().await {
            tracing::warn!(%error, "catalog notes not applied yet; the WAL keeps them");
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
        if let Err(error) = self.apply_pending_notes().await {
            tracing::warn!(%error, "catalog notes not applied yet; will retry");
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
