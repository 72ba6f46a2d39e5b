//! Catalog notes: what the catalog must learn when rows become durable travels in the WAL
//! with them, and is applied again at open if the gateway died before applying it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tarn_lakehouse::catalog::CatalogNote;
use tarn_lakehouse::{LakeConfig, Lakehouse};

fn config(dir: &Path) -> LakeConfig {
    let mut config = LakeConfig::new(
        format!("file://{}", dir.join("lake").display()),
        format!("sqlite://{}", dir.join("catalog.db").display()),
    );
    config.wal_dir = Some(dir.join("wal"));
    config
}

fn block_notes(block_id: &str, state: &str) -> Vec<CatalogNote> {
    vec![
        CatalogNote::SpanState {
            key: "thread:s1".into(),
            version: 0,
            state: state.into(),
        },
        CatalogNote::Block {
            block_id: block_id.into(),
            stream_id: "s1".into(),
            process_id: "p1".into(),
            object_offset: 0,
            nb_objects: 3,
        },
    ]
}

#[tokio::test]
async fn notes_are_applied_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lakehouse::open(config(dir.path())).await.unwrap();
    lake.write_noted(Vec::new(), block_notes("b1", "{\"open\":1}"))
        .await
        .unwrap();
    assert!(lake.catalog().block_known("b1").await.unwrap());
    assert_eq!(
        lake.catalog().span_state("thread:s1").await.unwrap(),
        Some((1, "{\"open\":1}".to_owned()))
    );
    lake.close();
}

#[tokio::test]
async fn a_note_durable_but_not_applied_is_applied_at_the_next_open_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lakehouse::open(config(dir.path())).await.unwrap();
    // What a gateway killed right after the WAL's fsync leaves: the note in the WAL, the
    // catalog untold.
    let encoded = serde_json::to_vec(&block_notes("b1", "{\"open\":1}")).unwrap();
    let seq = lake
        .writer()
        .write_noted(Vec::new(), Some(encoded))
        .await
        .unwrap();
    assert!(seq.is_some(), "the note has a WAL sequence");
    assert!(!lake.catalog().block_known("b1").await.unwrap());
    lake.close();
    drop(lake);

    let lake = Lakehouse::open(config(dir.path())).await.unwrap();
    assert!(lake.catalog().block_known("b1").await.unwrap());
    assert_eq!(
        lake.catalog().span_state("thread:s1").await.unwrap(),
        Some((1, "{\"open\":1}".to_owned()))
    );
    // The state moves on; the old note, read again at the next open, must not undo it.
    assert!(
        lake.catalog()
            .save_span_state("thread:s1", 1, "{\"open\":2}")
            .await
            .unwrap()
    );
    lake.close();
    drop(lake);

    let lake = Lakehouse::open(config(dir.path())).await.unwrap();
    assert_eq!(
        lake.catalog().span_state("thread:s1").await.unwrap(),
        Some((2, "{\"open\":2}".to_owned()))
    );
    assert!(lake.catalog().block_known("b1").await.unwrap());
    lake.close();
}

#[tokio::test]
async fn notes_the_catalog_refuses_wait_in_memory_and_in_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lakehouse::open(config(dir.path())).await.unwrap();
    // A second connection to the same SQLite file takes the blocks table away.
    let other = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("catalog.db").display()
    ))
    .await
    .unwrap();
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(sqlx::AssertSqlSafe(rename("native_blocks", "away")))
        .execute(&other)
        .await
        .unwrap();
    // The rows are durable: the write succeeds, and the note waits.
    lake.write_noted(Vec::new(), block_notes("b1", "{\"open\":1}"))
        .await
        .unwrap();
    assert!(lake.apply_pending_notes().await.is_err());
    sqlx::query(sqlx::AssertSqlSafe(rename("away", "native_blocks")))
        .execute(&other)
        .await
        .unwrap();
    assert!(!lake.catalog().block_known("b1").await.unwrap());
    lake.apply_pending_notes().await.unwrap();
    assert!(lake.catalog().block_known("b1").await.unwrap());

    // Refused again, and the gateway dies before the catalog comes back: the WAL has it.
    sqlx::query(sqlx::AssertSqlSafe(rename("native_blocks", "away")))
        .execute(&other)
        .await
        .unwrap();
    lake.write_noted(Vec::new(), block_notes("b2", "{\"open\":2}"))
        .await
        .unwrap();
    lake.close();
    drop(lake);
    sqlx::query(sqlx::AssertSqlSafe(rename("away", "native_blocks")))
        .execute(&other)
        .await
        .unwrap();
    let lake = Lakehouse::open(config(dir.path())).await.unwrap();
    assert!(lake.catalog().block_known("b2").await.unwrap());
    lake.close();
}
