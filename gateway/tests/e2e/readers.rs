//! Real FlightSQL clients (the `micromegas` Python client, ADBC, raw pyarrow.flight) and
//! real Delta readers (delta-rs, Polars, DuckDB's delta extension) against Tarn, at the
//! pinned versions in `compat-tests/flightsql-python` and `compat-tests/delta-readers`.

use std::path::Path;
use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use prost::Message;
use serde_json::Value;

use crate::harness::{Server, ServerConfig, data_dir, temp_dir};
use crate::otlp_data::sample_traces;
use crate::tools::{compat_dir, python_venv, run};

/// Runs a client script; returns its JSON line.
fn client(bin: &Path, script: &str, args: &[&str]) -> Value {
    let stdout = run(Command::new(bin.join("python"))
        .arg(compat_dir("flightsql-python").join(script))
        .args(args)
        .env_remove("MICROMEGAS_ANALYTICS_URI"));
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {stdout:?}: {e}"))
}

fn column(result: &Value, name: &str) -> Vec<Value> {
    let columns = result["columns"].as_array().unwrap();
    let index = columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {result}"));
    let mut values: Vec<Value> = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[index].clone())
        .collect();
    values.sort_by_key(|v| v.to_string());
    values
}

async fn count(server: &Server, sql: &str) -> i64 {
    server.query(sql).await[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0)
}

#[tokio::test]
async fn flightsql_clients() {
    let Some(bin) = python_venv("flightsql-python") else {
        return;
    };
    let server = Server::start_temp(&[]);
    let body = sample_traces("clients").encode_to_vec();
    assert_eq!(
        server
            .post("/v1/traces", "application/x-protobuf", None, body)
            .await
            .status,
        200
    );
    let uri = format!("grpc://{}", server.flightsql);
    let sql = "SELECT name, span_id, duration_ns FROM spans ORDER BY name";
    let names = [
        Value::from("GET /checkout"),
        Value::from("SELECT carts"),
        Value::from("consume"),
    ];

    // micromegas: DoGet with a TicketStatementQuery, no GetFlightInfo.
    for call in ["query", "query_arrow", "query_stream", "prepare"] {
        let result = client(&bin, "micromegas_client.py", &[&uri, call, sql]);
        assert_eq!(result["num_rows"], 3, "micromegas {call}: {result}");
        assert_eq!(column(&result, "name"), names, "micromegas {call}");
    }
    // Its time range headers restrict the spans' start times (2026-01-01T00:00:00.12Z).
    let inside = client(
        &bin,
        "micromegas_client.py",
        &[
            &uri,
            "query_arrow",
            sql,
            "--begin",
            "2026-01-01T00:00:00+00:00",
            "--end",
            "2026-01-01T01:00:00+00:00",
        ],
    );
    assert_eq!(inside["num_rows"], 3, "{inside}");
    let before = client(
        &bin,
        "micromegas_client.py",
        &[
            &uri,
            "query_arrow",
            sql,
            "--begin",
            "2020-01-01T00:00:00+00:00",
            "--end",
            "2020-01-02T00:00:00+00:00",
        ],
    );
    assert_eq!(before["num_rows"], 0, "{before}");
    let since = client(
        &bin,
        "micromegas_client.py",
        &[
            &uri,
            "query_arrow",
            sql,
            "--begin",
            "2026-01-01T00:00:00.124+00:00",
        ],
    );
    assert_eq!(
        since["num_rows"], 1,
        "only the span starting after the begin: {since}"
    );
    let cli = client(
        &bin,
        "micromegas_client.py",
        &[&uri, "cli", "SELECT count(*) AS n FROM spans"],
    );
    assert!(cli.to_string().contains('3'), "{cli}");

    // ADBC: CreatePreparedStatement, GetFlightInfo, DoGet, metadata.
    let adbc = client(&bin, "adbc_client.py", &[&uri, "query", sql]);
    assert_eq!(column(&adbc, "name"), names, "{adbc}");
    // Parameters: DoPut binds them, the new handle (SQL text) runs anywhere.
    let bound = client(
        &bin,
        "adbc_client.py",
        &[
            &uri,
            "params",
            "SELECT name FROM spans WHERE name = ? AND name <> '?' ORDER BY name",
            "--param",
            &serde_json::to_string(&names[0]).expect("a JSON string"),
        ],
    );
    assert_eq!(column(&bound, "name"), names[..1].to_vec(), "{bound}");
    let info = client(&bin, "adbc_client.py", &[&uri, "get_info"]);
    assert!(info.to_string().contains("tarn"), "{info}");
    let objects = client(&bin, "adbc_client.py", &[&uri, "get_objects"]);
    for table in [
        "spans",
        "log_entries",
        "measures",
        "histograms",
        "processes",
        "streams",
    ] {
        assert!(
            objects.to_string().contains(table),
            "get_objects lacks {table}: {objects}"
        );
    }
    let schema = client(&bin, "adbc_client.py", &[&uri, "get_table_schema", "spans"]);
    assert!(schema.to_string().contains("trace_id"), "{schema}");

    // Raw pyarrow.flight: statement, direct ticket, the prepared sequence.
    for call in ["flight_info", "ticket", "prepared"] {
        let result = client(&bin, "pyarrow_flight_client.py", &[&uri, call, sql]);
        assert_eq!(column(&result, "name"), names, "pyarrow {call}: {result}");
    }
    let catalogs = client(
        &bin,
        "pyarrow_flight_client.py",
        &[&uri, "command", "GetTables"],
    );
    assert!(catalogs.to_string().contains("spans"), "{catalogs}");
    let types = client(
        &bin,
        "pyarrow_flight_client.py",
        &[&uri, "command", "GetXdbcTypeInfo"],
    );
    assert!(types.to_string().contains("TIMESTAMP"), "{types}");
    let close = client(
        &bin,
        "pyarrow_flight_client.py",
        &[&uri, "action", "CloseSession"],
    );
    assert!(close.get("error").is_none(), "{close}");
}

fn read(bin: &Path, table: &Path, reader: &str) -> Value {
    let stdout = run(Command::new(bin.join("python"))
        .arg(compat_dir("delta-readers").join("read.py"))
        .arg(table)
        .arg(reader));
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("read.py {reader} printed {stdout:?}: {e}"))
}

#[tokio::test]
async fn delta_readers_read_the_raw_tables() {
    let Some(bin) = python_venv("delta-readers") else {
        return;
    };
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        ..Default::default()
    };
    let server = Server::start(&config);
    let fixtures = compat_dir("delta-readers").join("fixtures");
    for (path, file) in [
        ("/v1/traces", "traces.json"),
        ("/v1/logs", "logs.json"),
        ("/v1/metrics", "metrics.json"),
    ] {
        let body = std::fs::read(fixtures.join(file)).unwrap();
        let response = server.post(path, "application/json", None, body).await;
        assert_eq!(
            response.status,
            200,
            "{file}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    let body = sample_traces("readers").encode_to_vec();
    assert_eq!(
        server
            .post("/v1/traces", "application/x-protobuf", None, body)
            .await
            .status,
        200
    );
    // SIGTERM commits everything: the readers see only the Delta tables, Tarn stopped.
    server.stop();
    let lake = data_dir(&temp).join("lake");
    let mut counts = Vec::new();
    for table in [
        "spans",
        "log_entries",
        "measures",
        "histograms",
        "processes",
        "streams",
    ] {
        let results: Vec<Value> = ["deltalake", "polars", "duckdb"]
            .iter()
            .map(|reader| read(&bin, &lake.join(table), reader))
            .collect();
        for result in &results {
            assert!(result.get("error").is_none(), "{table}: {result}");
        }
        assert_eq!(
            results[0]["rows"], results[1]["rows"],
            "{table}: deltalake and polars differ"
        );
        assert_eq!(
            results[0]["rows"], results[2]["rows"],
            "{table}: deltalake and duckdb differ"
        );
        assert_eq!(
            results[0]["types"], results[2]["types"],
            "{table}: types differ"
        );
        counts.push((table, results[0]["num_rows"].as_i64().unwrap()));
    }
    // And the readers see exactly what FlightSQL serves.
    let server = Server::start(&config);
    for (table, rows) in counts {
        assert!(rows > 0, "{table} is empty");
        assert_eq!(
            count(&server, &format!("SELECT count(*) FROM {table}")).await,
            rows,
            "{table}"
        );
    }
}
