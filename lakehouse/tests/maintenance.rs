//! Maintenance against a real lake and catalog: compaction folds the rows two gateways
//! can both write (a new process or stream seen by each at the same moment).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use tarn_lakehouse::maintain::MaintainOptions;
use tarn_lakehouse::rows::{ProcessesBuilder, StreamsBuilder};
use tarn_lakehouse::schema::TableKind;
use tarn_lakehouse::writer::TableRows;
use tarn_lakehouse::{LakeConfig, Lakehouse};

const MICROS: i64 = 1_790_000_000_000_000;

fn stream_row(stream_id: &str, tag: &str) -> TableRows {
    let mut rows = StreamsBuilder::default();
    rows.stream_id.append_value(stream_id);
    rows.process_id.append_value("p1");
    rows.append_tags([tag]);
    rows.properties.key("k").append_str("v");
    rows.properties.finish_row();
    rows.dependencies_metadata.append_value(b"deps");
    rows.objects_metadata.append_value(b"objs");
    rows.format.append_value("tfm");
    rows.append_insert_time(MICROS);
    TableRows {
        table: TableKind::Streams,
        batch: rows.finish().unwrap(),
    }
}

fn process_row(process_id: &str) -> TableRows {
    let mut rows = ProcessesBuilder::default();
    rows.process_id.append_value(process_id);
    rows.exe.append_value("exe");
    rows.username.append_null();
    rows.realname.append_null();
    rows.computer.append_null();
    rows.distro.append_null();
    rows.cpu_brand.append_null();
    rows.tsc_frequency.append_value(1_000_000_000);
    rows.append_start_time(MICROS * 1_000);
    rows.start_ticks.append_value(0);
    rows.parent_process_id.append_null();
    rows.service_name.append_value("svc");
    rows.service_namespace.append_null();
    rows.service_version.append_null();
    rows.service_instance_id.append_null();
    rows.properties.finish_row();
    rows.dropped_properties_count.append_value(0);
    rows.schema_url.append_null();
    rows.entity_refs.append_null();
    rows.source.append_value("otlp");
    rows.insert_time.append_value(MICROS);
    TableRows {
        table: TableKind::Processes,
        batch: rows.finish().unwrap(),
    }
}

async fn query(lake: &Lakehouse, sql: &str) -> Vec<RecordBatch> {
    lake.query_engine()
        .plan(sql, None)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

async fn count(lake: &Lakehouse, sql: &str) -> i64 {
    let batches = query(lake, sql).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn compaction_keeps_one_row_per_process_and_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    // No WAL: every write is its own commit, so each copy lands in a file of its own, as
    // two gateways' commits would.
    let config = LakeConfig::new(
        format!("file://{}", dir.path().join("lake").display()),
        format!("sqlite://{}", dir.path().join("catalog.db").display()),
    );
    let lake = Lakehouse::open(config).await.unwrap();
    for _ in 0..2 {
        lake.writer()
            .write(vec![
                stream_row("s1", "log"),
                stream_row("s2", "metrics"),
                process_row("p1"),
            ])
            .await
            .unwrap();
    }
    assert_eq!(count(&lake, "SELECT count(*) FROM streams").await, 4);
    assert_eq!(count(&lake, "SELECT count(*) FROM processes").await, 2);

    let reports = lake
        .maintain(&MaintainOptions::default(), "test", &|_| {})
        .await
        .unwrap()
        .expect("no other holder of the lease");
    let streams = reports.iter().find(|r| r.table == "streams").unwrap();
    // Each `TableRows` is a commit of its own without a WAL: four files, merged into one.
    assert_eq!((streams.files_compacted, streams.files_written), (4, 1));

    assert_eq!(count(&lake, "SELECT count(*) FROM streams").await, 2);
    assert_eq!(count(&lake, "SELECT count(*) FROM processes").await, 1);
    // The rows kept are whole, not just their ids.
    let batches = query(
        &lake,
        "SELECT stream_id, tags[1] AS tag, format FROM streams ORDER BY stream_id",
    )
    .await;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&[batch])
        .unwrap()
        .to_string();
    assert!(text.contains("| s1        | log     | tfm    |"), "{text}");
    assert!(text.contains("| s2        | metrics | tfm    |"), "{text}");
}
