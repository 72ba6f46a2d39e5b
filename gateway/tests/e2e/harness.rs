//! Starts the real `tarn` binary and talks to it over its real protocols.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Endpoint;

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub catalog: Option<String>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A running `tarn serve`; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub otlp_grpc: SocketAddr,
    pub native: SocketAddr,
    pub otlp_http: SocketAddr,
    pub flightsql: SocketAddr,
    /// Milliseconds from start to ready, as the server reports it.
    pub startup_ms: u64,
    stderr_path: PathBuf,
    /// A data directory this server owns, removed after the server is gone.
    _temp: Option<tempfile::TempDir>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|part| {
        part.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

impl Server {
    pub fn start(config: &ServerConfig) -> Server {
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let stderr_path = config
            .data_dir
            .join(format!("tarn-{}.stderr", uuid::Uuid::new_v4()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tarn"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&config.data_dir)
            .args([
                "--otlp-grpc-port",
                "0",
                "--otlp-http-port",
                "0",
                "--native-port",
                "0",
                "--flightsql-port",
                "0",
            ])
            .args(&config.extra_args)
            .env_remove("TARN_CATALOG")
            .env_remove("TARN_OBJECT_STORE")
            .env_remove("MICROMEGAS_SQL_CONNECTION_STRING")
            .env_remove("MICROMEGAS_OBJECT_STORE_URI")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if let Some(catalog) = &config.catalog {
            command.arg("--catalog").arg(catalog);
        }
        command.envs(
            config
                .env
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        let mut child = command.spawn().expect("tarn binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("tarn ready") {
                    tx.send(line).ok();
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                child.kill().ok();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("tarn did not become ready; stderr:\n{log}");
            }
        };
        Server {
            otlp_grpc: field(&line, "otlp_grpc").unwrap().parse().unwrap(),
            native: field(&line, "native").unwrap().parse().unwrap(),
            otlp_http: field(&line, "otlp_http").unwrap().parse().unwrap(),
            flightsql: field(&line, "flightsql").unwrap().parse().unwrap(),
            startup_ms: field(&line, "startup_ms").unwrap().parse().unwrap(),
            child: Some(child),
            stderr_path,
            _temp: None,
        }
    }

    /// A server on a fresh temporary data directory it owns.
    pub fn start_temp(extra_args: &[&str]) -> Server {
        let temp = temp_dir();
        let mut server = Server::start(&ServerConfig {
            data_dir: data_dir(&temp),
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            ..Default::default()
        });
        server._temp = Some(temp);
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident memory of the server, in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// The server's log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(
            exit.success(),
            "tarn exited with {exit}; stderr:\n{}",
            self.stderr()
        );
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.otlp_http)
    }

    /// POSTs a body; returns status, content type and body.
    /// POSTs a body to the OTLP/HTTP port; returns status, headers and body.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> Response {
        post_to(&self.url(path), content_type, encoding, body).await
    }

    /// POSTs a body to the native port.
    pub async fn post_native(
        &self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> Response {
        post_to(
            &format!("http://{}{path}", self.native),
            content_type,
            encoding,
            body,
        )
        .await
    }

    pub async fn flight_client(&self) -> FlightSqlServiceClient<tonic::transport::Channel> {
        let channel = Endpoint::from_shared(format!("http://{}", self.flightsql))
            .unwrap()
            .connect()
            .await
            .expect("FlightSQL reachable");
        FlightSqlServiceClient::new(channel)
    }

    /// Runs SQL over FlightSQL (GetFlightInfo + DoGet) and collects the batches.
    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        self.try_query(sql)
            .await
            .unwrap_or_else(|e| panic!("query {sql:?} failed: {e}"))
    }

    pub async fn try_query(
        &self,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
        let mut client = self.flight_client().await;
        let info = client.execute(sql.to_owned(), None).await?;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let stream = client.do_get(endpoint.ticket.unwrap()).await?;
            let mut received: Vec<RecordBatch> = stream.try_collect().await?;
            batches.append(&mut received);
        }
        Ok(batches)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// POSTs a body; returns status, headers and body.
pub async fn post_to(
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Response {
    try_post_to(url, content_type, encoding, body)
        .await
        .expect("request sent")
}

/// POSTs a body; a connection failure is an error, not a panic.
pub async fn try_post_to(
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Result<Response, reqwest::Error> {
    let client = reqwest::Client::new();
    let mut request = client
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A fresh PostgreSQL database for one test, or `None` (with the reason printed) when no
/// server is reachable. Under `CI=true` a missing server fails the test instead.
pub async fn postgres_database() -> Option<String> {
    let admin = std::env::var("TARN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = match sqlx::PgPool::connect(&admin).await {
        Ok(pool) => pool,
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL at {admin} is required under CI=true: {error}");
            }
            eprintln!("SKIPPED: PostgreSQL at {admin} is not reachable: {error}");
            return None;
        }
    };
    let name = format!("tarn_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

/// A temporary directory kept on failure for inspection when `TARN_KEEP_TEST_DATA` is set.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tarn-e2e-")
        .tempdir()
        .unwrap()
}

pub fn data_dir(temp: &tempfile::TempDir) -> PathBuf {
    Path::new(temp.path()).join("data")
}
