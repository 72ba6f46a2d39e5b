//! `tarn serve`: opens the lakehouse, binds every listener, serves until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tarn_lakehouse::{LakeConfig, Lakehouse};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Auth, GrpcAuthLayer, Role};
use crate::cli::{KeysAction, KeysArgs, LakeArgs, MaintainArgs, ServeArgs};
use crate::flightsql::TarnFlightSql;
use crate::ingest::Ingestor;
use crate::otlp;

/// Runs the server; returns when it has shut down.
pub fn run(args: ServeArgs) -> ExitCode {
    // Started before logging, so the bridge layer has somewhere to send; dropped (flushed)
    // after the server has stopped.
    let _telemetry = match &args.self_telemetry_url {
        Some(url) => {
            let mut builder = tarn_tracing::TelemetryBuilder::new()
                .url(url.clone())
                .service_name("tarn")
                .flush_period(std::time::Duration::from_secs(1))
                // Tarn's own panics are reported by its logging already.
                .panic_hook(false);
            if let Some(key) = &args.self_telemetry_api_key {
                builder = builder.api_key(key.clone());
            }
            match builder.start() {
                Ok(guard) => Some(guard),
                Err(error) => {
                    eprintln!("tarn serve: cannot start self-telemetry: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    init_logging(_telemetry.is_some());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tarn serve: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut queries = tokio::runtime::Builder::new_multi_thread();
    queries.enable_all().thread_name("tarn-query");
    if args.query_threads > 0 {
        queries.worker_threads(args.query_threads);
    }
    let queries = match queries.build() {
        Ok(queries) => queries,
        Err(error) => {
            eprintln!("tarn serve: cannot start the query runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(serve(args, queries.handle().clone()));
    queries.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tarn serve: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs on stderr; with `self_telemetry`, logs and spans also go to tarn-tracing.
fn init_logging(self_telemetry: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TARN_LOG").unwrap_or_else(|_| {
        // The Delta kernel logs every snapshot at info, and an error when it opens a
        // location that holds no table yet, which is how every table starts.
        tracing_subscriber::EnvFilter::new(
            "info,buoyant_kernel=warn,deltalake=warn,deltalake_core=warn,buoyant_kernel::snapshot::builder=off",
        )
    });
    // Colours only for a terminal (and never with NO_COLOR): journald, container logs and
    // files get plain text.
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // TARN_LOG_FORMAT=json: one JSON object per line, for log pipelines.
    let json = std::env::var("TARN_LOG_FORMAT").is_ok_and(|format| format == "json");
    let (plain, structured) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr);
        (None, Some(layer))
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr);
        (Some(layer), None)
    };
    let bridge = self_telemetry.then(tarn_tracing::TarnLayer::new);
    let _already_set = tracing_subscriber::registry()
        .with(filter)
        .with(plain)
        .with(structured)
        .with(bridge)
        .try_init();
}

/// `file://` URL of a local directory (created if missing).
fn file_url(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let absolute =
        std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let url = url_from_path(&absolute)?;
    Ok(url)
}

fn url_from_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(format!("file://{text}"))
}

/// Resolves the lake configuration from flags, `TARN_*` and the Micromegas variables
/// (without a WAL: `serve` adds it).
pub fn lake_config(args: &LakeArgs) -> anyhow::Result<LakeConfig> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let object_store_url = match args
        .object_store
        .clone()
        .or_else(|| std::env::var("MICROMEGAS_OBJECT_STORE_URI").ok())
    {
        Some(url) => url,
        None => file_url(&args.data_dir.join("lake"))?,
    };
    let catalog_url = match args
        .catalog
        .clone()
        .or_else(|| std::env::var("MICROMEGAS_SQL_CONNECTION_STRING").ok())
    {
        Some(url) => url,
        None => {
            let data = std::fs::canonicalize(&args.data_dir)?;
            format!("sqlite://{}", data.join("catalog.db").display())
        }
    };
    let mut config = LakeConfig::new(object_store_url, catalog_url);
    config.storage_options = storage_options_from_env();
    Ok(config)
}

/// The lake configuration of `tarn serve`: with its WAL, limits and flush policy.
fn serve_config(args: &ServeArgs) -> anyhow::Result<LakeConfig> {
    if !(args.flush_interval_secs.is_finite() && args.flush_interval_secs > 0.0) {
        bail!("--flush-interval-secs must be a positive number of seconds");
    }
    let mut config = lake_config(&args.lake)?;
    config.wal_dir = Some(args.lake.data_dir.join("wal"));
    config.limits = tarn_lakehouse::writer::Limits {
        max_fresh_bytes: args.max_fresh_bytes,
        max_wal_bytes: args.max_wal_bytes,
        ..Default::default()
    };
    config.flush = tarn_lakehouse::FlushPolicy {
        interval: std::time::Duration::from_secs_f64(args.flush_interval_secs),
        bytes: args.flush_bytes,
    };
    Ok(config)
}

/// Object-store options taken from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
fn storage_options_from_env() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(key, _)| {
            key.starts_with("AWS_") || key.starts_with("GOOGLE_") || key.starts_with("AZURE_")
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Health {
    lake: Arc<Lakehouse>,
    ingestor: Arc<Ingestor>,
}

/// `GET /metrics`: the Prometheus exposition (no key needed, like `/health`).
async fn metrics(State(health): State<Health>) -> impl axum::response::IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&health.lake, &health.ingestor),
    )
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(health): State<Health>) -> (StatusCode, String) {
    match health.lake.catalog().ping().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _interrupted = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _interrupted = interrupt.await;
    }
}

/// Background maintenance: a pass every `interval`, when this node gets the lease.
async fn maintenance_loop(
    lake: Arc<Lakehouse>,
    options: tarn_lakehouse::maintain::MaintainOptions,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let holder = format!("tarn-{}", uuid::Uuid::new_v4());
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let log = |message: &str| tracing::info!(target: "tarn::maintenance", "{message}");
        let pass = lake.maintain(&options, &holder, &log);
        let pass = tracing::Instrument::instrument(pass, tracing::info_span!("maintenance"));
        if let Err(error) = pass.await {
            tracing::warn!(%error, "maintenance pass failed; will retry");
        }
    }
}

/// `tarn healthcheck`: GETs the health URL; success is a 2xx within the timeout.
pub fn healthcheck(args: &crate::cli::HealthcheckArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tarn healthcheck: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = std::time::Duration::from_secs_f64(args.timeout_secs.clamp(0.1, 600.0));
    let outcome = runtime.block_on(async {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let client = builder.build()?;
        let response = client.get(&args.url).send().await?;
        anyhow::Ok(response.status())
    });
    match outcome {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("tarn healthcheck: {} answered {status}", args.url);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("tarn healthcheck: {}: {error:#}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// `tarn keys`: manages the API keys in the catalog.
pub fn keys(args: KeysArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tarn keys: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let config = lake_config(&args.lake)?;
        let catalog = tarn_lakehouse::catalog::Catalog::connect(&config.catalog_url).await?;
        match &args.action {
            KeysAction::Create { name, roles } => {
                let roles: Vec<&str> = roles
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .collect();
                if roles.is_empty()
                    || roles
                        .iter()
                        .any(|role| *role != "ingest" && *role != "query")
                {
                    bail!("roles are ingest, query or both");
                }
                let mut secret = [0_u8; 24];
                getrandom(&mut secret)?;
                let key = format!("tarn_{}", crate::auth::hex(&secret));
                let hash = crate::auth::hex(&crate::auth::hash_key(&key));
                catalog
                    .create_api_key(
                        name,
                        &hash,
                        roles.contains(&"ingest"),
                        roles.contains(&"query"),
                    )
                    .await?;
                println!("{key}");
            }
            KeysAction::List => {
                for key in catalog.api_keys().await? {
                    let roles = match (key.ingest, key.query) {
                        (true, true) => "ingest,query",
                        (true, false) => "ingest",
                        (false, true) => "query",
                        (false, false) => "-",
                    };
                    let state = if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "valid"
                    };
                    println!("{}\t{roles}\t{state}", key.name);
                }
            }
            KeysAction::Revoke { name } => {
                if !catalog.revoke_api_key(name).await? {
                    bail!("no valid key named {name:?}");
                }
                println!("revoked {name}");
            }
        }
        catalog.close().await;
        anyhow::Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tarn keys: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Random bytes from the operating system.
fn getrandom(buffer: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(buffer))
        .context("reading /dev/urandom")
}

/// `tarn maintain`: one pass, with progress on stdout.
pub fn maintain(args: MaintainArgs) -> ExitCode {
    init_logging(false);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tarn maintain: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let options = args.maintenance.options()?;
        let lake = Lakehouse::open(lake_config(&args.lake)?)
            .await
            .context("opening the lakehouse")?;
        let holder = format!("tarn-maintain-{}", uuid::Uuid::new_v4());
        let print = |message: &str| println!("{message}");
        let reports = lake.maintain(&options, &holder, &print).await?;
        if reports.is_none() {
            bail!("another node holds the maintenance lease");
        }
        lake.catalog().close().await;
        anyhow::Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tarn maintain: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(args: &ServeArgs, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(args.listen, port))
        .await
        .with_context(|| format!("binding {what} on {}:{port}", args.listen))
}

async fn serve(args: ServeArgs, queries: tokio::runtime::Handle) -> anyhow::Result<()> {
    let started = Instant::now();
    let api_keys = if args.api_keys.trim().is_empty() {
        std::env::var("MICROMEGAS_API_KEYS").unwrap_or_default()
    } else {
        args.api_keys.clone()
    };
    let auth_wanted = args.auth || !api_keys.trim().is_empty();
    if !args.listen.is_loopback() && !auth_wanted && !args.insecure_no_auth {
        bail!(
            "refusing to listen on {} without authentication; configure API keys (--api-keys, --auth), \
             bind a loopback address, or pass --insecure-no-auth",
            args.listen
        );
    }
    let config = serve_config(&args)?;
    let maintenance = args.maintenance.options()?;
    tracing::info!(
        object_store = %config.object_store_url,
        catalog = %tarn_lakehouse::catalog::redact(&config.catalog_url),
        "opening the lakehouse"
    );
    let lake = Arc::new(
        Lakehouse::open(config)
            .await
            .context("opening the lakehouse")?,
    );
    let ingestor = Arc::new(Ingestor::new(Arc::clone(&lake), args.max_inflight_bytes));
    let auth = if auth_wanted {
        Auth::new(&api_keys, Some(lake.catalog().clone()))?
    } else {
        Auth::disabled()
    };

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::Tls::load(cert, key)?),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let grpc_listener = bind(&args, args.otlp_grpc_port, "OTLP/gRPC").await?;
    let http_listener = bind(&args, args.otlp_http_port, "OTLP/HTTP").await?;
    let native_listener = bind(&args, args.native_port, "native ingestion").await?;
    let flight_listener = bind(&args, args.flightsql_port, "FlightSQL").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let native_addr = native_listener.local_addr()?;
    let flight_addr = flight_listener.local_addr()?;

    let otlp_state = otlp::http::OtlpHttp {
        ingestor: Arc::clone(&ingestor),
        max_body_bytes: args.max_body_bytes,
    };
    let health_routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Health {
            lake: Arc::clone(&lake),
            ingestor: Arc::clone(&ingestor),
        });
    // Bodies are limited by the handlers themselves, after decompression.
    let ingest_guard =
        axum::middleware::from_fn_with_state(auth.clone(), crate::auth::require_ingest);
    let http_app = Router::new()
        .nest(
            "/v1",
            otlp::http::routes(otlp_state.clone()).route_layer(ingest_guard.clone()),
        )
        .merge(health_routes.clone())
        .layer(axum::extract::DefaultBodyLimit::disable());
    let native = Arc::new(crate::native::NativeIngest::new(Arc::clone(&ingestor)));
    let native_app = Router::new()
        .nest(
            "/ingestion/otlp/v1",
            otlp::http::routes(otlp_state).route_layer(ingest_guard.clone()),
        )
        .merge(crate::native::routes(native).route_layer(ingest_guard))
        .merge(health_routes)
        .layer(axum::extract::DefaultBodyLimit::disable());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _closed = rx.wait_for(|stop| *stop).await;
    };

    // The flusher stops last, after every listener has answered what it received: its final
    // commit must include the rows of requests that were in flight at the signal.
    let (flusher_stop, flusher_stop_rx) = watch::channel(false);
    let flusher = tokio::spawn(Arc::clone(&lake).run_flusher(flusher_stop_rx));
    if args.maintenance_interval_secs > 0.0 {
        let interval = std::time::Duration::from_secs_f64(args.maintenance_interval_secs);
        tokio::spawn(maintenance_loop(
            Arc::clone(&lake),
            maintenance,
            interval,
            stop_rx.clone(),
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (name, listener, app) in [
        ("OTLP/HTTP", http_listener, http_app),
        ("native", native_listener, native_app),
    ] {
        let stop = stopped(stop_rx.clone());
        let tls = tls.clone();
        tasks.spawn(async move {
            if let Some(tls) = tls {
                return axum::serve(tls.incoming(listener)?, app)
                    .with_graceful_shutdown(stop)
                    .await
                    .with_context(|| format!("{name} server"));
            }
            // Small answers go out at once: with Nagle's algorithm a response written in two
            // pieces waits for the client's delayed ACK (40 ms).
            let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .with_context(|| format!("{name} server"))
        });
    }
    let (traces, logs, metrics) =
        otlp::grpc::OtlpGrpc::new(Arc::clone(&ingestor)).services(args.grpc_max_message_bytes);
    let stop = stopped(stop_rx.clone());
    let ingest_auth = auth.clone();
    let grpc_tls = tls.clone();
    tasks.spawn(async move {
        let router = tonic::transport::Server::builder()
            .layer(otlp::grpc::ResourceExhaustedLayer)
            .layer(GrpcAuthLayer::new(ingest_auth, Role::Ingest))
            .add_service(traces)
            .add_service(logs)
            .add_service(metrics);
        match grpc_tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(tls.incoming(grpc_listener)?.into_stream(), stop)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(grpc_listener)
                            .with_nodelay(Some(true)),
                        stop,
                    )
                    .await
            }
        }
        .context("OTLP/gRPC server")
    });
    if !(args.query_timeout_secs.is_finite() && args.query_timeout_secs > 0.0) {
        bail!("--query-timeout-secs must be a positive number of seconds");
    }
    if !(args.shutdown_drain_secs.is_finite() && args.shutdown_drain_secs >= 0.0) {
        bail!("--shutdown-drain-secs must be a number of seconds, 0 or more");
    }
    let limits = crate::flightsql::QueryLimits {
        memory_bytes: Some(args.query_memory_bytes),
        timeout: Some(std::time::Duration::from_secs_f64(args.query_timeout_secs)),
        max_rows: Some(args.query_max_rows),
    };
    let flight = TarnFlightSql::new(lake.query_engine(), limits, queries)?.into_server();
    let stop = stopped(stop_rx.clone());
    let tls_on = tls.is_some();
    tasks.spawn(async move {
        let router = tonic::transport::Server::builder()
            .layer(GrpcAuthLayer::new(auth, Role::Query))
            .add_service(flight);
        match tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(
                        tls.incoming(flight_listener)?.into_stream(),
                        stop,
                    )
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(flight_listener)
                            .with_nodelay(Some(true)),
                        stop,
                    )
                    .await
            }
        }
        .context("FlightSQL server")
    });

    let startup_ms = started.elapsed().as_millis();
    tracing::info!(%grpc_addr, %http_addr, %native_addr, %flight_addr, startup_ms, tls = tls_on, "tarn is ready");
    // A machine-readable line on stdout, so scripts and tests learn the bound ports.
    println!(
        "tarn ready otlp_grpc={grpc_addr} otlp_http={http_addr} native={native_addr} flightsql={flight_addr} startup_ms={startup_ms} tls={tls_on}"
    );

    tokio::select! {
        () = shutdown_signal() => tracing::info!("shutting down"),
        Some(result) = tasks.join_next() => {
            // A server stopped on its own: that is a failure.
            result.context("server task")??;
            bail!("a server stopped unexpectedly");
        }
    }
    let _receivers_gone = stop_tx.send(true);
    // Connections that stay open (a client whose runtime is blocked, an idle stream that
    // never reads its GOAWAY) must not hold the stop forever.
    let drain = std::time::Duration::from_secs_f64(args.shutdown_drain_secs);
    let drained = tokio::time::timeout(drain, async {
        while let Some(result) = tasks.join_next().await {
            result.context("server task")??;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_elapsed) => {
            tracing::warn!(
                drain_secs = drain.as_secs_f64(),
                open_servers = tasks.len(),
                "connections still open after the drain period: dropping them"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
    // The listeners are closed and their requests answered: commit what is left, then
    // stop the WAL.
    let _flusher_gone = flusher_stop.send(true);
    flusher.await.context("flusher task")?;
    lake.close();
    lake.catalog().close().await;
    Ok(())
}
