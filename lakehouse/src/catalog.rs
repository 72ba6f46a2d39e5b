//! The catalog: what several gateways share, in PostgreSQL (production) or SQLite (the
//! embedded single-node default), behind one interface. Delta's own log stays the source
//! of truth for table contents; the catalog holds the table registry and the processes
//! seen, and (as later migrations add them) streams, API keys and maintenance leases.
//!
//! Both backends run the same SQL text: it sticks to what SQLite and PostgreSQL share
//! (`$N` placeholders, `ON CONFLICT`, `TEXT`/`BIGINT` columns). Each backend has its own
//! migration directory so either can diverge when it must.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::error::{Error, Result};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement on whichever pool backs the catalog.
macro_rules! on_pool {
    ($catalog:expr, $pool:ident => $body:expr) => {
        match &$catalog.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// A handle on the catalog database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: Pool,
    description: String,
}

/// A catalog change that belongs to rows being written: it is applied once they are
/// durable, and travels in the WAL with them so that a crash in between cannot leave the
/// rows stored and the change lost (a native block stored but not marked as seen, which
/// the client's retry would store again). Applying a note twice changes nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum CatalogNote {
    /// A process was written to `processes` (see [`Catalog::record_process`]).
    Process(ProcessRecord),
    /// A stream was written to `streams` (see [`Catalog::record_stream`]).
    Stream(StreamRecord),
    /// A span pairing state moves from `version` to `state` (see [`Catalog::save_span_state`]).
    SpanState {
        key: String,
        version: i64,
        state: String,
    },
    /// A native block was ingested (see [`Catalog::record_block`]).
    Block {
        block_id: String,
        stream_id: String,
        process_id: String,
        object_offset: i64,
        nb_objects: i64,
    },
}

/// A registered canonical table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub name: String,
    pub uri: String,
    pub schema_version: i64,
}

/// A process: a native process, or the resource of OTLP data.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRecord {
    pub process_id: String,
    pub exe: Option<String>,
    pub username: Option<String>,
    pub realname: Option<String>,
    pub computer: Option<String>,
    pub distro: Option<String>,
    pub cpu_brand: Option<String>,
    pub tsc_frequency: i64,
    /// Unix nanoseconds.
    pub start_time: i64,
    pub start_ticks: i64,
    pub parent_process_id: Option<String>,
    pub service_name: Option<String>,
    pub service_namespace: Option<String>,
    pub service_version: Option<String>,
    pub service_instance_id: Option<String>,
    pub properties: BTreeMap<String, String>,
    /// `otlp` or `native`.
    pub source: String,
    /// Unix microseconds.
    pub insert_time: i64,
}

/// A stream: a native stream, or one signal of an OTLP resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamRecord {
    pub stream_id: String,
    pub process_id: String,
    pub tags: Vec<String>,
    pub properties: BTreeMap<String, String>,
    /// Native type descriptions (CBOR), as the producer sent them.
    pub dependencies_metadata: Option<Vec<u8>>,
    pub objects_metadata: Option<Vec<u8>>,
    /// `micromegas-transit` or `otlp`.
    pub format: String,
    /// Unix microseconds.
    pub insert_time: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct StreamRow {
    stream_id: String,
    process_id: String,
    tags: String,
    properties: String,
    dependencies_metadata: Option<Vec<u8>>,
    objects_metadata: Option<Vec<u8>>,
    format: String,
    insert_time: i64,
}

/// An API key stored in the catalog (its hash, never the key).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub name: String,
    pub key_hash: String,
    #[sqlx(rename = "can_ingest")]
    pub ingest: bool,
    #[sqlx(rename = "can_query")]
    pub query: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A `processes` row as stored (properties as a JSON object).
#[derive(Debug, sqlx::FromRow)]
struct ProcessRow {
    process_id: String,
    exe: Option<String>,
    username: Option<String>,
    realname: Option<String>,
    computer: Option<String>,
    distro: Option<String>,
    cpu_brand: Option<String>,
    tsc_frequency: i64,
    start_time: i64,
    start_ticks: i64,
    parent_process_id: Option<String>,
    service_name: Option<String>,
    service_namespace: Option<String>,
    service_version: Option<String>,
    service_instance_id: Option<String>,
    properties: String,
    source: String,
    insert_time: i64,
}

impl Catalog {
    /// Connects to `postgres://...` or `sqlite://path` (created if missing) and runs the
    /// migrations.
    pub async fn connect(url: &str) -> Result<Catalog> {
        let description = redact(url);
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| Error::catalog(format!("bad catalog URL {description}: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| Error::catalog(format!("cannot connect to {description}: {e}")))?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| Error::catalog(format!("migrating {description}: {e}")))?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| Error::catalog(format!("bad catalog URL {description}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(|e| Error::catalog(format!("cannot open {description}: {e}")))?;
            SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| Error::catalog(format!("migrating {description}: {e}")))?;
            Pool::Sqlite(pool)
        } else {
            return Err(Error::catalog(format!(
                "unsupported catalog URL {description}: use postgres://... or sqlite://..."
            )));
        };
        Ok(Catalog { pool, description })
    }

    /// The URL with any password removed, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// A cheap round trip, for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(|e| Error::catalog(format!("catalog unreachable: {e}")))
    }

    /// Registers a table; an existing registration is kept as it is.
    pub async fn register_table(&self, entry: &TableEntry) -> Result<()> {
        let now = now_micros();
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO lake_tables (name, uri, schema_version, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&entry.name)
        .bind(&entry.uri)
        .bind(entry.schema_version)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| Error::catalog(format!("registering table {}: {e}", entry.name)))
    }

    /// Every registered table, by name.
    pub async fn tables(&self) -> Result<Vec<TableEntry>> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT name, uri, schema_version FROM lake_tables ORDER BY name",
        )
        .fetch_all(pool)
        .await)
        .map_err(|e| Error::catalog(format!("listing tables: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|(name, uri, schema_version)| TableEntry {
                name,
                uri,
                schema_version,
            })
            .collect())
    }

    /// Records a process; returns `true` when it was not known before. A process already
    /// known is left unchanged (clients retry, and several gateways may see it).
    pub async fn record_process(&self, process: &ProcessRecord) -> Result<bool> {
        let properties = serde_json::to_string(&process.properties)
            .map_err(|e| Error::catalog(format!("encoding process properties: {e}")))?;
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO processes (process_id, exe, username, realname, computer, distro, \
             cpu_brand, tsc_frequency, start_time, start_ticks, parent_process_id, service_name, \
             service_namespace, service_version, service_instance_id, properties, source, \
             insert_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18) ON CONFLICT (process_id) DO NOTHING",
        )
            .bind(&process.process_id)
            .bind(&process.exe)
            .bind(&process.username)
            .bind(&process.realname)
            .bind(&process.computer)
            .bind(&process.distro)
            .bind(&process.cpu_brand)
            .bind(process.tsc_frequency)
            .bind(process.start_time)
            .bind(process.start_ticks)
            .bind(&process.parent_process_id)
            .bind(&process.service_name)
            .bind(&process.service_namespace)
            .bind(&process.service_version)
            .bind(&process.service_instance_id)
            .bind(&properties)
            .bind(&process.source)
            .bind(process.insert_time)
            .execute(pool)
            .await
            .map(|result| result.rows_affected()))
        .map_err(|e| Error::catalog(format!("recording process {}: {e}", process.process_id)))?;
        Ok(inserted > 0)
    }

    /// One process by id.
    pub async fn process(&self, process_id: &str) -> Result<Option<ProcessRecord>> {
        let row: Option<ProcessRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT * FROM processes WHERE process_id = $1",
        )
            .bind(process_id)
            .fetch_optional(pool)
            .await)
        .map_err(|e| Error::catalog(format!("reading process {process_id}: {e}")))?;
        row.map(process_from_row).transpose()
    }

    /// Every process, oldest first.
    pub async fn processes(&self) -> Result<Vec<ProcessRecord>> {
        let rows: Vec<ProcessRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT * FROM processes ORDER BY insert_time, process_id",
        )
            .fetch_all(pool)
            .await)
        .map_err(|e| Error::catalog(format!("listing processes: {e}")))?;
        rows.into_iter().map(process_from_row).collect()
    }

    /// Records a stream; returns `true` when it was not known before. A known stream is
    /// left unchanged.
    pub async fn record_stream(&self, stream: &StreamRecord) -> Result<bool> {
        let tags = serde_json::to_string(&stream.tags)
            .map_err(|e| Error::catalog(format!("encoding stream tags: {e}")))?;
        let properties = serde_json::to_string(&stream.properties)
            .map_err(|e| Error::catalog(format!("encoding stream properties: {e}")))?;
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO streams (stream_id, process_id, tags, properties, dependencies_metadata, \
             objects_metadata, format, insert_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (stream_id) DO NOTHING",
        )
        .bind(&stream.stream_id)
        .bind(&stream.process_id)
        .bind(&tags)
        .bind(&properties)
        .bind(&stream.dependencies_metadata)
        .bind(&stream.objects_metadata)
        .bind(&stream.format)
        .bind(stream.insert_time)
        .execute(pool)
        .await
        .map(|result| result.rows_affected()))
        .map_err(|e| Error::catalog(format!("recording stream {}: {e}", stream.stream_id)))?;
        Ok(inserted > 0)
    }

    /// One stream by id.
    pub async fn stream(&self, stream_id: &str) -> Result<Option<StreamRecord>> {
        let row: Option<StreamRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT * FROM streams WHERE stream_id = $1",
        )
        .bind(stream_id)
        .fetch_optional(pool)
        .await)
        .map_err(|e| Error::catalog(format!("reading stream {stream_id}: {e}")))?;
        row.map(|row| {
            let tags = serde_json::from_str(&row.tags).map_err(|e| {
                Error::catalog(format!("stream {} has bad tags: {e}", row.stream_id))
            })?;
            let properties = serde_json::from_str(&row.properties).map_err(|e| {
                Error::catalog(format!("stream {} has bad properties: {e}", row.stream_id))
            })?;
            Ok(StreamRecord {
                stream_id: row.stream_id,
                process_id: row.process_id,
                tags,
                properties,
                dependencies_metadata: row.dependencies_metadata,
                objects_metadata: row.objects_metadata,
                format: row.format,
                insert_time: row.insert_time,
            })
        })
        .transpose()
    }

    /// Stores a new API key (by its hash); fails if the name or the key exists.
    pub async fn create_api_key(
        &self,
        name: &str,
        key_hash: &str,
        ingest: bool,
        query: bool,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO api_keys (name, key_hash, can_ingest, can_query, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name)
        .bind(key_hash)
        .bind(ingest)
        .bind(query)
        .bind(now_micros())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| Error::catalog(format!("creating API key {name}: {e}")))
    }

    /// The valid (not revoked) key with this hash.
    pub async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(pool)
        .await)
        .map_err(|e| Error::catalog(format!("reading API keys: {e}")))
    }

    /// Every key, revoked ones included, by name.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        on_pool!(self, pool => sqlx::query_as("SELECT * FROM api_keys ORDER BY name")
            .fetch_all(pool)
            .await)
        .map_err(|e| Error::catalog(format!("listing API keys: {e}")))
    }

    /// Revokes a key; returns whether a valid key had that name.
    pub async fn revoke_api_key(&self, name: &str) -> Result<bool> {
        let revoked = on_pool!(self, pool => sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now_micros())
        .bind(name)
        .execute(pool)
        .await
        .map(|result| result.rows_affected()))
        .map_err(|e| Error::catalog(format!("revoking API key {name}: {e}")))?;
        Ok(revoked > 0)
    }

    /// Whether a native block was already ingested.
    pub async fn block_known(&self, block_id: &str) -> Result<bool> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT block_id FROM native_blocks WHERE block_id = $1",
        )
        .bind(block_id)
        .fetch_optional(pool)
        .await)
        .map_err(|e| Error::catalog(format!("reading block {block_id}: {e}")))?;
        Ok(row.is_some())
    }

    /// Records an ingested native block.
    pub async fn record_block(
        &self,
        block_id: &str,
        stream_id: &str,
        process_id: &str,
        object_offset: i64,
        nb_objects: i64,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO native_blocks (block_id, stream_id, process_id, object_offset, nb_objects, insert_time) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (block_id) DO NOTHING",
        )
        .bind(block_id)
        .bind(stream_id)
        .bind(process_id)
        .bind(object_offset)
        .bind(nb_objects)
        .bind(now_micros())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| Error::catalog(format!("recording block {block_id}: {e}")))
    }

    /// Keeps a block whose stream or process is not known yet.
    pub async fn add_pending_block(
        &self,
        block_id: &str,
        stream_id: &str,
        process_id: &str,
        body: &[u8],
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO pending_blocks (block_id, stream_id, process_id, body, insert_time) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (block_id) DO NOTHING",
        )
        .bind(block_id)
        .bind(stream_id)
        .bind(process_id)
        .bind(body)
        .bind(now_micros())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| Error::catalog(format!("keeping block {block_id}: {e}")))
    }

    /// The pending blocks of a stream (`by_process = false`) or of a process, oldest first,
    /// as (block id, body).
    pub async fn pending_blocks(
        &self,
        id: &str,
        by_process: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let rows: Vec<(String, Vec<u8>)> = if by_process {
            on_pool!(self, pool => sqlx::query_as(
                "SELECT block_id, body FROM pending_blocks WHERE process_id = $1 ORDER BY insert_time, block_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await)
        } else {
            on_pool!(self, pool => sqlx::query_as(
                "SELECT block_id, body FROM pending_blocks WHERE stream_id = $1 ORDER BY insert_time, block_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await)
        }
        .map_err(|e| Error::catalog(format!("reading pending blocks of {id}: {e}")))?;
        Ok(rows)
    }

    /// Forgets a pending block (it has been ingested).
    pub async fn remove_pending_block(&self, block_id: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("DELETE FROM pending_blocks WHERE block_id = $1")
            .bind(block_id)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| Error::catalog(format!("removing pending block {block_id}: {e}")))
    }

    /// A span pairing state and its version.
    pub async fn span_state(&self, key: &str) -> Result<Option<(i64, String)>> {
        on_pool!(self, pool => sqlx::query_as("SELECT version, state FROM span_state WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await)
        .map_err(|e| Error::catalog(format!("reading span state {key}: {e}")))
    }

    /// Saves a span pairing state if it is still at `version` (0: not stored yet); returns
    /// whether it was saved (false: another writer changed it meanwhile).
    pub async fn save_span_state(&self, key: &str, version: i64, state: &str) -> Result<bool> {
        let saved = if version == 0 {
            on_pool!(self, pool => sqlx::query(
                "INSERT INTO span_state (key, version, state) VALUES ($1, 1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(state)
            .execute(pool)
            .await
            .map(|result| result.rows_affected()))
        } else {
            on_pool!(self, pool => sqlx::query(
                "UPDATE span_state SET version = version + 1, state = $1 WHERE key = $2 AND version = $3",
            )
            .bind(state)
            .bind(key)
            .bind(version)
            .execute(pool)
            .await
            .map(|result| result.rows_affected()))
        }
        .map_err(|e| Error::catalog(format!("saving span state {key}: {e}")))?;
        Ok(saved > 0)
    }

    /// Applies notes in order; returns the keys of span states that had moved past the
    /// version a note expected (already applied, or changed by another gateway).
    pub async fn apply_notes(&self, notes: &[CatalogNote]) -> Result<Vec<String>> {
        let mut moved = Vec::new();
        for note in notes {
            match note {
                CatalogNote::Process(process) => {
                    self.record_process(process).await?;
                }
                CatalogNote::Stream(stream) => {
                    self.record_stream(stream).await?;
                }
                CatalogNote::SpanState {
                    key,
                    version,
                    state,
                } => {
                    if !self.save_span_state(key, *version, state).await? {
                        moved.push(key.clone());
                    }
                }
                CatalogNote::Block {
                    block_id,
                    stream_id,
                    process_id,
                    object_offset,
                    nb_objects,
                } => {
                    self.record_block(block_id, stream_id, process_id, *object_offset, *nb_objects)
                        .await?;
                }
            }
        }
        Ok(moved)
    }

    /// Takes (or renews) the lease `name` for `holder` until `ttl` from now; returns
    /// whether `holder` holds it. A lease held by another holder is taken over only once
    /// it has expired.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = now_micros();
        let expires = now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        let taken = on_pool!(self, pool => sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(expires)
        .bind(now)
        .execute(pool)
        .await
        .map(|result| result.rows_affected()))
        .map_err(|e| Error::catalog(format!("taking lease {name}: {e}")))?;
        Ok(taken > 0)
    }

    /// Gives the lease `name` back, if `holder` holds it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| Error::catalog(format!("releasing lease {name}: {e}")))
    }

    /// Closes the pool, waiting for connections to return.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

fn process_from_row(row: ProcessRow) -> Result<ProcessRecord> {
    let properties = serde_json::from_str(&row.properties).map_err(|e| {
        Error::catalog(format!(
            "process {} has bad properties: {e}",
            row.process_id
        ))
    })?;
    Ok(ProcessRecord {
        process_id: row.process_id,
        exe: row.exe,
        username: row.username,
        realname: row.realname,
        computer: row.computer,
        distro: row.distro,
        cpu_brand: row.cpu_brand,
        tsc_frequency: row.tsc_frequency,
        start_time: row.start_time,
        start_ticks: row.start_ticks,
        parent_process_id: row.parent_process_id,
        service_name: row.service_name,
        service_namespace: row.service_namespace,
        service_version: row.service_version,
        service_instance_id: row.service_instance_id,
        properties,
        source: row.source,
        insert_time: row.insert_time,
    })
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Removes the password from a connection URL.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one.
            let _ignored = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://user:secret@db:5432/tarn"),
            "postgres://user:****@db:5432/tarn"
        );
        assert_eq!(
            redact("sqlite://tarn-data/catalog.db"),
            "sqlite://tarn-data/catalog.db"
        );
    }
}
