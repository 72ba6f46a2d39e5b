//! TLS (rustls) on every listener, with clients we did not write: the OpenTelemetry Python
//! SDK over gRPC and HTTPS (OTLP port and the native port's `/ingestion/otlp`), the ADBC
//! Flight SQL driver over `grpc+tls://`, and `tarn healthcheck`; plain text is refused.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Server, temp_dir};
use crate::tools::{compat_dir, have, python_venv, run};

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, made with openssl,
/// as a deployment with its own CA has them. Returns (CA, leaf certificate, leaf key).
fn private_ca(dir: &Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let (ca, ca_key, cert, key, csr, ext) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
        path("cert.csr"),
        path("ext.cnf"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", &ca_key, "-out", &ca, "-days", "2"])
        .args(["-subj", "/CN=Tarn test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl").arg("req").args(ec).args([
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=localhost",
    ]));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]));
    (ca, cert, key)
}

fn healthcheck(url: &str, ca_cert: Option<&str>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tarn"));
    command.args(["healthcheck", "--url", url]);
    if let Some(ca_cert) = ca_cert {
        command.args(["--ca-cert", ca_cert]);
    }
    command.output().unwrap().status.success()
}

#[tokio::test]
async fn every_listener_speaks_tls() {
    if !have("openssl", "version") {
        return;
    }
    let (Some(otlp), Some(flight)) = (python_venv("otlp-python"), python_venv("flightsql-python"))
    else {
        return;
    };
    let certs = temp_dir();
    let (ca, cert, key) = private_ca(certs.path());
    let server = Server::start_temp(&["--tls-cert", &cert, "--tls-key", &key]);

    // OTLP over gRPC and HTTPS, and OTLP/HTTP on the native port, from the Python SDK
    // trusting the gateway's certificate.
    for (transport, service, endpoint) in [
        ("grpc", "tls-grpc", format!("https://{}", server.otlp_grpc)),
        (
            "http-protobuf",
            "tls-http",
            format!("https://{}", server.otlp_http),
        ),
        (
            "http-protobuf",
            "tls-native",
            format!("https://{}/ingestion/otlp", server.native),
        ),
    ] {
        run(Command::new(otlp.join("python"))
            .arg(compat_dir("otlp-python").join("send.py"))
            .args([transport, service])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca)
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "10")
            // `requests` lets these override the exporter's own CA file.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .env_remove("OTEL_EXPORTER_OTLP_INSECURE"));
    }

    // FlightSQL over grpc+tls:// with ADBC: every span arrived.
    let adbc = |uri: &str, roots: Option<&str>| {
        let mut command = Command::new(flight.join("python"));
        command
            .arg(compat_dir("flightsql-python").join("adbc_client.py"))
            .args([
                uri,
                "query",
                "SELECT service_name, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 1",
            ]);
        if let Some(roots) = roots {
            command.args(["--tls-root-certs", roots]);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default().to_owned();
        (
            output.status.success(),
            serde_json::from_str::<Value>(&line).unwrap_or(Value::Null),
        )
    };
    let tls_uri = format!("grpc+tls://{}", server.flightsql);
    let (ok, result) = adbc(&tls_uri, Some(&ca));
    assert!(ok, "{result}");
    assert_eq!(
        result["rows"],
        json!([["tls-grpc", 2], ["tls-http", 2], ["tls-native", 2]])
    );

    // Plain text is not served, and an untrusted certificate is not accepted.
    let (ok, result) = adbc(&format!("grpc://{}", server.flightsql), None);
    assert!(!ok, "plain-text FlightSQL answered: {result}");
    let (ok, result) = adbc(&tls_uri, None);
    assert!(!ok, "a client not trusting the certificate got: {result}");
    for addr in [server.otlp_http, server.native] {
        assert!(healthcheck(&format!("https://{addr}/health"), Some(&ca)));
        assert!(!healthcheck(&format!("http://{addr}/health"), None));
        assert!(!healthcheck(&format!("https://{addr}/health"), None));
    }
}
