//! The ingest path shared by every protocol: normalized rows in, durable rows out.
//!
//! Each front end decodes its wire format and normalizes it (`otlp`, later `native`);
//! [`Ingestor::ingest`] then records new processes and hands the rows to the lakehouse
//! writer, returning only once they are durable, so the caller may acknowledge.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use tarn_lakehouse::Lakehouse;
use tarn_lakehouse::catalog::CatalogNote;
use tarn_lakehouse::error::Error as LakeError;
use tarn_lakehouse::schema::TableKind;
use tarn_lakehouse::writer::TableRows;

use crate::otlp::{Normalized, Rejections};

/// Why rows could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Full for now: the client should retry after the delay.
    #[error("busy: {reason}")]
    Busy {
        reason: String,
        retry_after: Duration,
    },
    /// A dependency (object store, catalog) failed: retryable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug: the rows do not fit their table.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<LakeError> for IngestError {
    fn from(error: LakeError) -> IngestError {
        match error {
            LakeError::Busy {
                reason,
                retry_after,
            } => IngestError::Busy {
                reason,
                retry_after,
            },
            LakeError::Catalog(_) | LakeError::Storage(_) => {
                IngestError::Unavailable(error.to_string())
            }
            other => IngestError::Internal(other.to_string()),
        }
    }
}

/// What [`Ingestor::novelty`] looks up.
#[derive(Debug, Clone, Copy)]
enum Entity {
    Process,
    Stream,
}

/// Takes normalized rows and makes them durable.
#[derive(Debug)]
pub struct Ingestor {
    lake: Arc<Lakehouse>,
    /// Process and stream ids this gateway knows are in the catalog and in the tables.
    known: Mutex<HashSet<String>>,
    /// Locks taken, by hash of the id, while a request writes a process or stream this
    /// gateway has not seen yet.
    claims: Vec<tokio::sync::Mutex<()>>,
    /// Bytes of requests being decoded, normalized or written right now.
    inflight_bytes: AtomicUsize,
    max_inflight_bytes: usize,
}

/// A request's share of the in-flight budget, returned when dropped.
#[derive(Debug)]
pub struct Admission<'a> {
    ingestor: &'a Ingestor,
    bytes: usize,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.ingestor
            .inflight_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Claim locks for new processes and streams: more than the requests that can bring new
/// ones at once, few enough to cost nothing.
const CLAIM_STRIPES: usize = 64;

/// How long a client refused for lack of memory should wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Ingestor {
    /// An ingestor that holds at most `max_inflight_bytes` of requests in memory at once
    /// (a single request is always admitted when nothing else is in flight).
    pub fn new(lake: Arc<Lakehouse>, max_inflight_bytes: usize) -> Ingestor {
        Ingestor {
            lake,
            known: Mutex::new(HashSet::new()),
            claims: (0..CLAIM_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            inflight_bytes: AtomicUsize::new(0),
            max_inflight_bytes,
        }
    }

    /// Bytes of requests in flight now.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes.load(Ordering::Acquire)
    }

    /// The lakehouse rows go to.
    pub fn lake(&self) -> &Arc<Lakehouse> {
        &self.lake
    }

    /// Reserves room for a request of `bytes` (decompressed), or refuses it with a
    /// retryable "busy" when the budget is spent: memory stays bounded however many
    /// clients send at once.
    pub fn admit(&self, bytes: usize) -> Result<Admission<'_>, IngestError> {
        let mut current = self.inflight_bytes.load(Ordering::Acquire);
        loop {
            if current != 0 && current.saturating_add(bytes) > self.max_inflight_bytes {
                return Err(IngestError::Busy {
                    reason: format!(
                        "gateway is at its in-flight limit of {} bytes",
                        self.max_inflight_bytes
                    ),
                    retry_after: BUSY_RETRY_AFTER,
                });
            }
            match self.inflight_bytes.compare_exchange_weak(
                current,
                current.saturating_add(bytes),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Admission {
                        ingestor: self,
                        bytes,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn is_known(&self, key: &str) -> bool {
        self.known
            .lock()
            .map(|known| known.contains(key))
            .unwrap_or(false)
    }

    fn remember(&self, key: String) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(key);
        }
    }

    /// Holds the claim stripes of `ids` (in ascending order, so two requests cannot each
    /// hold what the other waits for) until the guards are dropped.
    async fn claim(&self, ids: &[&str]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut stripes: Vec<usize> = ids
            .iter()
            .map(|id| {
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(id, &mut hasher);
                // The remainder is below the stripe count, which fits a usize.
                (std::hash::Hasher::finish(&hasher) % self.claims.len() as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.claims[stripe].lock().await);
        }
        guards
    }

    /// Which of `keys` (process or stream ids) are new: neither remembered by this
    /// gateway nor in the catalog.
    async fn novelty(&self, keys: &[String], entity: Entity) -> Result<Vec<bool>, IngestError> {
        let catalog = self.lake.catalog();
        let mut new = Vec::with_capacity(keys.len());
        for key in keys {
            let is_new = if self.is_known(key) {
                false
            } else if match entity {
                Entity::Process => catalog.process(key).await?.is_some(),
                Entity::Stream => catalog.stream(key).await?.is_some(),
            } {
                self.remember(key.clone());
                false
            } else {
                true
            };
            new.push(is_new);
        }
        Ok(new)
    }

    /// Writes the rows; returns the records rejected during normalization.
    ///
    /// A process (or stream) is written to `processes` (`streams`) together with the first
    /// rows that name it, and recorded in the catalog by a note that is durable with them:
    /// a retry after a crash finds it recorded and writes no second row. Requests of this
    /// gateway that bring the same new process wait for the first to write it. Two
    /// gateways seeing a new process at the same moment may both write it (identical rows,
    /// folded by compaction).
    pub async fn ingest(
        &self,
        normalized: Normalized,
        protocol: &'static str,
    ) -> Result<Rejections, IngestError> {
        self.ingest_noted(normalized, protocol, Vec::new()).await
    }

    /// [`Ingestor::ingest`], with catalog notes made durable together with the rows (see
    /// [`Lakehouse::write_noted`]).
    #[tracing::instrument(name = "ingest", skip_all, fields(protocol = protocol))]
    pub async fn ingest_noted(
        &self,
        mut normalized: Normalized,
        protocol: &'static str,
        notes: Vec<CatalogNote>,
    ) -> Result<Rejections, IngestError> {
        let mut rows = Vec::with_capacity(normalized.batches.len() + 2);
        let mut records: Vec<(&'static str, usize)> = Vec::new();
        for (table, batch) in normalized.batches.drain(..) {
            let batch =
                batch.map_err(|e| IngestError::Internal(format!("{}: {e}", table.name())))?;
            if let Some(signal) = crate::metrics::signal_of(table) {
                records.push((signal, batch.num_rows()));
            }
            rows.push(TableRows { table, batch });
        }
        let process_ids: Vec<String> = normalized
            .processes
            .iter()
            .map(|p| p.process_id.clone())
            .collect();
        let stream_ids: Vec<String> = normalized
            .streams
            .iter()
            .map(|s| s.stream_id.clone())
            .collect();
        // Ids this gateway has not seen yet are claimed until their rows are written, so
        // that concurrent requests naming them do not each find them new.
        let unseen: Vec<&str> = process_ids
            .iter()
            .chain(&stream_ids)
            .filter(|id| !self.is_known(id))
            .map(String::as_str)
            .collect();
        let _claims = self.claim(&unseen).await;
        let new_processes = self.novelty(&process_ids, Entity::Process).await?;
        let new_streams = self.novelty(&stream_ids, Entity::Stream).await?;
        if new_processes.iter().any(|new| *new) {
            let batch = normalized
                .process_rows
                .finish()
                .and_then(|batch| {
                    filter_record_batch(&batch, &BooleanArray::from(new_processes.clone()))
                })
                .map_err(|e| IngestError::Internal(format!("processes: {e}")))?;
            rows.push(TableRows {
                table: TableKind::Processes,
                batch,
            });
        }
        if new_streams.iter().any(|new| *new) {
            let batch = normalized
                .stream_rows
                .finish()
                .and_then(|batch| {
                    filter_record_batch(&batch, &BooleanArray::from(new_streams.clone()))
                })
                .map_err(|e| IngestError::Internal(format!("streams: {e}")))?;
            rows.push(TableRows {
                table: TableKind::Streams,
                batch,
            });
        }
        // The catalog learns of new processes and streams first, then whatever the caller
        // adds (a native block, recorded last).
        let mut all_notes = Vec::with_capacity(notes.len() + 2);
        for (process, new) in normalized.processes.iter().zip(&new_processes) {
            if *new {
                all_notes.push(CatalogNote::Process(process.clone()));
            }
        }
        for (stream, new) in normalized.streams.iter().zip(&new_streams) {
            if *new {
                all_notes.push(CatalogNote::Stream(stream.clone()));
            }
        }
        all_notes.extend(notes);
        if !rows.is_empty() || !all_notes.is_empty() {
            self.lake.write_noted(rows, all_notes).await?;
            for (signal, count) in records {
                crate::metrics::ingested(protocol, signal, count);
            }
        }
        for (id, new) in process_ids.into_iter().zip(new_processes) {
            if new {
                self.remember(id);
            }
        }
        for (id, new) in stream_ids.into_iter().zip(new_streams) {
            if new {
                self.remember(id);
            }
        }
        Ok(normalized.rejections)
    }
}
