//! What operators rely on: graceful shutdown, `/metrics`, `tarn healthcheck`, the
//! configuration file, and plain logs when stderr is not a terminal.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use prost::Message;

use crate::harness::{Server, ServerConfig, data_dir, temp_dir};
use crate::otlp_data::sample_traces;

const PROTOBUF: &str = "application/x-protobuf";

async fn count(server: &Server, sql: &str) -> i64 {
    let batches = server.query(sql).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Sends a request's head and half its body, then (after `pause`) the rest, on one raw
/// connection; returns the status line of the answer.
fn slow_request(address: std::net::SocketAddr, body: Vec<u8>, pause: Duration) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {address}\r\ncontent-type: {PROTOBUF}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let half = body.len() / 2;
    stream.write_all(&body[..half]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(pause);
    stream.write_all(&body[half..]).unwrap();
    let mut answer = String::new();
    // A connection closed early shows as an empty or partial answer, checked by the caller.
    stream.read_to_string(&mut answer).ok();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// SIGTERM under load: a request half received when the signal comes is still answered
/// 200, nothing is answered with an error, the fresh rows are committed to Delta, and the
/// process exits 0. Proven by restarting without the WAL: every acknowledged span is in
/// Delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_in_flight_requests_and_commits_everything() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        // Nothing would be committed before the shutdown by the timer.
        extra_args: vec!["--flush-interval-secs".into(), "3600".into()],
        ..Default::default()
    };
    let server = Server::start(&config);
    let url = format!("http://{}/v1/traces", server.otlp_http);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let answered_badly = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (url, stop, acknowledged, answered_badly) = (
            url.clone(),
            Arc::clone(&stop),
            Arc::clone(&acknowledged),
            Arc::clone(&answered_badly),
        );
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = sample_traces(&format!("shutdown-{sender}-{n}")).encode_to_vec();
                match client
                    .post(&url)
                    .header("content-type", PROTOBUF)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.fetch_add(3, Ordering::Relaxed);
                    }
                    Ok(response) => answered_badly
                        .lock()
                        .unwrap()
                        .push(format!("status {}", response.status())),
                    // Once the listener is closed, connections are refused, and a request
                    // racing the close of an idle keep-alive connection fails unanswered:
                    // not acknowledged, so the client retries it elsewhere. Neither is a
                    // loss.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(acknowledged.load(Ordering::Relaxed) > 0);
    // A request half sent when SIGTERM arrives.
    let address = server.otlp_http;
    let slow_body = sample_traces("shutdown-slow").encode_to_vec();
    let slow =
        std::thread::spawn(move || slow_request(address, slow_body, Duration::from_millis(800)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log_before = server.stderr();
    let stopping = tokio::task::spawn_blocking(move || server.stop());
    let status_line = tokio::task::spawn_blocking(move || slow.join().unwrap())
        .await
        .unwrap();
    stopping.await.expect("tarn exits 0 after SIGTERM");
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(status_line, "HTTP/1.1 200 OK", "the in-flight request");
    let answered_badly = answered_badly.lock().unwrap().clone();
    assert!(
        answered_badly.is_empty(),
        "error answers during the shutdown: {answered_badly:?}\n{log_before}"
    );
    let acknowledged = acknowledged.load(Ordering::Relaxed) + 3;

    // Without the WAL, only Delta can hold the rows.
    let wal = config.data_dir.join("wal");
    std::fs::rename(&wal, config.data_dir.join("wal-set-aside")).unwrap();
    let server = Server::start(&config);
    let stored = count(
        &server,
        "SELECT count(*) FROM spans WHERE service_name LIKE 'shutdown-%'",
    )
    .await;
    assert_eq!(stored as u64, acknowledged, "{}", server.stderr());
}

async fn post_with_key(server: &Server, key: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(server.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("authorization", format!("Bearer {key}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let keys = r#"[{"name":"ops","key":"ops-key","roles":["ingest","query"]}]"#;
    let server = Server::start_temp(&["--api-keys", keys]);
    let body = sample_traces("metrics").encode_to_vec();
    for _ in 0..2 {
        assert_eq!(post_with_key(&server, "ops-key", body.clone()).await, 200);
    }
    assert_eq!(
        post_with_key(&server, "ops-key", vec![0xff, 0xff]).await,
        400
    );
    assert_eq!(post_with_key(&server, "wrong", body.clone()).await, 401);
    // The metrics endpoint needs no key, on both HTTP ports.
    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(
            &text,
            r#"tarn_ingested_records_total{protocol="otlp_http",signal="traces"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &text,
            r#"tarn_ingest_requests_total{protocol="otlp_http",signal="traces",outcome="ok"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"tarn_ingest_requests_total{protocol="otlp_http",signal="traces",outcome="rejected"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"tarn_auth_failures_total{listener="http"}"#),
        1.0
    );
    assert!(
        metric(
            &text,
            r#"tarn_received_bytes_total{protocol="otlp_http",signal="traces"}"#
        ) >= (2 * body.len()) as f64
    );
    assert!(metric(&text, "tarn_wal_sync_seconds_count") >= 1.0);
    assert!(metric(&text, "tarn_wal_bytes") > 0.0);
    assert!(text.contains("# TYPE tarn_wal_sync_seconds histogram"));
    assert!(text.contains(r#"tarn_fresh_bytes{table="spans"}"#));
    let native = reqwest::get(format!("http://{}/metrics", server.native))
        .await
        .unwrap();
    assert_eq!(native.status(), 200);
}

#[test]
fn healthcheck_says_whether_a_gateway_answers() {
    let server = Server::start_temp(&[]);
    let status = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["healthcheck", "--url", &server.url("/health")])
        .status()
        .unwrap();
    assert!(status.success());
    let url = server.url("/health");
    server.stop();
    let output = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["healthcheck", "--timeout-secs", "1", "--url", &url])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tarn healthcheck"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_config_file_sits_under_flags_and_environment() {
    let temp = temp_dir();
    let data = temp.path().join("from-the-file");
    let file = temp.path().join("tarn.toml");
    let (from_file, from_env, overridden) = (free_port(), free_port(), free_port());
    std::fs::write(
        &file,
        format!(
            "data_dir = \"{}\"\nflush_interval_secs = 0.2\nmaintenance_interval_secs = 0\n\
             otlp_grpc_port = {from_file}\notlp_http_port = {overridden}\n\
             native_port = 0\nflightsql_port = {overridden}\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["serve", &format!("--config={}", file.display())])
        .arg("--flightsql-port=0")
        .env("TARN_OTLP_HTTP_PORT", from_env.to_string())
        .env_remove("TARN_DATA_DIR")
        .env_remove("TARN_CATALOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("tarn ready"))
    })
    .await
    .unwrap()
    .expect("tarn became ready");
    let port = |name: &str| -> u16 {
        ready
            .split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .and_then(|address| address.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap()
    };
    // The file set the gRPC port; the environment beat it for HTTP; a flag for FlightSQL.
    assert_eq!(port("otlp_grpc"), from_file);
    assert_eq!(port("otlp_http"), from_env);
    assert_ne!(port("flightsql"), overridden);
    // The file's data directory and flush interval apply: a span reaches Delta there.
    let body = sample_traces("config").encode_to_vec();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{from_env}/v1/traces"))
        .header("content-type", PROTOBUF)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits = std::fs::read_dir(data.join("lake/spans/_delta_log"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
        .count();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(commits >= 2, "no commit after the table's creation");
    // A typo in the file is refused at start, naming the setting.
    std::fs::write(&file, "flush_intervall_secs = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["serve", &format!("--config={}", file.display())])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("flush_intervall_secs"), "{stderr}");
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_on_request() {
    let server = Server::start_temp(&[]);
    let stderr = server.stderr();
    assert!(stderr.contains("tarn is ready"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in {stderr:?}");
    drop(server);
    let temp = temp_dir();
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        env: vec![("TARN_LOG_FORMAT".into(), "json".into())],
        ..Default::default()
    });
    let stderr = server.stderr();
    let ready = stderr
        .lines()
        .find(|line| line.contains("tarn is ready"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let record: serde_json::Value = serde_json::from_str(ready).unwrap();
    assert_eq!(record["level"], "INFO");
    assert!(record["startup_ms"].is_number() || record["startup_ms"].is_string());
}

/// `--self-telemetry-url`: a gateway's own logs and spans (through tarn-tracing and the
/// native protocol) arrive in another gateway's tables.
#[tokio::test]
async fn self_telemetry_reaches_another_gateway() {
    let ops = Server::start_temp(&[]);
    let url = format!("http://{}", ops.native);
    let observed =
        Server::start_temp(&["--self-telemetry-url", &url, "--flush-interval-secs", "0.2"]);
    let body = sample_traces("observed").encode_to_vec();
    assert_eq!(
        observed
            .post("/v1/traces", PROTOBUF, None, body)
            .await
            .status,
        200
    );
    assert_eq!(count(&observed, "SELECT count(*) FROM spans").await, 3);
    let mut seen = (0, 0);
    for _ in 0..60 {
        let logs = count(
            &ops,
            "SELECT count(*) FROM log_entries WHERE service_name = 'tarn' AND msg LIKE '%tarn is ready%'",
        )
        .await;
        let spans = count(
            &ops,
            "SELECT count(*) FROM spans WHERE service_name = 'tarn' AND name IN ('ingest', 'delta_commit', 'query')",
        )
        .await;
        seen = (logs, spans);
        if logs > 0 && spans >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen.0 > 0 && seen.1 >= 3,
        "logs and spans seen: {seen:?}\n{}",
        observed.stderr()
    );
}
