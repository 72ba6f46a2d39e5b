//! Fault tests: sustained ingest through the real gateway while something breaks; every
//! acknowledged span must be in the tables exactly once at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use prost::Message;
use tarn_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use tarn_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::harness::{Server, ServerConfig, data_dir, post_to, temp_dir, try_post_to};
use crate::otlp_data::{kv, resource, string};

const SPANS_PER_REQUEST: u64 = 50;

/// A request of spans whose span ids are `first..first + SPANS_PER_REQUEST`.
fn request(service: &str, first: u64, resource_suffix: Option<u64>) -> Vec<u8> {
    let mut resource = resource(service);
    if let Some(suffix) = resource_suffix {
        // A new process every request: each one needs the catalog.
        resource
            .attributes
            .push(kv("service.instance.id", string(&suffix.to_string())));
    }
    let now = 1_767_225_600_000_000_000_u64;
    let spans = (first..first + SPANS_PER_REQUEST)
        .map(|id| Span {
            trace_id: [&[1_u8; 8][..], &id.to_be_bytes()].concat(),
            span_id: id.to_be_bytes().to_vec(),
            name: "fault".into(),
            start_time_unix_nano: now + id,
            end_time_unix_nano: now + id + 1_000,
            attributes: vec![kv("payload", string(&"x".repeat(200)))],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// What the senders saw.
#[derive(Debug, Default)]
struct Ledger {
    acknowledged: Mutex<Vec<u64>>,
    refused: AtomicU64,
    failed: AtomicU64,
    /// The longest a request took to be answered, in milliseconds.
    slowest_ms: AtomicU64,
}

/// Senders that post new spans to whatever address `target` holds until `stop`.
fn start_senders(
    service: &'static str,
    target: Arc<Mutex<String>>,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    senders: u64,
    new_process_each_time: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(1));
    (0..senders)
        .map(|_| {
            let (target, ledger, stop, next) =
                (target.clone(), ledger.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(SPANS_PER_REQUEST, Ordering::Relaxed);
                    let url = format!("{}/v1/traces", target.lock().unwrap());
                    let suffix = new_process_each_time.then_some(first);
                    let body = request(service, first, suffix);
                    let attempt = tokio::time::timeout(
                        Duration::from_secs(30),
                        try_post_to(&url, "application/x-protobuf", None, body),
                    );
                    let sent = Instant::now();
                    let outcome = attempt.await;
                    let took = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
                    ledger.slowest_ms.fetch_max(took, Ordering::Relaxed);
                    match outcome {
                        Ok(Ok(response)) if response.status == 200 => {
                            ledger
                                .acknowledged
                                .lock()
                                .unwrap()
                                .extend(first..first + SPANS_PER_REQUEST);
                        }
                        Ok(Ok(response)) if response.status == 503 || response.status == 429 => {
                            ledger.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => {
                            ledger.failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Compares the ledger with the table; returns (acknowledged, found, lost, duplicated).
async fn audit(server: &Server, service: &str, ledger: &Ledger) -> (usize, usize, usize, usize) {
    let batches = server
        .query(&format!(
            "SELECT span_id, count(*) AS n FROM spans WHERE service_name = '{service}' GROUP BY span_id"
        ))
        .await;
    let mut stored: HashMap<u64, i64> = HashMap::new();
    for batch in &batches {
        let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        let ids = ids.as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let id = u64::from_str_radix(ids.value(i), 16).unwrap();
            stored.insert(id, counts.value(i));
        }
    }
    let acknowledged = ledger.acknowledged.lock().unwrap().clone();
    let lost = acknowledged
        .iter()
        .filter(|id| !stored.contains_key(id))
        .count();
    let duplicated = stored.values().filter(|n| **n > 1).count();
    (acknowledged.len(), stored.len(), lost, duplicated)
}

fn report(
    name: &str,
    (acknowledged, found, lost, duplicated): (usize, usize, usize, usize),
    extra: &str,
) {
    eprintln!(
        "FAULT {name}: acknowledged {acknowledged} records, found {found}, lost {lost}, duplicated {duplicated}{extra}"
    );
}

/// Kills the gateway with SIGKILL `kills` times, 200 to 1,500 ms apart (a fixed
/// pseudo-random sequence from `seed`), restarting it each time and pointing `target` at
/// the new one's `address`; returns the last gateway.
async fn kill_at_random_moments(
    mut server: Server,
    config: &ServerConfig,
    target: &Mutex<String>,
    address: fn(&Server) -> std::net::SocketAddr,
    kills: usize,
    seed: u64,
) -> Server {
    let mut rng = seed;
    for _ in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(200 + rng % 1300)).await;
        server.kill();
        server = Server::start(config);
        *target.lock().unwrap() = format!("http://{}", address(&server));
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_spans_survive_twenty_kill_9s() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec!["--flush-interval-secs".into(), "0.3".into()],
        ..Default::default()
    };
    let server = Server::start(&config);
    let target = Arc::new(Mutex::new(format!("http://{}", server.otlp_http)));
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(
        "kill9",
        target.clone(),
        ledger.clone(),
        stop.clone(),
        4,
        false,
    );
    let server = kill_at_random_moments(
        server,
        &config,
        &target,
        |server| server.otlp_http,
        20,
        0x2545_f491_4f6c_dd1d_u64,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let result = audit(&server, "kill9", &ledger).await;
    report(
        "kill -9 x20",
        result,
        &format!(
            ", {} failed requests",
            ledger.failed.load(Ordering::Relaxed)
        ),
    );
    assert!(result.0 > 0, "nothing was acknowledged");
    assert_eq!(result.2, 0, "acknowledged spans lost");
    assert_eq!(result.3, 0, "spans duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_times_more_load_than_the_gateway_takes() {
    let server = Server::start_temp(&[
        "--max-inflight-bytes",
        "2000000",
        "--max-fresh-bytes",
        "16000000",
        "--flush-interval-secs",
        "1",
    ]);
    let target = Arc::new(Mutex::new(format!("http://{}", server.otlp_http)));
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders("overload", target, ledger.clone(), stop.clone(), 64, false);
    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(15) {
        peak_rss = peak_rss.max(server.rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let refused = ledger.refused.load(Ordering::Relaxed);
    let result = audit(&server, "overload", &ledger).await;
    report(
        "overload (64 senders)",
        result,
        &format!(
            ", {refused} requests refused with 503, peak RSS {} MiB",
            peak_rss >> 20
        ),
    );
    assert!(refused > 0, "the gateway never said 'try later'");
    assert_eq!(result.2, 0, "acknowledged spans lost");
    assert_eq!(result.3, 0, "spans duplicated");
    assert!(
        peak_rss < 1 << 30,
        "peak RSS {peak_rss} bytes: memory is not bounded"
    );
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto S3 server, stopped when dropped.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl S3Server {
    fn start(bucket: &str) -> Option<S3Server> {
        let bin = crate::tools::python_venv("s3")?;
        let port = free_port();
        let child = std::process::Command::new(bin.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let server = S3Server { child, endpoint };
        let create = format!(
            "import boto3, time\n\
             for _ in range(100):\n    \
                 try:\n        \
                     boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='{bucket}')\n        \
                     break\n    \
                 except Exception:\n        \
                     time.sleep(0.1)\n",
            server.endpoint
        );
        crate::tools::run(
            std::process::Command::new(bin.join("python"))
                .arg("-c")
                .arg(create),
        );
        Some(server)
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_s3_server_stopped_for_a_minute_loses_nothing() {
    let Some(s3) = S3Server::start("lake") else {
        return;
    };
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec![
            "--object-store".into(),
            "s3://lake/tarn".into(),
            "--flush-interval-secs".into(),
            "1".into(),
        ],
        env: s3.env(),
        ..Default::default()
    };
    let server = Server::start(&config);
    let target = Arc::new(Mutex::new(format!("http://{}", server.otlp_http)));
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders("s3-outage", target, ledger.clone(), stop.clone(), 4, false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = ledger.acknowledged.lock().unwrap().len();
    s3.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let during = ledger.acknowledged.lock().unwrap().len() - before;
    s3.signal("-CONT");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    // Graceful stop commits everything left; a new server then reads only committed data.
    server.stop();
    let server = Server::start(&config);
    let result = audit(&server, "s3-outage", &ledger).await;
    report(
        "S3 stopped 60 s",
        result,
        &format!(", {during} spans acknowledged during the outage"),
    );
    assert!(
        during > 0,
        "ingest stalled while S3 was away: the WAL should take it"
    );
    assert_eq!(result.2, 0, "acknowledged spans lost");
    assert_eq!(result.3, 0, "spans duplicated");
}

/// A private PostgreSQL cluster (initdb + pg_ctl), stopped and removed when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl Postgres {
    fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path().join("bin"))
            .find(|bin| bin.join("initdb").exists());
        let Some(bin) = bin else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL server binaries (initdb) are required under CI=true");
            }
            eprintln!("SKIPPED: no PostgreSQL server binaries");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let postgres = Postgres {
            dir,
            port: free_port(),
            bin,
        };
        postgres.as_postgres(&[
            postgres.bin.join("initdb").to_str().unwrap(),
            "-D",
            postgres.data().to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        postgres.ctl("start");
        Some(postgres)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, args: &[&str]) {
        // initdb and the server refuse to run as root.
        let mut command = if nix_is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]);
            command
        } else {
            std::process::Command::new(args[0])
        };
        if nix_is_root() {
            command.args(args);
        } else {
            command.args(&args[1..]);
        }
        crate::tools::run(command.stdout(std::process::Stdio::piped()));
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let mut args = vec![
            self.bin.join("pg_ctl").to_str().unwrap().to_owned(),
            "-D".into(),
            self.data().to_str().unwrap().to_owned(),
            "-l".into(),
            log.to_str().unwrap().to_owned(),
            "-w".into(),
            "-o".into(),
            options,
        ];
        if action == "stop" {
            args.extend(["-m".into(), "fast".into()]);
        }
        args.push(action.into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.as_postgres(&refs);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let options = format!("-p {}", self.port);
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-o",
                &options,
                "stop",
            ])
            .output()
            .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_ingest_loses_nothing() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let server = Server::start_temp(&["--catalog", &postgres.url(), "--flush-interval-secs", "1"]);
    let target = Arc::new(Mutex::new(format!("http://{}", server.otlp_http)));
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Every request brings a new process, so every request needs the catalog.
    let senders = start_senders("pg-restart", target, ledger.clone(), stop.clone(), 4, true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.ctl("stop");
    tokio::time::sleep(Duration::from_secs(5)).await;
    postgres.ctl("start");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let refused = ledger.refused.load(Ordering::Relaxed);
    let slowest = ledger.slowest_ms.load(Ordering::Relaxed);
    let result = audit(&server, "pg-restart", &ledger).await;
    report(
        "PostgreSQL restarted",
        result,
        &format!(", {refused} requests refused while it was down, slowest answer {slowest} ms"),
    );
    // Requests that need the catalog are refused once the pool gives up (10 s), or held
    // until PostgreSQL is back: either way the outage must have been felt.
    assert!(
        refused > 0 || slowest >= 1_000,
        "the outage did not reach requests that need the catalog ({refused} refused, slowest {slowest} ms)"
    );
    assert_eq!(result.2, 0, "acknowledged spans lost");
    assert_eq!(result.3, 0, "spans duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_one_catalog_and_one_lake() {
    let Some(s3) = S3Server::start("shared") else {
        return;
    };
    let Some(catalog) = crate::harness::postgres_database().await else {
        return;
    };
    let temps = [temp_dir(), temp_dir()];
    let configs: Vec<ServerConfig> = temps
        .iter()
        .map(|temp| ServerConfig {
            data_dir: data_dir(temp),
            catalog: Some(catalog.clone()),
            extra_args: vec![
                "--object-store".into(),
                "s3://shared/tarn".into(),
                "--flush-interval-secs".into(),
                "0.5".into(),
            ],
            env: s3.env(),
        })
        .collect();
    let servers: Vec<Server> = configs.iter().map(Server::start).collect();
    let ledgers = [Arc::new(Ledger::default()), Arc::new(Ledger::default())];
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (index, (server, ledger)) in servers.iter().zip(&ledgers).enumerate() {
        let target = Arc::new(Mutex::new(format!("http://{}", server.otlp_http)));
        let service = if index == 0 { "gateway-a" } else { "gateway-b" };
        senders.extend(start_senders(
            service,
            target,
            ledger.clone(),
            stop.clone(),
            3,
            true,
        ));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    for server in servers {
        server.stop();
    }
    let reader = Server::start(&configs[0]);
    for (service, ledger) in [("gateway-a", &ledgers[0]), ("gateway-b", &ledgers[1])] {
        let result = audit(&reader, service, ledger).await;
        report(&format!("two gateways, {service}"), result, "");
        assert!(result.0 > 0);
        assert_eq!(result.2, 0, "acknowledged spans lost");
        assert_eq!(result.3, 0, "spans duplicated");
    }
}

/// Restarts with nothing to ingest in between (a redeploy loop) must neither fail to start
/// nor hand out WAL sequence numbers that the tables have committed already: rows with such
/// a number would be taken for committed ones and dropped.
#[tokio::test]
async fn idle_restarts_keep_every_later_record() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec!["--flush-interval-secs".into(), "0.2".into()],
        ..Default::default()
    };
    let mut sent = 0;
    for round in 0..4_u64 {
        let server = Server::start(&config);
        // Rounds 1 and 2 are idle restarts; rounds 0 and 3 ingest and commit.
        if round == 0 || round == 3 {
            // Span ids start at 1: an all-zero id is invalid OTLP and would be refused.
            let body = request("restarts", round * 1_000 + 1, None);
            let response = try_post_to(
                &format!("http://{}/v1/traces", server.otlp_http),
                "application/x-protobuf",
                None,
                body,
            )
            .await
            .expect("gateway reachable");
            assert_eq!(response.status, 200);
            sent += SPANS_PER_REQUEST as i64;
            // Committed and its WAL segment released before the stop.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        let batches = server
            .query("SELECT count(*) FROM spans WHERE service_name = 'restarts'")
            .await;
        let found = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(found, sent, "round {round}: {}", server.stderr());
        // Off this thread: the test's clients share it and must read the server's GOAWAY.
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .expect("tarn stops cleanly");
    }
    let server = Server::start(&config);
    let batches = server
        .query("SELECT count(*) FROM spans WHERE service_name = 'restarts'")
        .await;
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        sent
    );
}

/// Log events per native block.
const EVENTS_PER_BLOCK: u64 = 50;

/// What retrying senders saw: the messages of acknowledged native blocks, and the retries.
#[derive(Debug, Default)]
struct RetryLedger {
    acknowledged: Mutex<Vec<String>>,
    /// Answers other than 200 (refusals, connection failures, errors), each retried.
    retried: AtomicU64,
    /// The longest a request took to be answered, in milliseconds.
    slowest_ms: AtomicU64,
}

/// Posts `body` to `path` on whatever gateway `target` names until it is acknowledged,
/// as real clients do (the Micromegas sink, collectors): the same bytes every time. A
/// permanent refusal (4xx but 429) fails the test.
async fn post_until_acknowledged(
    target: &Mutex<String>,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    ledger: &RetryLedger,
) {
    loop {
        let url = format!("{}{path}", target.lock().unwrap());
        let attempt = tokio::time::timeout(
            Duration::from_secs(30),
            try_post_to(&url, content_type, None, body.clone()),
        );
        let sent = Instant::now();
        let outcome = attempt.await;
        let took = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
        ledger.slowest_ms.fetch_max(took, Ordering::Relaxed);
        match outcome {
            Ok(Ok(response)) if response.status == 200 => return,
            Ok(Ok(response)) if (400..500).contains(&response.status) && response.status != 429 => {
                panic!(
                    "{path} refused for good: {} {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                )
            }
            _ => {
                ledger.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The content type of native bodies.
const NATIVE_BODY: &str = "application/octet-stream";

/// The start of the test's native processes, Unix ns (tick 0; 1 tick = 1 ns).
const NATIVE_START_NANOS: i64 = 1_767_225_600_000_000_000;

/// A native process with a fresh id.
fn native_process() -> tarn_proto::native::ProcessInfo {
    use tarn_proto::native::time::format_rfc3339_nanos;
    tarn_proto::native::ProcessInfo {
        process_id: uuid::Uuid::new_v4().to_string(),
        exe: "faults".into(),
        username: "test".into(),
        realname: "test".into(),
        computer: "test-host".into(),
        distro: "linux".into(),
        cpu_brand: String::new(),
        tsc_frequency: 1_000_000_000,
        start_time: format_rfc3339_nanos(NATIVE_START_NANOS),
        start_ticks: 0,
        parent_process_id: None,
        properties: [("service.name".to_owned(), "native-faults".to_owned())]
            .into_iter()
            .collect(),
    }
}

/// A log stream of `process_id` with a fresh id.
fn native_log_stream(process_id: &str) -> tarn_proto::native::StreamInfo {
    tarn_proto::native::StreamKind::Log.stream_info(
        process_id.to_owned(),
        uuid::Uuid::new_v4().to_string(),
        Default::default(),
    )
}

/// The log block at stream position `offset`: [`EVENTS_PER_BLOCK`] messages
/// `<prefix>-e<position>`, with a fresh block id; and its messages.
fn native_log_block(
    stream: &tarn_proto::native::StreamInfo,
    offset: u64,
    prefix: &str,
) -> (tarn_proto::native::Block, Vec<String>) {
    use tarn_proto::native::time::format_rfc3339_nanos;
    use tarn_proto::native::{Block, LogBlockWriter, LogDesc};
    const DESC: LogDesc<'static> = LogDesc {
        key: 0x51,
        level: 3,
        fmt_str: "{}",
        target: "faults",
        module_path: "faults",
        file: "faults.rs",
        line: 1,
    };
    let mut writer = LogBlockWriter::new();
    let mut messages = Vec::new();
    for n in offset..offset + EVENTS_PER_BLOCK {
        let message = format!("{prefix}-e{n}");
        writer.log_string(&DESC, i64::try_from(n).unwrap() * 1_000, &message);
        messages.push(message);
    }
    let buffers = writer.finish();
    let begin_ticks = i64::try_from(offset).unwrap() * 1_000;
    let end_ticks = begin_ticks + i64::try_from(EVENTS_PER_BLOCK).unwrap() * 1_000;
    let block = Block {
        block_id: uuid::Uuid::new_v4().to_string(),
        stream_id: stream.stream_id.clone(),
        process_id: stream.process_id.clone(),
        begin_time: format_rfc3339_nanos(NATIVE_START_NANOS + begin_ticks),
        begin_ticks,
        end_time: format_rfc3339_nanos(NATIVE_START_NANOS + end_ticks),
        end_ticks,
        payload: buffers.to_payload(),
        object_offset: i64::try_from(offset).unwrap(),
        nb_objects: i32::try_from(buffers.nb_objects).unwrap(),
    };
    (block, messages)
}

/// One native process with `senders` log streams, one caller each, sending blocks of
/// [`EVENTS_PER_BLOCK`] uniquely named messages until `stop`; every block a caller started
/// is delivered, even past `stop`. Returns the process id and the callers.
fn start_native_senders(
    target: Arc<Mutex<String>>,
    ledger: Arc<RetryLedger>,
    stop: Arc<AtomicBool>,
    senders: usize,
) -> (String, Vec<tokio::task::JoinHandle<()>>) {
    use tarn_proto::native::{encode_block, encode_process, encode_stream};
    let process = native_process();
    let handles = (0..senders)
        .map(|sender| {
            let (target, ledger, stop, process) = (
                target.clone(),
                ledger.clone(),
                stop.clone(),
                process.clone(),
            );
            tokio::spawn(async move {
                let stream = native_log_stream(&process.process_id);
                let post = |path: &'static str, body: Vec<u8>| {
                    post_until_acknowledged(&target, path, NATIVE_BODY, body, &ledger)
                };
                post("/ingestion/insert_process", encode_process(&process)).await;
                post("/ingestion/insert_stream", encode_stream(&stream)).await;
                let mut offset = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    let (block, messages) =
                        native_log_block(&stream, offset, &format!("s{sender}"));
                    post("/ingestion/insert_block", encode_block(&block)).await;
                    ledger.acknowledged.lock().unwrap().extend(messages);
                    offset += EVENTS_PER_BLOCK;
                }
            })
        })
        .collect();
    (process.process_id, handles)
}

/// Compares the native ledger with `log_entries`; returns (acknowledged, found, lost,
/// duplicated).
async fn audit_native(
    server: &Server,
    process_id: &str,
    ledger: &RetryLedger,
) -> (usize, usize, usize, usize) {
    let batches = server
        .query(&format!(
            "SELECT msg, count(*) AS n FROM log_entries WHERE process_id = '{process_id}' GROUP BY msg"
        ))
        .await;
    let mut stored: HashMap<String, i64> = HashMap::new();
    for batch in &batches {
        let messages = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        let messages = messages.as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            stored.insert(messages.value(i).to_owned(), counts.value(i));
        }
    }
    let acknowledged = ledger.acknowledged.lock().unwrap().clone();
    let lost = acknowledged
        .iter()
        .filter(|message| !stored.contains_key(*message))
        .count();
    let duplicated = stored.values().filter(|n| **n > 1).count();
    (acknowledged.len(), stored.len(), lost, duplicated)
}

/// The Micromegas clients retry a block until it is acknowledged. A gateway killed after
/// a block's rows were durable but before the catalog marked the block as seen would
/// store it again on the retry; the block's catalog notes travel in the WAL with its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_native_blocks_are_stored_once_across_twenty_kill_9s() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec!["--flush-interval-secs".into(), "0.3".into()],
        ..Default::default()
    };
    let server = Server::start(&config);
    let target = Arc::new(Mutex::new(format!("http://{}", server.native)));
    let ledger = Arc::new(RetryLedger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (process_id, senders) =
        start_native_senders(target.clone(), ledger.clone(), stop.clone(), 4);
    let server = kill_at_random_moments(
        server,
        &config,
        &target,
        |server| server.native,
        20,
        0x9e37_79b9_7f4a_7c15_u64,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let result = audit_native(&server, &process_id, &ledger).await;
    report(
        "native kill -9 x20",
        result,
        &format!(
            ", {} answers retried",
            ledger.retried.load(Ordering::Relaxed)
        ),
    );
    assert!(result.0 > 0, "nothing was acknowledged");
    assert_eq!(result.2, 0, "acknowledged log entries lost");
    assert_eq!(result.3, 0, "log entries stored twice");
}

/// The catalog going away after a block's rows are durable must neither fail the block
/// (its notes wait, and are applied before any later block) nor store it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_blocks_are_stored_once_across_a_postgres_restart() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let server = Server::start_temp(&["--catalog", &postgres.url(), "--flush-interval-secs", "1"]);
    let target = Arc::new(Mutex::new(format!("http://{}", server.native)));
    let ledger = Arc::new(RetryLedger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (process_id, senders) = start_native_senders(target, ledger.clone(), stop.clone(), 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.ctl("stop");
    tokio::time::sleep(Duration::from_secs(5)).await;
    postgres.ctl("start");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let retried = ledger.retried.load(Ordering::Relaxed);
    let slowest = ledger.slowest_ms.load(Ordering::Relaxed);
    let result = audit_native(&server, &process_id, &ledger).await;
    report(
        "native, PostgreSQL restarted",
        result,
        &format!(", {retried} answers retried, slowest answer {slowest} ms"),
    );
    // Refused, or held until PostgreSQL was back: either way the outage was felt.
    assert!(
        retried > 0 || slowest >= 1_000,
        "the outage did not reach the native clients ({retried} retried, slowest {slowest} ms)"
    );
    assert!(result.0 > 0, "nothing was acknowledged");
    assert_eq!(result.2, 0, "acknowledged log entries lost");
    assert_eq!(result.3, 0, "log entries stored twice");
}

/// Process ids that have more than one row in `processes`, among those of `service`.
async fn processes_stored_twice(server: &Server, service: &str) -> (usize, usize) {
    let batches = server
        .query(&format!(
            "SELECT process_id, count(*) AS n FROM processes WHERE service_name = '{service}' GROUP BY process_id"
        ))
        .await;
    let (mut processes, mut twice) = (0, 0);
    for batch in &batches {
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            processes += 1;
            if counts.value(i) > 1 {
                twice += 1;
            }
        }
    }
    (processes, twice)
}

/// Every request brings a new OTLP resource, so every request records a process, and is
/// retried until acknowledged (as collectors do); with kill -9s in between, no process may
/// get a second row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_new_processes_are_stored_once_across_ten_kill_9s() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec!["--flush-interval-secs".into(), "0.3".into()],
        ..Default::default()
    };
    let server = Server::start(&config);
    let target = Arc::new(Mutex::new(format!("http://{}", server.otlp_http)));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let ledger = Arc::new(RetryLedger::default());
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (target, stop, next, ledger) =
                (target.clone(), stop.clone(), next.clone(), ledger.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(SPANS_PER_REQUEST, Ordering::Relaxed);
                    let body = request("kill9-processes", first, Some(first));
                    post_until_acknowledged(
                        &target,
                        "/v1/traces",
                        "application/x-protobuf",
                        body,
                        &ledger,
                    )
                    .await;
                }
            })
        })
        .collect();
    let server = kill_at_random_moments(
        server,
        &config,
        &target,
        |server| server.otlp_http,
        10,
        0x6a09_e667_f3bc_c908_u64,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let (processes, twice) = processes_stored_twice(&server, "kill9-processes").await;
    eprintln!(
        "FAULT kill -9 x10, a new process each request: {processes} processes, {twice} stored twice, {} answers retried",
        ledger.retried.load(Ordering::Relaxed)
    );
    assert!(processes > 0, "no process stored");
    assert_eq!(twice, 0, "processes stored twice");
}

/// Concurrent first requests of one new resource (a collector's first batches after a
/// restart) make one `processes` row, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_of_a_process_store_it_once() {
    let server = Server::start_temp(&[]);
    for round in 0..5_u64 {
        let service = format!("concurrent-first-{round}");
        let requests = (0..8_u64).map(|i| {
            let url = server.url("/v1/traces");
            let body = request(&service, 1 + i * SPANS_PER_REQUEST, None);
            tokio::spawn(async move {
                post_to(&url, "application/x-protobuf", None, body)
                    .await
                    .status
            })
        });
        for status in futures::future::join_all(requests).await {
            assert_eq!(status.unwrap(), 200);
        }
        let (processes, twice) = processes_stored_twice(&server, &service).await;
        assert_eq!(processes, 1, "{service}: one resource is one process");
        assert_eq!(twice, 0, "{service}: the process was stored more than once");
    }
}

/// The catalog refuses a native process's record after its row is durable (a trigger on
/// the real SQLite catalog). `insert_process` must then fail, so the client retries it,
/// and the blocks that follow must be decoded, not parked for an `insert_process` that
/// the client will not send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_process_the_catalog_refused_at_first_still_gets_its_blocks() {
    use tarn_gateway::ingest::Ingestor;
    use tarn_gateway::native::NativeIngest;
    use tarn_lakehouse::{LakeConfig, Lakehouse};
    use tarn_proto::native::{encode_block, encode_process, encode_stream};

    let dir = temp_dir();
    let catalog_url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let mut config = LakeConfig::new(
        format!("file://{}", dir.path().join("lake").display()),
        catalog_url.clone(),
    );
    config.wal_dir = Some(dir.path().join("wal"));
    let lake = Arc::new(Lakehouse::open(config).await.unwrap());
    let native = NativeIngest::new(Arc::new(Ingestor::new(Arc::clone(&lake), usize::MAX)));
    let other = sqlx::SqlitePool::connect(&catalog_url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON processes \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&other)
    .await
    .unwrap();
    let process = native_process();
    let stream = native_log_stream(&process.process_id);
    let (block, messages) = native_log_block(&stream, 0, "refused");
    assert!(
        native
            .insert_process(&encode_process(&process))
            .await
            .is_err(),
        "the catalog refused the process: the client must be told to retry"
    );
    sqlx::query("DROP TRIGGER refuse")
        .execute(&other)
        .await
        .unwrap();
    native
        .insert_process(&encode_process(&process))
        .await
        .unwrap();
    native.insert_stream(&encode_stream(&stream)).await.unwrap();
    native.insert_block(&encode_block(&block)).await.unwrap();
    assert!(lake.catalog().block_known(&block.block_id).await.unwrap());
    let engine = lake.query_engine();
    let count = |table: &str| {
        let sql = format!(
            "SELECT count(*) FROM {table} WHERE process_id = '{}'",
            process.process_id
        );
        let engine = &engine;
        async move {
            let batches = engine
                .plan(&sql, None)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            batches[0].column(0).as_primitive::<Int64Type>().value(0)
        }
    };
    assert_eq!(count("processes").await, 1, "the process is stored once");
    assert_eq!(
        count("log_entries").await,
        i64::try_from(messages.len()).unwrap(),
        "the block's messages are stored"
    );
}
