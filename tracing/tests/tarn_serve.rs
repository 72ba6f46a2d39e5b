//! The example program (`examples/instrumented.rs`) against a real `tarn serve`, checked
//! with SQL over FlightSQL (`tarn query`). The tarn binary is `TARN_BIN` when set, else the
//! one `cargo test --workspace` builds next to this test (`target/debug/tarn`):
//!
//! ```sh
//! cargo test --workspace            # or, for this crate alone:
//! cargo build -p tarn-gateway && cargo test -p tarn-tracing --test tarn_serve
//! ```
//!
//! Without a binary each test fails under `CI=true`, and elsewhere prints why it skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn tarn_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("TARN_BIN").map(PathBuf::from).or_else(|| {
        // target/debug/deps/tarn_serve-<hash> -> target/debug/tarn
        let exe = std::env::current_exe().ok()?;
        let sibling = exe.parent()?.parent()?.join("tarn");
        sibling.is_file().then_some(sibling)
    });
    if bin.is_none() {
        let reason = "no tarn binary: set TARN_BIN or build it (cargo build -p tarn-gateway)";
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{reason}");
        }
        eprintln!("{reason}: skipped");
    }
    bin
}

/// `cargo test` builds the examples next to the test binaries' directory.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    dir.join("examples").join("instrumented")
}

struct Tarn {
    child: Child,
    native: String,
    flightsql: String,
}

impl Tarn {
    /// Starts `tarn serve` on `data`, with the given native and FlightSQL ports (0: any).
    fn start(bin: &Path, data: &Path, native: u16, flightsql: u16) -> Tarn {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--otlp-grpc-port", "0", "--otlp-http-port", "0"])
            .args(["--native-port", &native.to_string()])
            .args(["--flightsql-port", &flightsql.to_string()])
            .args(["--flush-interval-secs", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tarn serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("tarn ready") {
                    let _listener_gone = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("tarn serve is ready within a minute");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .expect("address in the ready line")
                .to_owned()
        };
        Tarn {
            native: field("native"),
            flightsql: field("flightsql"),
            child,
        }
    }

    fn port(addr: &str) -> u16 {
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    fn stop(mut self) {
        let _already_dead = self.child.kill();
        let _status = self.child.wait();
    }
}

/// Runs SQL with `tarn query --format json`: one object per row.
fn query(bin: &Path, flightsql: &str, sql: &str) -> Vec<serde_json::Value> {
    let out = Command::new(bin)
        .args(["query", "--format", "json", "--url"])
        .arg(format!("grpc://{flightsql}"))
        .arg(sql)
        .output()
        .expect("tarn query runs");
    assert!(
        out.status.success(),
        "tarn query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

/// Queries until `ready` accepts the rows (ingested data may take a moment to show).
fn query_until(
    bin: &Path,
    flightsql: &str,
    sql: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = query(bin, flightsql, sql);
        if ready(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the example; returns its `stats` line as key/value pairs.
fn run_example(native: &str, args: &[&str]) -> Child {
    Command::new(example())
        .args(args)
        .env("TARN_TELEMETRY_URL", format!("http://{native}"))
        .env("TARN_TELEMETRY_CONSOLE", "off")
        .env("TARN_TELEMETRY_FLUSH_PERIOD", "0.2")
        .env_remove("MICROMEGAS_TELEMETRY_URL")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts (cargo test builds it)")
}

fn stats(child: Child) -> std::collections::HashMap<String, String> {
    let out = child.wait_with_output().expect("example output");
    assert!(out.status.success(), "the example failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("stats "))
        .expect("a stats line");
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn str_of<'a>(row: &'a serde_json::Value, column: &str) -> &'a str {
    row.get(column).and_then(|v| v.as_str()).unwrap_or_default()
}

fn i64_of(row: &serde_json::Value, column: &str) -> i64 {
    row.get(column)
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(-1)
}

#[test]
fn example_logs_metrics_and_spans_queryable_with_sql() {
    let Some(bin) = tarn_bin() else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let tarn = Tarn::start(&bin, data.path(), 0, 0);
    let s = stats(run_example(&tarn.native, &["--rounds", "3"]));
    assert_eq!(s["dropped"], "0");
    assert_eq!(s["flushed"], "true");
    let pid = s["process_id"].clone();

    let logs = query_until(
        &bin,
        &tarn.flightsql,
        &format!(
            "SELECT msg, level, target FROM log_entries WHERE process_id = '{pid}' ORDER BY time"
        ),
        |rows| rows.iter().any(|r| str_of(r, "msg") == "example done"),
    );
    let msgs: Vec<&str> = logs.iter().map(|r| str_of(r, "msg")).collect();
    for expected in [
        "example started",
        "round 0 begins",
        "tagged warning in round 1",
        "round 2: 5 words, total 50",
        "example done",
    ] {
        assert!(msgs.contains(&expected), "{expected:?} in {msgs:?}");
    }
    assert!(
        logs.iter()
            .any(|r| str_of(r, "msg") == "tagged warning in round 1" && i64_of(r, "level") == 3)
    );

    let measures = query_until(
        &bin,
        &tarn.flightsql,
        &format!(
            "SELECT name, unit, value FROM measures WHERE process_id = '{pid}' AND name = 'rounds_done' ORDER BY time"
        ),
        |rows| rows.len() >= 3,
    );
    let values: Vec<f64> = measures
        .iter()
        .filter_map(|r| r.get("value").and_then(serde_json::Value::as_f64))
        .collect();
    assert_eq!(values, [0.0, 1.0, 2.0]);
    assert!(measures.iter().all(|r| str_of(r, "unit") == "count"));

    let spans = query_until(
        &bin,
        &tarn.flightsql,
        &format!(
            "SELECT name, span_id, parent_span_id, depth, duration_ns FROM spans WHERE process_id = '{pid}'"
        ),
        |rows| rows.len() >= 15,
    );
    let named = |suffix: &str| -> Vec<&serde_json::Value> {
        spans
            .iter()
            .filter(|r| str_of(r, "name").ends_with(suffix))
            .collect()
    };
    let (parse, tokenize, load, fetch) = (
        named("::parse"),
        named("tokenize"),
        named("::load"),
        named("::fetch"),
    );
    assert_eq!(
        (parse.len(), tokenize.len(), load.len(), fetch.len()),
        (3, 3, 3, 6),
        "{spans:?}"
    );
    assert!(spans.iter().all(|r| i64_of(r, "duration_ns") > 0));
    // Thread spans nest: each `tokenize` is one level below a `parse`.
    for t in &tokenize {
        let parent = parse
            .iter()
            .find(|p| str_of(p, "span_id") == str_of(t, "parent_span_id"))
            .expect("tokenize's parent is a parse span");
        assert_eq!(i64_of(t, "depth"), i64_of(parent, "depth") + 1);
    }
    // Async spans: each `fetch` has a `load` parent and lasts at least its 2 ms sleep.
    for f in &fetch {
        assert!(
            load.iter()
                .any(|l| str_of(l, "span_id") == str_of(f, "parent_span_id")),
            "fetch's parent is a load span"
        );
        assert!(i64_of(f, "duration_ns") >= 2_000_000);
    }
    tarn.stop();
}

#[test]
fn example_survives_a_gateway_restart() {
    let Some(bin) = tarn_bin() else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let tarn = Tarn::start(&bin, data.path(), 0, 0);
    let (native, flightsql) = (tarn.native.clone(), tarn.flightsql.clone());
    let example = run_example(&native, &["--rounds", "40", "--pause-ms", "50"]);
    std::thread::sleep(Duration::from_millis(500));
    tarn.stop();
    // Down for a second while the example keeps running.
    std::thread::sleep(Duration::from_secs(1));
    let tarn = Tarn::start(
        &bin,
        data.path(),
        Tarn::port(&native),
        Tarn::port(&flightsql),
    );
    let s = stats(example);
    assert_eq!(s["dropped"], "0");
    assert_eq!(s["flushed"], "true");
    assert!(s["retries"].parse::<u64>().unwrap_or(0) > 0, "{s:?}");
    let max_call: u64 = s["max_call_ns"].parse().unwrap_or(u64::MAX);
    assert!(
        max_call < 10_000_000,
        "an instrumentation call took {max_call} ns"
    );
    let pid = &s["process_id"];
    let rows = query_until(
        &bin,
        &tarn.flightsql,
        &format!("SELECT value FROM measures WHERE process_id = '{pid}' AND name = 'rounds_done'"),
        |rows| rows.len() >= 40,
    );
    assert_eq!(rows.len(), 40, "every round's metric arrived");
    tarn.stop();
}
