//! API keys on every listener: OTLP/HTTP, OTLP/gRPC, the native port and FlightSQL.

use std::process::Command;

use prost::Message;
use tarn_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::metadata::MetadataValue;

use crate::harness::{Server, ServerConfig, data_dir, temp_dir};
use crate::otlp_data::sample_traces;

const KEYS: &str = r#"[{"name":"writer","key":"w-secret","roles":["ingest"]},
                      {"name":"reader","key":"r-secret","roles":["query"]},
                      {"name":"both","key":"b-secret"}]"#;

async fn post(url: &str, key: Option<&str>) -> u16 {
    let client = reqwest::Client::new();
    let mut request = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(sample_traces("auth").encode_to_vec());
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.send().await.unwrap().status().as_u16()
}

async fn grpc_export(server: &Server, key: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = TraceServiceClient::connect(format!("http://{}", server.otlp_grpc))
        .await
        .unwrap();
    let mut request = tonic::Request::new(sample_traces("auth-grpc"));
    if let Some(key) = key {
        let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    client.export(request).await.map(|_| ())
}

async fn query(server: &Server, key: Option<&str>) -> Result<(), String> {
    let mut client = server.flight_client().await;
    if let Some(key) = key {
        client.set_token(key.to_owned());
    }
    client
        .execute("SELECT count(*) FROM spans".into(), None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn keys_are_required_on_every_listener() {
    let temp = temp_dir();
    let config = ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec!["--api-keys".into(), KEYS.into()],
        ..Default::default()
    };
    let server = Server::start(&config);
    let http = server.url("/v1/traces");
    let native = format!("http://{}/ingestion/otlp/v1/traces", server.native);
    for url in [&http, &native] {
        assert_eq!(post(url, None).await, 401, "{url}");
        assert_eq!(post(url, Some("wrong")).await, 401, "{url}");
        assert_eq!(
            post(url, Some("r-secret")).await,
            403,
            "a query key cannot ingest: {url}"
        );
        assert_eq!(post(url, Some("w-secret")).await, 200, "{url}");
        assert_eq!(post(url, Some("b-secret")).await, 200, "{url}");
    }
    // Probes stay open.
    for path in ["/health", "/ready"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(
        grpc_export(&server, None).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        grpc_export(&server, Some("r-secret"))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    grpc_export(&server, Some("w-secret")).await.unwrap();

    let refused = query(&server, None).await.unwrap_err();
    assert!(
        refused.contains("Unauthenticated") || refused.contains("missing bearer"),
        "{refused}"
    );
    let refused = query(&server, Some("w-secret")).await.unwrap_err();
    assert!(refused.contains("may not query"), "{refused}");
    query(&server, Some("r-secret")).await.unwrap();
    query(&server, Some("b-secret")).await.unwrap();

    // A key created in the catalog works at once, and stops working once revoked.
    let created = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["keys", "--data-dir"])
        .arg(data_dir(&temp))
        .args(["create", "ci-bot", "--roles", "ingest"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("tarn_"), "{key}");
    assert_eq!(post(&http, Some(&key)).await, 200);
    let listed = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["keys", "--data-dir"])
        .arg(data_dir(&temp))
        .arg("list")
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("ci-bot\tingest\tvalid"), "{listed}");
    assert!(!listed.contains(&key), "keys are never shown again");
    let revoked = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["keys", "--data-dir"])
        .arg(data_dir(&temp))
        .args(["revoke", "ci-bot"])
        .output()
        .unwrap();
    assert!(revoked.status.success());
    // Lookups are cached for ten seconds.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    assert_eq!(post(&http, Some(&key)).await, 401);
}

#[test]
fn a_public_bind_needs_keys_or_an_explicit_opt_out() {
    let temp = temp_dir();
    let output = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir(&temp))
        .args([
            "--listen",
            "0.0.0.0",
            "--otlp-grpc-port",
            "0",
            "--otlp-http-port",
            "0",
        ])
        .args(["--native-port", "0", "--flightsql-port", "0"])
        .env_remove("TARN_API_KEYS")
        .env_remove("MICROMEGAS_API_KEYS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0 without authentication"),
        "{stderr}"
    );
    // With keys, it starts.
    let server = Server::start(&ServerConfig {
        data_dir: data_dir(&temp),
        extra_args: vec![
            "--listen".into(),
            "0.0.0.0".into(),
            "--api-keys".into(),
            KEYS.into(),
        ],
        ..Default::default()
    });
    assert!(server.startup_ms < 60_000);
}
