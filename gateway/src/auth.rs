//! Bearer API keys, the same on every listener (OTLP/HTTP, OTLP/gRPC, native, FlightSQL).
//!
//! A key may ingest, query, or both. Keys come from the configuration (`--api-keys`, a
//! JSON array `[{"name": "...", "key": "...", "roles": ["ingest", "query"]}]`; the
//! `MICROMEGAS_API_KEYS` format, without `roles`, grants both) and from the catalog
//! (`tarn keys create`), where only their SHA-256 is stored. A presented key is hashed
//! once and compared with every configured hash in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prost::Message;
use sha2::{Digest, Sha256};
use tarn_lakehouse::catalog::Catalog;
use tarn_proto::otlp::{code, plain_status};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Query,
}

/// A key allowed by configuration.
#[derive(Debug, Clone)]
struct ConfiguredKey {
    name: String,
    hash: [u8; 32],
    ingest: bool,
    query: bool,
}

#[derive(Debug, serde::Deserialize)]
struct KeyConfig {
    name: String,
    key: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    #[error("API key {0:?} may not {1}")]
    Forbidden(String, &'static str),
    #[error("cannot check the API key now: {0}")]
    Unavailable(String),
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality of two hashes in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a key looked up in the catalog is trusted before it is looked up again.
const CATALOG_CACHE: Duration = Duration::from_secs(10);

/// The key check shared by every listener.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    enabled: bool,
    keys: Arc<Vec<ConfiguredKey>>,
    catalog: Option<Catalog>,
    cache: Arc<Mutex<HashMap<[u8; 32], CachedKey>>>,
}

/// A catalog lookup remembered: the key's (name, may ingest, may query), `None` when the
/// catalog does not know it, and when it was looked up.
type CachedKey = (Option<(String, bool, bool)>, Instant);

impl Auth {
    /// No authentication (the loopback default).
    pub fn disabled() -> Auth {
        Auth::default()
    }

    /// Authentication with the keys of `config` (a JSON array, possibly empty) and, with
    /// `catalog`, the keys stored there.
    pub fn new(config: &str, catalog: Option<Catalog>) -> anyhow::Result<Auth> {
        let parsed: Vec<KeyConfig> = if config.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(config).map_err(|e| anyhow::anyhow!("bad API key list: {e}"))?
        };
        let mut keys = Vec::with_capacity(parsed.len());
        for key in parsed {
            if key.key.is_empty() {
                anyhow::bail!("API key {:?} is empty", key.name);
            }
            let roles = key
                .roles
                .unwrap_or_else(|| vec!["ingest".into(), "query".into()]);
            for role in &roles {
                if role != "ingest" && role != "query" {
                    anyhow::bail!(
                        "API key {:?} has unknown role {role:?} (ingest, query)",
                        key.name
                    );
                }
            }
            keys.push(ConfiguredKey {
                hash: hash_key(&key.key),
                ingest: roles.iter().any(|r| r == "ingest"),
                query: roles.iter().any(|r| r == "query"),
                name: key.name,
            });
        }
        Ok(Auth {
            enabled: true,
            keys: Arc::new(keys),
            catalog,
            cache: Arc::default(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Checks an `Authorization` header value for `role`; returns the key's name.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        role: Role,
    ) -> Result<String, AuthError> {
        if !self.enabled {
            return Ok(String::new());
        }
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = hash_key(token);
        let mut found = None;
        for key in self.keys.iter() {
            // Every key is compared, matched or not, in constant time.
            if same(&key.hash, &hash) {
                found = Some((key.name.clone(), key.ingest, key.query));
            }
        }
        if found.is_none() {
            found = self.catalog_key(&hash).await?;
        }
        let (name, ingest, query) = found.ok_or(AuthError::Invalid)?;
        match role {
            Role::Ingest if !ingest => Err(AuthError::Forbidden(name, "ingest")),
            Role::Query if !query => Err(AuthError::Forbidden(name, "query")),
            _ => Ok(name),
        }
    }

    async fn catalog_key(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(String, bool, bool)>, AuthError> {
        let Some(catalog) = &self.catalog else {
            return Ok(None);
        };
        if let Ok(cache) = self.cache.lock()
            && let Some((entry, at)) = cache.get(hash)
            && at.elapsed() < CATALOG_CACHE
        {
            return Ok(entry.clone());
        }
        let entry = catalog
            .api_key(&hex(hash))
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .map(|key| (key.name, key.ingest, key.query));
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(*hash, (entry.clone(), Instant::now()));
        }
        Ok(entry)
    }
}

/// Lowercase hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// axum middleware: the request needs a key that may ingest.
pub async fn require_ingest(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    match auth.check(authorization.as_deref(), Role::Ingest).await {
        Ok(_) => next.run(request).await,
        Err(error) => {
            if !matches!(error, AuthError::Unavailable(_)) {
                crate::metrics::auth_failure("http");
            }
            http_refusal(&error)
        }
    }
}

fn http_refusal(error: &AuthError) -> Response {
    let (status, rpc_code) = match error {
        AuthError::Missing | AuthError::Invalid => {
            (StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED)
        }
        AuthError::Forbidden(..) => (StatusCode::FORBIDDEN, code::PERMISSION_DENIED),
        AuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE),
    };
    let body = plain_status(rpc_code, &error.to_string()).encode_to_vec();
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        )],
        body,
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    response
}

/// A tower layer for gRPC services: every call needs a key with `role`.
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer {
    auth: Auth,
    role: Role,
}

impl GrpcAuthLayer {
    pub fn new(auth: Auth, role: Role) -> GrpcAuthLayer {
        GrpcAuthLayer { auth, role }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            auth: self.auth.clone(),
            role: self.role,
        }
    }
}

/// The service made by [`GrpcAuthLayer`].
#[derive(Debug, Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    auth: Auth,
    role: Role,
}

fn grpc_refusal<B: Default>(error: &AuthError) -> http::Response<B> {
    if !matches!(error, AuthError::Unavailable(_)) {
        crate::metrics::auth_failure("grpc");
    }
    let status = match error {
        AuthError::Missing | AuthError::Invalid => {
            tonic::Status::unauthenticated(error.to_string())
        }
        AuthError::Forbidden(..) => tonic::Status::permission_denied(error.to_string()),
        AuthError::Unavailable(_) => tonic::Status::unavailable(error.to_string()),
    };
    status.into_http()
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The ready inner service serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let role = self.role;
        Box::pin(async move {
            if auth.is_enabled() {
                let authorization = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                if let Err(error) = auth.check(authorization.as_deref(), role).await {
                    return Ok(grpc_refusal(&error));
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_have_roles_and_micromegas_keys_have_both() {
        let auth = Auth::new(
            r#"[{"name":"writer","key":"w-secret","roles":["ingest"]},
                {"name":"reader","key":"r-secret","roles":["query"]},
                {"name":"legacy","key":"l-secret"}]"#,
            None,
        )
        .expect("valid config");
        assert_eq!(
            auth.check(Some("Bearer w-secret"), Role::Ingest).await,
            Ok("writer".into())
        );
        assert_eq!(
            auth.check(Some("Bearer w-secret"), Role::Query).await,
            Err(AuthError::Forbidden("writer".into(), "query"))
        );
        assert_eq!(
            auth.check(Some("bearer r-secret"), Role::Query).await,
            Ok("reader".into())
        );
        assert_eq!(
            auth.check(Some("Bearer l-secret"), Role::Ingest).await,
            Ok("legacy".into())
        );
        assert_eq!(
            auth.check(Some("Bearer l-secret"), Role::Query).await,
            Ok("legacy".into())
        );
        assert_eq!(
            auth.check(Some("Bearer nope"), Role::Query).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(Some("Basic dXNlcjpwYXNz"), Role::Query).await,
            Err(AuthError::Missing)
        );
        assert_eq!(auth.check(None, Role::Query).await, Err(AuthError::Missing));
        // With authentication off, anything goes (even "Bearer None", which some clients send).
        assert!(
            Auth::disabled()
                .check(Some("Bearer None"), Role::Query)
                .await
                .is_ok()
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(Auth::new("not json", None).is_err());
        assert!(Auth::new(r#"[{"name":"x","key":""}]"#, None).is_err());
        assert!(Auth::new(r#"[{"name":"x","key":"k","roles":["admin"]}]"#, None).is_err());
    }
}
