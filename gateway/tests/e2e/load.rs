//! `tarn load`: the generator the benchmarks rely on sends exactly what it says, over both
//! transports, and the bench shape has the structure the query benchmark assumes.

use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use crate::harness::Server;

fn run_load(server: &Server, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("load")
        .args(args)
        .args(["--drain-secs", "0"])
        .arg("--flightsql")
        .arg(format!("grpc://{}", server.flightsql))
        .output()
        .expect("tarn load runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "tarn load {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn count(server: &Server, sql: &str) -> i64 {
    let batches = server.query(sql).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn bench_shape_sends_exact_totals_for_every_signal() {
    let server = Server::start_temp(&[]);
    let grpc = server.otlp_grpc.to_string();
    let http = server.otlp_http.to_string();
    for (signal, table, transport, target) in [
        ("traces", "spans", "grpc", &grpc),
        ("logs", "log_entries", "http", &http),
        ("metrics", "measures", "grpc", &grpc),
    ] {
        let stdout = run_load(
            &server,
            &[
                "--target",
                target,
                "--transport",
                transport,
                "--signal",
                signal,
                "--shape",
                "bench",
                "--total",
                "3001",
                "--batch",
                "256",
                "--concurrency",
                "3",
            ],
        );
        assert!(stdout.contains("acknowledged       3001"), "{stdout}");
        assert_eq!(
            count(&server, &format!("SELECT count(*) FROM {table}")).await,
            3001,
            "{signal}"
        );
    }
    // Traces of 6–14 spans under a root; about 1% errors; 50 services.
    let traces = count(&server, "SELECT count(DISTINCT trace_id) FROM spans").await;
    assert!(
        (3001 / 14..=3001 / 6 + 12).contains(&traces),
        "{traces} traces"
    );
    let roots = count(
        &server,
        "SELECT count(*) FROM spans WHERE parent_span_id IS NULL",
    )
    .await;
    assert_eq!(roots, traces);
    let errors = count(&server, "SELECT count(*) FROM spans WHERE status_code = 2").await;
    assert!((5..=80).contains(&errors), "{errors} errors");
    let services = count(&server, "SELECT count(DISTINCT service_name) FROM spans").await;
    assert_eq!(services, 50);
    // The gauges cover the most recent instants: 3001 points are 20 instants of 150.
    let recent = count(
        &server,
        "SELECT count(*) FROM measures WHERE name = 'cpu.utilization' \
         AND time >= now() - INTERVAL '10 minutes'",
    )
    .await;
    assert_eq!(recent, 1001);
}

#[tokio::test]
async fn timed_uniform_load_accounts_for_every_record() {
    let server = Server::start_temp(&[]);
    let stdout = run_load(
        &server,
        &[
            "--target",
            &server.otlp_http.to_string(),
            "--transport",
            "http",
            "--warmup-secs",
            "0.2",
            "--duration-secs",
            "1",
            "--pid",
            &server.pid().to_string(),
            "--visibility-probes",
            "5",
        ],
    );
    // Each probe is counted by a query before the next is sent.
    assert!(stdout.contains("ack→visible"), "{stdout}");
    // This line compares what FlightSQL finds with what was acknowledged.
    let stored = stdout
        .lines()
        .find(|line| line.starts_with("stored"))
        .unwrap_or_else(|| panic!("no stored line in {stdout}"));
    let numbers: Vec<u64> = stored
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{stored}");
    assert!(numbers[0] >= numbers[1] && numbers[1] > 0, "{stored}");
    assert!(stdout.contains("per gateway CPU-s"), "{stdout}");
}

#[tokio::test]
async fn native_load_stores_exactly_what_was_acknowledged() {
    let server = Server::start_temp(&[]);
    // 6 blocks of at most 4,000 events from 3 callers: log, metrics, cpu, log, metrics and
    // a short final block of 1 event that goes to the log stream.
    let stdout = run_load(
        &server,
        &[
            "--protocol",
            "native",
            "--target",
            &server.native.to_string(),
            "--total",
            "20001",
            "--block-events",
            "4000",
            "--concurrency",
            "3",
            "--pid",
            &server.pid().to_string(),
        ],
    );
    assert!(
        stdout.contains("acknowledged       20001 events"),
        "{stdout}"
    );
    assert!(stdout.contains("per gateway CPU-s"), "{stdout}");
    let process_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("run"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run line in {stdout}"))
        .to_owned();
    let rows =
        |table: &str| format!("SELECT count(*) FROM {table} WHERE process_id = '{process_id}'");
    // Logs: 4,000 + 4,000 + 1; metrics: 4,000 + 4,000; spans: 4,000 cpu events = 2,000 spans.
    assert_eq!(count(&server, &rows("log_entries")).await, 8001);
    assert_eq!(count(&server, &rows("measures")).await, 8000);
    assert_eq!(count(&server, &rows("spans")).await, 2000);
    assert!(
        stdout.contains("stored             18001 rows (expected 18001)"),
        "{stdout}"
    );
    // Thread spans nest: 1,000 outer spans at depth 0, each around one inner span at depth 1.
    let inner = count(
        &server,
        &format!(
            "SELECT count(*) FROM spans WHERE process_id = '{process_id}' AND depth = 1 \
             AND parent_span_id IS NOT NULL"
        ),
    )
    .await;
    assert_eq!(inner, 1000);
    // Half the log events carry a formatted message.
    let formatted = count(
        &server,
        &format!(
            "SELECT count(*) FROM log_entries WHERE process_id = '{process_id}' \
             AND msg LIKE 'request % handled in % ms'"
        ),
    )
    .await;
    assert_eq!(formatted, 4000);
}
