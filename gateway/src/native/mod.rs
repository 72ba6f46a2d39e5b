//! The Micromegas native protocol on the native port: `POST /ingestion/insert_process`,
//! `/ingestion/insert_stream`, `/ingestion/insert_block`.
//!
//! Status classes are what the clients expect: 2xx success, 4xx permanent (a malformed
//! body: 400), 5xx retryable (storage or catalog trouble: 503 with `Retry-After`). Every
//! request is idempotent: a process, stream or block sent again is accepted and changes
//! nothing. A block that arrives before its stream or process is kept (in the catalog) and
//! decoded once both are known.

pub mod normalize;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tarn_lakehouse::catalog::{CatalogNote, ProcessRecord, StreamRecord};
use tarn_lakehouse::rows::{Identity, append_opt_str};
use tarn_proto::native::{Block, NativeError, ProcessInfo, StreamDecoder, StreamInfo};

use self::normalize::{AsyncState, Clock, Context, ThreadState, normalize_block};
use crate::ingest::{IngestError, Ingestor};
use crate::otlp::Normalized;
use crate::otlp::convert::append_stream_row;

/// Largest request body, in bytes (upstream's limit too).
pub const MAX_BODY_BYTES: usize = 100 << 20;
/// Largest decompressed payload buffer of one block, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 20;

/// Why a native request failed.
#[derive(Debug, thiserror::Error)]
pub enum NativeFailure {
    #[error("bad request: {0}")]
    Malformed(#[from] NativeError),
    #[error("{0}")]
    Ingest(#[from] IngestError),
}

impl From<tarn_lakehouse::error::Error> for NativeFailure {
    fn from(error: tarn_lakehouse::error::Error) -> NativeFailure {
        NativeFailure::Ingest(error.into())
    }
}

impl IntoResponse for NativeFailure {
    fn into_response(self) -> Response {
        let (status, retry) = match &self {
            NativeFailure::Malformed(_) => (StatusCode::BAD_REQUEST, None),
            NativeFailure::Ingest(IngestError::Busy { retry_after, .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(retry_after.as_secs().max(1)),
            ),
            NativeFailure::Ingest(IngestError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(1))
            }
            NativeFailure::Ingest(IngestError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        };
        let mut response = (status, self.to_string()).into_response();
        if let Some(seconds) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A stream as block decoding needs it.
struct KnownStream {
    record: StreamRecord,
    decoder: Arc<StreamDecoder>,
}

/// The native ingestion service.
pub struct NativeIngest {
    ingestor: Arc<Ingestor>,
    /// Serializes the blocks of one process (their span pairing states).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    streams: Mutex<HashMap<String, Arc<KnownStream>>>,
}

impl std::fmt::Debug for NativeIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeIngest").finish_non_exhaustive()
    }
}

fn now_nanos() -> i64 {
    crate::clock::now_nanos()
}

/// The identity rows of a native stream carry.
fn identity(process: &ProcessRecord, stream_id: &str) -> Identity {
    let property = |key: &str| {
        process
            .properties
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
    };
    Identity {
        process_id: process.process_id.clone(),
        stream_id: stream_id.to_owned(),
        exe: process.exe.clone(),
        username: process.username.clone(),
        computer: process.computer.clone(),
        service_name: property("service.name"),
        service_namespace: property("service.namespace"),
        service_version: property("service.version").or_else(|| property("version")),
        service_instance_id: property("service.instance.id"),
    }
}

fn process_record(info: &ProcessInfo) -> Result<ProcessRecord, NativeError> {
    let start_time = info.start_time_nanos()?;
    let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    let property = |key: &str| info.properties.get(key).filter(|v| !v.is_empty()).cloned();
    Ok(ProcessRecord {
        process_id: info.process_id.clone(),
        exe: text(&info.exe),
        username: text(&info.username),
        realname: text(&info.realname),
        computer: text(&info.computer),
        distro: text(&info.distro),
        cpu_brand: text(&info.cpu_brand),
        tsc_frequency: info.tsc_frequency,
        start_time,
        start_ticks: info.start_ticks,
        parent_process_id: info.parent_process_id.clone(),
        service_name: property("service.name"),
        service_namespace: property("service.namespace"),
        service_version: property("service.version").or_else(|| property("version")),
        service_instance_id: property("service.instance.id"),
        properties: info.properties.clone(),
        source: "native".to_owned(),
        insert_time: now_nanos().div_euclid(1_000),
    })
}

fn append_native_process(normalized: &mut Normalized, record: &ProcessRecord) {
    let rows = &mut normalized.process_rows;
    rows.process_id.append_value(&record.process_id);
    append_opt_str(&mut rows.exe, record.exe.as_deref());
    append_opt_str(&mut rows.username, record.username.as_deref());
    append_opt_str(&mut rows.realname, record.realname.as_deref());
    append_opt_str(&mut rows.computer, record.computer.as_deref());
    append_opt_str(&mut rows.distro, record.distro.as_deref());
    append_opt_str(&mut rows.cpu_brand, record.cpu_brand.as_deref());
    rows.tsc_frequency.append_value(record.tsc_frequency);
    rows.append_start_time(record.start_time);
    rows.start_ticks.append_value(record.start_ticks);
    append_opt_str(
        &mut rows.parent_process_id,
        record.parent_process_id.as_deref(),
    );
    append_opt_str(&mut rows.service_name, record.service_name.as_deref());
    append_opt_str(
        &mut rows.service_namespace,
        record.service_namespace.as_deref(),
    );
    append_opt_str(&mut rows.service_version, record.service_version.as_deref());
    append_opt_str(
        &mut rows.service_instance_id,
        record.service_instance_id.as_deref(),
    );
    for (key, value) in &record.properties {
        rows.properties.key(key).append_str(value);
    }
    rows.properties.finish_row();
    rows.dropped_properties_count.append_null();
    rows.schema_url.append_null();
    rows.entity_refs.append_null();
    rows.source.append_value(&record.source);
    rows.insert_time.append_value(record.insert_time);
    normalized.processes.push(record.clone());
}

fn stream_record(info: &StreamInfo) -> StreamRecord {
    StreamRecord {
        stream_id: info.stream_id.clone(),
        process_id: info.process_id.clone(),
        tags: info.tags.clone(),
        properties: info.properties.clone(),
        dependencies_metadata: Some(tarn_proto::native::encode_udts(&info.dependencies_metadata)),
        objects_metadata: Some(tarn_proto::native::encode_udts(&info.objects_metadata)),
        format: "micromegas-transit".to_owned(),
        insert_time: now_nanos().div_euclid(1_000),
    }
}

impl NativeIngest {
    pub fn new(ingestor: Arc<Ingestor>) -> NativeIngest {
        NativeIngest {
            ingestor,
            locks: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
        }
    }

    fn process_lock(&self, process_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(locks.entry(process_id.to_owned()).or_default())
    }

    /// `insert_process`.
    pub async fn insert_process(&self, body: &[u8]) -> Result<(), NativeFailure> {
        let info = tarn_proto::native::decode_process(body)?;
        let record = process_record(&info)?;
        let mut normalized = Normalized::default();
        append_native_process(&mut normalized, &record);
        self.ingestor.ingest(normalized, "native").await?;
        self.drain_pending(&info.process_id, true).await
    }

    /// `insert_stream`.
    pub async fn insert_stream(&self, body: &[u8]) -> Result<(), NativeFailure> {
        let info = tarn_proto::native::decode_stream(body)?;
        let record = stream_record(&info);
        let mut normalized = Normalized::default();
        append_stream_row(&mut normalized.stream_rows, &record);
        normalized.streams.push(record);
        self.ingestor.ingest(normalized, "native").await?;
        self.drain_pending(&info.stream_id, false).await
    }

    /// `insert_block`.
    pub async fn insert_block(&self, body: &[u8]) -> Result<(), NativeFailure> {
        let block = tarn_proto::native::decode_block(body)?;
        let lake = self.ingestor.lake();
        // The block's process or stream may have been stored while the catalog was
        // failing: once their notes are applied the block is decoded now, not parked.
        lake.apply_pending_notes().await?;
        let catalog = lake.catalog();
        if catalog.block_known(&block.block_id).await? {
            return Ok(());
        }
        let Some((process, stream)) = self.context_of(&block).await? else {
            catalog
                .add_pending_block(&block.block_id, &block.stream_id, &block.process_id, body)
                .await?;
            return Ok(());
        };
        self.ingest_block(&block, &process, &stream).await
    }

    /// The process and stream of a block, when both are known.
    async fn context_of(
        &self,
        block: &Block,
    ) -> Result<Option<(ProcessRecord, Arc<KnownStream>)>, NativeFailure> {
        let catalog = self.ingestor.lake().catalog();
        let Some(process) = catalog.process(&block.process_id).await? else {
            return Ok(None);
        };
        let cached = self
            .streams
            .lock()
            .ok()
            .and_then(|streams| streams.get(&block.stream_id).cloned());
        let stream = match cached {
            Some(stream) => stream,
            None => {
                let Some(record) = catalog.stream(&block.stream_id).await? else {
                    return Ok(None);
                };
                let udts = |bytes: &Option<Vec<u8>>| -> Result<_, NativeError> {
                    match bytes {
                        Some(bytes) => tarn_proto::native::decode_udts(bytes),
                        None => Ok(Vec::new()),
                    }
                };
                let decoder = StreamDecoder::new(
                    udts(&record.dependencies_metadata)?,
                    udts(&record.objects_metadata)?,
                );
                let stream = Arc::new(KnownStream {
                    record,
                    decoder: Arc::new(decoder),
                });
                if let Ok(mut streams) = self.streams.lock() {
                    streams.insert(block.stream_id.clone(), Arc::clone(&stream));
                }
                stream
            }
        };
        Ok(Some((process, stream)))
    }

    /// Decodes a block into rows and makes them durable together with the notes that save
    /// the span states and record the block: a crash between the two cannot store the
    /// block twice when the client retries.
    async fn ingest_block(
        &self,
        block: &Block,
        process: &ProcessRecord,
        stream: &KnownStream,
    ) -> Result<(), NativeFailure> {
        let lock = self.process_lock(&process.process_id);
        let _serialized = lock.lock().await;
        let lake = self.ingestor.lake();
        // A block stored while the catalog was failing is marked as seen, and its span
        // states saved, only once its notes are applied: apply them first, or this block
        // would pair spans from stale states, and a retry of that block store it again.
        lake.apply_pending_notes().await?;
        let catalog = lake.catalog();
        if catalog.block_known(&block.block_id).await? {
            return Ok(());
        }
        let thread_key = format!("thread:{}", block.stream_id);
        let async_key = format!("async:{}", block.process_id);
        let (thread_version, thread_text) = catalog
            .span_state(&thread_key)
            .await?
            .unwrap_or((0, String::new()));
        let (async_version, async_text) = catalog
            .span_state(&async_key)
            .await?
            .unwrap_or((0, String::new()));
        let mut thread: ThreadState = serde_json::from_str(&thread_text).unwrap_or_default();
        let mut async_spans: AsyncState = serde_json::from_str(&async_text).unwrap_or_default();
        let identity = identity(process, &block.stream_id);
        let mut thread_properties = Vec::new();
        for (key, name) in [("thread-id", "thread.id"), ("thread-name", "thread.name")] {
            if let Some(value) = stream.record.properties.get(key) {
                thread_properties.push((name.to_owned(), value.clone()));
            }
        }
        let context = Context {
            identity: &identity,
            clock: Clock::new(process, block),
            insert_time_micros: now_nanos().div_euclid(1_000),
            thread: thread_properties,
        };
        let now_secs = now_nanos().div_euclid(1_000_000_000);
        let rows = normalize_block(
            &stream.decoder,
            block,
            &context,
            &mut thread,
            &mut async_spans,
            MAX_PAYLOAD_BYTES,
            now_secs,
        )?;
        if rows.images > 0 || rows.other > 0 {
            tracing::debug!(images = rows.images, other = rows.other, block = %block.block_id, "events not stored");
        }
        let mut normalized = Normalized::default();
        rows.into_normalized(&mut normalized);
        let states = [
            (
                thread_key,
                thread_version,
                thread_text,
                serde_json::to_string(&thread),
            ),
            (
                async_key,
                async_version,
                async_text,
                serde_json::to_string(&async_spans),
            ),
        ];
        let mut notes = Vec::with_capacity(3);
        for (key, version, before, after) in states {
            let state =
                after.map_err(|e| IngestError::Internal(format!("encoding span state: {e}")))?;
            if state != before {
                notes.push(CatalogNote::SpanState {
                    key,
                    version,
                    state,
                });
            }
        }
        // Last: a block is marked as seen only with everything it changed.
        notes.push(CatalogNote::Block {
            block_id: block.block_id.clone(),
            stream_id: block.stream_id.clone(),
            process_id: block.process_id.clone(),
            object_offset: block.object_offset,
            nb_objects: i64::from(block.nb_objects),
        });
        self.ingestor
            .ingest_noted(normalized, "native", notes)
            .await?;
        Ok(())
    }

    /// Ingests the pending blocks of a process or stream that can now be decoded.
    async fn drain_pending(&self, id: &str, by_process: bool) -> Result<(), NativeFailure> {
        let lake = self.ingestor.lake();
        // The process or stream just written is in the catalog only once its note is
        // applied; if the catalog refuses, the client's retry comes back here.
        lake.apply_pending_notes().await?;
        let catalog = lake.catalog();
        let mut blocks = Vec::new();
        for (block_id, body) in catalog.pending_blocks(id, by_process).await? {
            match tarn_proto::native::decode_block(&body) {
                Ok(block) => blocks.push(block),
                Err(error) => {
                    tracing::warn!(block_id, %error, "a pending block does not decode; dropping it");
                    catalog.remove_pending_block(&block_id).await?;
                }
            }
        }
        // In the order the producer wrote them, so spans pair without holding.
        blocks.sort_by_key(|block| (block.stream_id.clone(), block.object_offset));
        for block in blocks {
            if let Some((process, stream)) = self.context_of(&block).await? {
                self.ingest_block(&block, &process, &stream).await?;
                catalog.remove_pending_block(&block.block_id).await?;
            }
        }
        Ok(())
    }
}

/// The native routes.
pub fn routes(native: Arc<NativeIngest>) -> Router {
    Router::new()
        .route("/ingestion/insert_process", post(insert_process))
        .route("/ingestion/insert_stream", post(insert_stream))
        .route("/ingestion/insert_block", post(insert_block))
        .with_state(native)
}

async fn read(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body too large or unreadable: {e}"),
            )
                .into_response()
        })
}

fn respond(outcome: Result<(), NativeFailure>) -> Response {
    match outcome {
        Ok(()) => StatusCode::OK.into_response(),
        Err(failure) => {
            if !matches!(failure, NativeFailure::Malformed(_)) {
                tracing::warn!(%failure, "native request failed");
            }
            failure.into_response()
        }
    }
}

/// Counts a native request: its bytes and how it ended.
fn counted(kind: &'static str, bytes: usize, response: Response) -> Response {
    crate::metrics::received("native", kind, bytes);
    let outcome = crate::metrics::outcome_of_status(response.status().as_u16());
    crate::metrics::request("native", kind, outcome);
    response
}

async fn insert_process(State(native): State<Arc<NativeIngest>>, body: Body) -> Response {
    match read(body).await {
        Ok(bytes) => counted(
            "process",
            bytes.len(),
            respond(native.insert_process(&bytes).await),
        ),
        Err(response) => counted("process", 0, response),
    }
}

async fn insert_stream(State(native): State<Arc<NativeIngest>>, body: Body) -> Response {
    match read(body).await {
        Ok(bytes) => counted(
            "stream",
            bytes.len(),
            respond(native.insert_stream(&bytes).await),
        ),
        Err(response) => counted("stream", 0, response),
    }
}

async fn insert_block(State(native): State<Arc<NativeIngest>>, body: Body) -> Response {
    match read(body).await {
        Ok(bytes) if bytes.is_empty() => counted(
            "block",
            0,
            (StatusCode::BAD_REQUEST, "bad request: empty block").into_response(),
        ),
        Ok(bytes) => counted(
            "block",
            bytes.len(),
            respond(native.insert_block(&bytes).await),
        ),
        Err(response) => counted("block", 0, response),
    }
}
