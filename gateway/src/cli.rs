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
    Serve(ServeArgs),
    /// Run one SQL query against a FlightSQL endpoint and print the result.
    Query(QueryArgs),
}

/// Options of `tarn serve`. Every flag has a `TARN_*` variable; the Micromegas variables
/// named in each help text are honoured too.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory for local state: the embedded catalog and, by default, the lake.
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

    /// Allow binding a non-loopback address without authentication.
    #[arg(long, env = "TARN_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
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
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The graph enables both of rustls' providers (ring through sqlx, aws-lc through the
    // AWS SDK), so rustls cannot pick one on its own: pick ring before any TLS setup.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve(args) => crate::serve::run(args),
        Command::Query(args) => crate::query::run(args),
    }
}
