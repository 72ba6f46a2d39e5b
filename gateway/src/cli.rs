//! The command line: `tarn serve`, `tarn query`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Tarn: an OpenTelemetry and Micromegas telemetry gateway that stores Delta Lake tables
/// and serves them with SQL over Arrow FlightSQL.
#[derive(Debug, Parser)]
#[command(name = "tarn", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: OTLP and native ingestion, FlightSQL queries.
    Serve(Box<ServeArgs>),
    /// Run one SQL query against a FlightSQL endpoint and print the result.
    Query(QueryArgs),
    /// Drive OTLP load at a gateway, measure it, and check nothing acknowledged is lost.
    Load(crate::load::LoadArgs),
    /// Run one maintenance pass: retention, compaction, checkpoints, vacuum.
    Maintain(MaintainArgs),
    /// Manage the API keys stored in the catalog.
    Keys(KeysArgs),
    /// Exit 0 when a gateway answers its health check (for container HEALTHCHECKs).
    Healthcheck(HealthcheckArgs),
}

/// Options of `tarn healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The URL to GET; `/health` of the OTLP/HTTP port by default.
    #[arg(
        long,
        env = "TARN_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:4318/health"
    )]
    pub url: String,

    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout_secs: f64,

    /// PEM certificate to trust for an `https://` URL (a self-signed gateway's own).
    #[arg(long, env = "TARN_HEALTHCHECK_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// Options of `tarn keys`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub lake: LakeArgs,

    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (only its hash is stored).
    Create {
        name: String,
        /// What the key may do: ingest, query, or both (comma-separated).
        #[arg(long, default_value = "ingest,query")]
        roles: String,
    },
    /// List the keys (names, roles, revocation).
    List,
    /// Revoke a key.
    Revoke { name: String },
}

/// Where the lake and its catalog are (shared by `serve` and `maintain`).
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    /// Directory for local state: the embedded catalog, the write-ahead log and, by
    /// default, the lake.
    #[arg(long, env = "TARN_DATA_DIR", default_value = "./tarn-data")]
    pub data_dir: PathBuf,

    /// Object store root of the lake: file:///path, s3://bucket/prefix, gs://, az://,
    /// memory://. Default: file://<data-dir>/lake. Also MICROMEGAS_OBJECT_STORE_URI.
    #[arg(long, env = "TARN_OBJECT_STORE")]
    pub object_store: Option<String>,

    /// Catalog database: postgres://user@host/db or sqlite://path. Default: SQLite in
    /// <data-dir>/catalog.db. Also MICROMEGAS_SQL_CONNECTION_STRING.
    #[arg(long, env = "TARN_CATALOG")]
    pub catalog: Option<String>,
}

/// Maintenance settings (shared by `serve`, which runs them in the background, and
/// `maintain`).
#[derive(Debug, Clone, Args)]
pub struct MaintenanceArgs {
    /// Compaction's target file size, in bytes.
    #[arg(long, env = "TARN_TARGET_FILE_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub target_file_bytes: u64,

    /// Files smaller than this are compacted, in bytes.
    #[arg(long, env = "TARN_SMALL_FILE_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub small_file_bytes: u64,

    /// Hours an unreferenced file is kept before vacuum deletes it.
    #[arg(long, env = "TARN_VACUUM_GRACE_HOURS", default_value_t = 24.0)]
    pub vacuum_grace_hours: f64,

    /// Retention per table in days, e.g. `spans=7,log_entries=30`; `all=N` for every
    /// data table. Tables not named keep everything.
    #[arg(long, env = "TARN_RETENTION", default_value = "")]
    pub retention: String,
}

impl MaintenanceArgs {
    /// The maintenance options these flags describe.
    pub fn options(&self) -> anyhow::Result<tarn_lakehouse::maintain::MaintainOptions> {
        use tarn_lakehouse::schema::TableKind;
        let mut retention_days = std::collections::BTreeMap::new();
        for item in self
            .retention
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (name, days) = item
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("bad retention {item:?}: use table=days"))?;
            let days: u32 = days
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("bad retention days in {item:?}: {e}"))?;
            if name.trim() == "all" {
                for kind in [
                    TableKind::Spans,
                    TableKind::LogEntries,
                    TableKind::Measures,
                    TableKind::Histograms,
                ] {
                    retention_days.insert(kind, days);
                }
            } else {
                let kind = TableKind::from_name(name.trim())
                    .ok_or_else(|| anyhow::anyhow!("no table {name:?}"))?;
                retention_days.insert(kind, days);
            }
        }
        if !(self.vacuum_grace_hours.is_finite() && self.vacuum_grace_hours >= 0.0) {
            anyhow::bail!("--vacuum-grace-hours must be a number of hours");
        }
        Ok(tarn_lakehouse::maintain::MaintainOptions {
            target_file_bytes: self.target_file_bytes,
            small_file_bytes: self.small_file_bytes,
            vacuum_grace: std::time::Duration::from_secs_f64(self.vacuum_grace_hours * 3600.0),
            retention_days,
        })
    }
}

/// Options of `tarn maintain`.
#[derive(Debug, Clone, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub lake: LakeArgs,

    #[command(flatten)]
    pub maintenance: MaintenanceArgs,
}

/// Options of `tarn serve`. Every flag has a `TARN_*` variable; the Micromegas variables
/// named in each help text are honoured too.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A TOML file of settings: the flags below with `_` for `-` (see deploy/tarn.toml).
    /// Flags and environment variables override it.
    #[arg(long, env = "TARN_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub lake: LakeArgs,

    #[command(flatten)]
    pub maintenance: MaintenanceArgs,

    /// Seconds between background maintenance passes (0 turns them off).
    #[arg(long, env = "TARN_MAINTENANCE_INTERVAL_SECS", default_value_t = 300.0)]
    pub maintenance_interval_secs: f64,

    /// Address every listener binds.
    #[arg(long, env = "TARN_LISTEN", default_value = "127.0.0.1")]
    pub listen: IpAddr,

    /// OTLP/gRPC port (0 picks a free port).
    #[arg(long, env = "TARN_OTLP_GRPC_PORT", default_value_t = 4317)]
    pub otlp_grpc_port: u16,

    /// OTLP/HTTP port (0 picks a free port).
    #[arg(long, env = "TARN_OTLP_HTTP_PORT", default_value_t = 4318)]
    pub otlp_http_port: u16,

    /// Native (Micromegas) ingestion port, also serving OTLP/HTTP under /ingestion/otlp
    /// (0 picks a free port).
    #[arg(long, env = "TARN_NATIVE_PORT", default_value_t = 9000)]
    pub native_port: u16,

    /// FlightSQL port (0 picks a free port).
    #[arg(long, env = "TARN_FLIGHTSQL_PORT", default_value_t = 50051)]
    pub flightsql_port: u16,

    /// Largest OTLP/HTTP request body, after decompression, in bytes.
    #[arg(long, env = "TARN_MAX_BODY_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest OTLP/gRPC message, after decompression, in bytes.
    #[arg(long, env = "TARN_GRPC_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub grpc_max_message_bytes: usize,

    /// Bytes of requests held in memory at once; past it, clients are told to retry
    /// (HTTP 503 with Retry-After, gRPC UNAVAILABLE with RetryInfo).
    #[arg(long, env = "TARN_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// Seconds a row may wait in memory (durable in the WAL) before it is committed to
    /// its Delta table.
    #[arg(long, env = "TARN_FLUSH_INTERVAL_SECS", default_value_t = 10.0)]
    pub flush_interval_secs: f64,

    /// Seconds SIGTERM waits for open connections to finish their requests and close; past
    /// it they are dropped (whatever they had acknowledged is in the WAL) and the final
    /// commit runs.
    #[arg(long, env = "TARN_SHUTDOWN_DRAIN_SECS", default_value_t = 20.0)]
    pub shutdown_drain_secs: f64,

    /// Bytes of waiting rows of one table that trigger a commit, whatever their age.
    #[arg(long, env = "TARN_FLUSH_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub flush_bytes: usize,

    /// Bytes of acknowledged, uncommitted rows held in memory; past it, clients are told
    /// to retry.
    #[arg(long, env = "TARN_MAX_FRESH_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_fresh_bytes: usize,

    /// Bytes of write-ahead log on disk; past it, clients are told to retry.
    #[arg(long, env = "TARN_MAX_WAL_BYTES", default_value_t = 8 * 1024 * 1024 * 1024)]
    pub max_wal_bytes: u64,

    /// Memory one query's operators may hold, in bytes (sorts and joins spill or fail past it).
    #[arg(long, env = "TARN_QUERY_MEMORY_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub query_memory_bytes: usize,

    /// Seconds one query may run.
    #[arg(long, env = "TARN_QUERY_TIMEOUT_SECS", default_value_t = 300.0)]
    pub query_timeout_secs: f64,

    /// Rows one query may return.
    #[arg(long, env = "TARN_QUERY_MAX_ROWS", default_value_t = 50_000_000)]
    pub query_max_rows: usize,

    /// Threads of the query runtime (apart from the ingest runtime); 0: one per core.
    #[arg(long, env = "TARN_QUERY_THREADS", default_value_t = 0)]
    pub query_threads: usize,

    /// API keys, as a JSON array: `[{"name": "...", "key": "...", "roles": ["ingest",
    /// "query"]}]` (without `roles`, a key may do both). Also MICROMEGAS_API_KEYS. Setting
    /// keys turns authentication on.
    #[arg(
        long,
        env = "TARN_API_KEYS",
        default_value = "",
        hide_env_values = true
    )]
    pub api_keys: String,

    /// Require API keys even if none is configured here (keys created with `tarn keys`
    /// live in the catalog).
    #[arg(long, env = "TARN_AUTH")]
    pub auth: bool,

    /// Allow binding a non-loopback address without authentication.
    #[arg(long, env = "TARN_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// PEM certificate chain (leaf first): every listener then speaks TLS only (with
    /// `--tls-key`).
    #[arg(long, env = "TARN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TARN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Send Tarn's own logs and spans (with tarn-tracing, over the native protocol) to this
    /// gateway: another Tarn's native port (`http://tarn-ops:9000`) or this one's own.
    #[arg(long, env = "TARN_SELF_TELEMETRY_URL")]
    pub self_telemetry_url: Option<String>,

    /// API key (ingest role) for `--self-telemetry-url`.
    #[arg(long, env = "TARN_SELF_TELEMETRY_API_KEY", hide_env_values = true)]
    pub self_telemetry_api_key: Option<String>,
}

/// Output formats of `tarn query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Options of `tarn query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The SQL to run.
    pub sql: String,

    /// FlightSQL endpoint [default: grpc://127.0.0.1:50051]. Also MICROMEGAS_ANALYTICS_URI.
    #[arg(long, env = "TARN_FLIGHTSQL_URL")]
    pub url: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,

    /// Start of the query time range (RFC 3339), sent as `query_range_begin`.
    #[arg(long)]
    pub begin: Option<String>,

    /// End of the query time range (RFC 3339), sent as `query_range_end`.
    #[arg(long)]
    pub end: Option<String>,

    /// API key, sent as a bearer token.
    #[arg(long, env = "TARN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match crate::config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("tarn: {error:#}");
            return ExitCode::from(2);
        }
    };
    // The graph enables both of rustls' providers (ring through sqlx, aws-lc through the
    // AWS SDK), so rustls cannot pick one on its own: pick ring before any TLS setup.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve(args) => crate::serve::run(*args),
        Command::Query(args) => crate::query::run(args),
        Command::Load(args) => crate::load::run(args),
        Command::Maintain(args) => crate::serve::maintain(args),
        Command::Keys(args) => crate::serve::keys(args),
        Command::Healthcheck(args) => crate::serve::healthcheck(&args),
    }
}
