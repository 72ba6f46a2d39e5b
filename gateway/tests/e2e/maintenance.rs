//! `tarn maintain`: compaction, retention, checkpoints and vacuum on real tables.

use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use prost::Message;

use crate::harness::{Server, ServerConfig, data_dir, temp_dir};
use crate::otlp_data::sample_traces;

fn data_files(dir: &std::path::Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("_delta_log") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                count += 1;
            }
        }
    }
    count
}

async fn count(server: &Server, sql: &str) -> i64 {
    let batches = server.query(sql).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn maintain_compacts_expires_checkpoints_and_vacuums() {
    let temp = temp_dir();
    let dir = data_dir(&temp);
    let config = ServerConfig {
        data_dir: dir.clone(),
        extra_args: vec![
            "--flush-interval-secs".into(),
            "0.1".into(),
            "--maintenance-interval-secs".into(),
            "0".into(),
        ],
        ..Default::default()
    };
    let server = Server::start(&config);
    // Eight commits of the same day: eight small files.
    for round in 0..8 {
        let body = sample_traces(&format!("svc-{}", round % 2)).encode_to_vec();
        assert_eq!(
            server
                .post("/v1/traces", "application/x-protobuf", None, body)
                .await
                .status,
            200
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    // And one span from 2020, which retention will drop.
    let mut old = sample_traces("old");
    for span in &mut old.resource_spans[0].scope_spans[0].spans {
        span.start_time_unix_nano = 1_577_836_800_000_000_000;
        span.end_time_unix_nano = 1_577_836_800_000_001_000;
    }
    assert_eq!(
        server
            .post(
                "/v1/traces",
                "application/x-protobuf",
                None,
                old.encode_to_vec()
            )
            .await
            .status,
        200
    );
    server.stop();
    let spans_dir = dir.join("lake/spans");
    let before = data_files(&spans_dir);
    assert!(before >= 9, "expected one file per commit, found {before}");

    let output = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("maintain")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--retention", "spans=365", "--vacuum-grace-hours", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("spans: merging"), "{stdout}");
    assert!(stdout.contains("dropped 1 partitions"), "{stdout}");
    let after = data_files(&spans_dir);
    assert!(
        after < before,
        "{before} files before, {after} after:\n{stdout}"
    );
    let checkpoints = std::fs::read_dir(spans_dir.join("_delta_log"))
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .ends_with(".checkpoint.parquet")
        })
        .count();
    assert!(checkpoints >= 1, "no checkpoint written");

    let server = Server::start(&config);
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM spans WHERE service_name IN ('svc-0', 'svc-1')"
        )
        .await,
        24
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM spans WHERE service_name = 'old'"
        )
        .await,
        0
    );
    // Compacted files are sorted by hour, service, time: the data reads back whole.
    assert_eq!(
        count(&server, "SELECT count(DISTINCT span_id) FROM spans").await,
        3,
        "the same three span ids, sent eight times"
    );
    // A second pass finds nothing left to merge.
    let again = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("maintain")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("spans: merging"));
}
