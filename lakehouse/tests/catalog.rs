//! The catalog against real databases: SQLite in a temporary file, and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use tarn_lakehouse::catalog::{Catalog, ProcessRecord, TableEntry};

async fn postgres_database() -> Option<String> {
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

fn process(id: &str) -> ProcessRecord {
    let mut properties = BTreeMap::new();
    properties.insert("service.name".to_owned(), "api".to_owned());
    properties.insert("quote\"d".to_owned(), "värde".to_owned());
    ProcessRecord {
        process_id: id.to_owned(),
        exe: Some("/usr/bin/api".into()),
        computer: Some("host".into()),
        tsc_frequency: 1_000_000_000,
        start_time: 1_767_225_600_123_456_789,
        service_name: Some("api".into()),
        properties,
        source: "otlp".into(),
        insert_time: 1_767_225_600_123_456,
        ..Default::default()
    }
}

async fn exercise(url: &str) {
    let catalog = Catalog::connect(url).await.unwrap();
    catalog.ping().await.unwrap();
    let entry = TableEntry {
        name: "spans".into(),
        uri: "file:///lake/spans/".into(),
        schema_version: 1,
    };
    catalog.register_table(&entry).await.unwrap();
    catalog.register_table(&entry).await.unwrap();
    assert_eq!(catalog.tables().await.unwrap(), vec![entry.clone()]);

    let first = process("7d3f0a52-7a1b-4f1e-9d7e-0f6a5c0e1a01");
    assert!(catalog.record_process(&first).await.unwrap(), "new process");
    assert!(
        !catalog.record_process(&first).await.unwrap(),
        "known process"
    );
    let mut changed = first.clone();
    changed.exe = Some("/other".into());
    assert!(!catalog.record_process(&changed).await.unwrap());
    assert_eq!(
        catalog.process(&first.process_id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(catalog.process("missing").await.unwrap(), None);
    assert_eq!(catalog.processes().await.unwrap(), vec![first.clone()]);
    catalog.close().await;

    // Reconnecting runs the migrations again: nothing changes.
    let again = Catalog::connect(url).await.unwrap();
    assert_eq!(again.tables().await.unwrap(), vec![entry]);
    assert_eq!(again.processes().await.unwrap(), vec![first]);
    again.close().await;
}

#[tokio::test]
async fn sqlite_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested").join("catalog.db").display()
    );
    std::fs::create_dir_all(dir.path().join("nested")).unwrap();
    exercise(&url).await;
}

#[tokio::test]
async fn postgres_catalog() {
    let Some(url) = postgres_database().await else {
        return;
    };
    exercise(&url).await;
    let catalog = Catalog::connect(&url).await.unwrap();
    assert!(catalog.is_postgres());
    assert!(!catalog.description().is_empty());
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let error = Catalog::connect("mysql://localhost/x").await.unwrap_err();
    assert!(
        error.to_string().contains("unsupported catalog URL"),
        "{error}"
    );
}

async fn leases(url: &str) {
    use std::time::Duration;
    let catalog = Catalog::connect(url).await.unwrap();
    assert!(
        catalog
            .try_lease("maintenance", "a", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .try_lease("maintenance", "b", Duration::from_secs(60))
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        catalog
            .try_lease("maintenance", "a", Duration::from_secs(60))
            .await
            .unwrap(),
        "renewed"
    );
    catalog.release_lease("maintenance", "b").await.unwrap();
    assert!(
        !catalog
            .try_lease("maintenance", "b", Duration::ZERO)
            .await
            .unwrap(),
        "b cannot release a's lease"
    );
    catalog.release_lease("maintenance", "a").await.unwrap();
    assert!(
        catalog
            .try_lease("maintenance", "b", Duration::ZERO)
            .await
            .unwrap()
    );
    // b's lease expired at once: a takes over.
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(
        catalog
            .try_lease("maintenance", "a", Duration::from_secs(60))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn sqlite_leases() {
    let dir = tempfile::tempdir().unwrap();
    leases(&format!(
        "sqlite://{}",
        dir.path().join("catalog.db").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_leases() {
    let Some(url) = postgres_database().await else {
        return;
    };
    leases(&url).await;
}
