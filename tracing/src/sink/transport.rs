//! Where the sink's requests go: the gateway over HTTP, memory (tests), or nowhere.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The native ingestion route of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /ingestion/insert_process`: a CBOR `ProcessInfo`.
    Process,
    /// `POST /ingestion/insert_stream`: a CBOR `StreamInfo`.
    Stream,
    /// `POST /ingestion/insert_block`: a CBOR `Block` with LZ4 payload buffers.
    Block,
}

impl Route {
    /// The path below the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Route::Process => "/ingestion/insert_process",
            Route::Stream => "/ingestion/insert_stream",
            Route::Block => "/ingestion/insert_block",
        }
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted (2xx).
    Delivered,
    /// Refused for good (4xx other than 408 and 429): dropped and counted.
    Rejected(String),
    /// Worth retrying (5xx, 408, 429, a network error), not before `after` when the server
    /// said so (`Retry-After`).
    Retry {
        /// The server's `Retry-After`.
        after: Option<Duration>,
        /// What went wrong.
        reason: String,
    },
}

impl SendOutcome {
    /// The outcome of an HTTP status.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            200..=299 => SendOutcome::Delivered,
            408 | 429 | 500..=599 => SendOutcome::Retry {
                after: retry_after,
                reason: format!("HTTP {status}"),
            },
            _ => SendOutcome::Rejected(format!("HTTP {status}")),
        }
    }
}

/// Sends the sink's requests, one at a time, on the sink's sender thread. Blocking is fine
/// there (never on the application's threads); a call should give up after a bounded time.
pub trait Transport: Send + 'static {
    /// Sends one request body to `route`.
    fn send(&mut self, route: Route, body: &[u8]) -> SendOutcome;
}

/// Requests as kept by [`MemoryTransport`]: route and body, in order.
pub type SentRequests = Vec<(Route, Vec<u8>)>;

/// Keeps the requests in memory (tests, in-process consumers).
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    sent: Arc<Mutex<SentRequests>>,
}

impl MemoryTransport {
    /// An empty one; clones share the same list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<(Route, Vec<u8>)> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the requests received so far.
    pub fn take(&self) -> Vec<(Route, Vec<u8>)> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Transport for MemoryTransport {
    fn send(&mut self, route: Route, body: &[u8]) -> SendOutcome {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((route, body.to_vec()));
        SendOutcome::Delivered
    }
}

/// Parses a `Retry-After` value: delay-seconds (HTTP dates are not worth a date parser here:
/// they are treated as "soon").
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(3600)));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds.min(3600.0)));
    }
    None
}

/// The native HTTP routes of a Tarn (or Micromegas) gateway, with blocking `ureq`.
#[cfg(feature = "http")]
pub struct HttpTransport {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

#[cfg(feature = "http")]
impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(feature = "http")]
impl HttpTransport {
    /// Sends to `base_url` (e.g. `http://127.0.0.1:9000`), with `Authorization: Bearer
    /// <api_key>` when a key is given; each request gives up after `timeout`.
    pub fn new(base_url: &str, api_key: Option<&str>, timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .max_idle_connections_per_host(2)
            .user_agent(concat!("tarn-tracing/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: base_url.trim_end_matches('/').to_owned(),
            authorization: api_key
                .filter(|k| !k.is_empty())
                .map(|k| format!("Bearer {k}")),
        }
    }
}

#[cfg(feature = "http")]
impl Transport for HttpTransport {
    fn send(&mut self, route: Route, body: &[u8]) -> SendOutcome {
        let url = format!("{}{}", self.base, route.path());
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/octet-stream");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        match request.send(body) {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                // Read the (short) body so that the connection can be reused.
                let _drained = response.into_body().read_to_vec();
                SendOutcome::from_status(status, retry_after)
            }
            Err(e) => SendOutcome::Retry {
                after: None,
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retry_after() {
        assert_eq!(SendOutcome::from_status(200, None), SendOutcome::Delivered);
        assert!(matches!(
            SendOutcome::from_status(400, None),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            SendOutcome::from_status(429, Some(Duration::from_secs(2))),
            SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            SendOutcome::from_status(503, None),
            SendOutcome::Retry { .. }
        ));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
