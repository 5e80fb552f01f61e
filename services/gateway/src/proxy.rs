//! Forwarding one request to a service: only the routed operations (the
//! operator's behind the operator token), the request body held (it may be
//! sent twice) and the answer's streamed, status and content type kept,
//! trace context and idempotency key passed on, bounded by the gateway's
//! own timeout.

use std::time::Duration;

use futures::TryStreamExt;
use poem::{
    Body, Endpoint, IntoResponse, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
};
use tokio::time::Instant;
use valerix_runtime::{Problem, auth::Guard, client::CallError};

use crate::routes::{self, Access, Route};

/// Request headers the services act on; anything else stays at the gateway.
const FORWARDED: &[&str] = &[
    "content-type",
    "content-length",
    "accept",
    "traceparent",
    "tracestate",
    "idempotency-key",
];

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// See [`resend`].
const RESENDS: usize = 2;

/// Whether a request that failed this way is sent again on a new
/// connection: when it got no answer at all (refused, reset, closed before
/// the answer) and not for want of time. That is what a service's restart
/// does to the connections the gateway keeps to it: a stopping process
/// closes its idle keep-alive connections, and a request already on its way
/// over one is reset; a killed one resets every open connection. The
/// service's socket outlives its process (socket activation), so the new
/// connection waits in its backlog for the next process. Every routed
/// operation is idempotent (reads, settings that are set, not added) or,
/// for `POST /orders`, carries an `Idempotency-Key` (the client's, or one
/// the gateway adds), so a request the old process did act on is answered,
/// not repeated.
///
/// At most [`RESENDS`] times, each on a new connection: under restarts
/// with SIGKILL a resent request was now and then reset once more (the
/// cause is not established); the sends stay within the one timeout.
fn resend(err: &reqwest::Error) -> bool {
    !err.is_timeout() && (err.is_connect() || err.is_request())
}

/// Headers about one connection, not the message (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No answer from the service: classified as every call between the
    /// services is ([`CallError::transport`]).
    #[error(transparent)]
    Upstream(CallError),
    /// `..`, `%2e%2e` and the like would leave the routed prefix once the
    /// URL is normalised: refused rather than resolved.
    #[error("the path {0} leaves the routed prefix")]
    EscapingPath(String),
    /// Not one of the operations the gateway offers (the services' own
    /// calls to each other among them).
    #[error("the gateway does not route {method} {path}")]
    NotRouted { method: String, path: String },
}

impl ProxyError {
    fn problem(&self) -> Problem {
        let (status, kind) = match self {
            Self::Upstream(CallError::Timeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream-timeout")
            }
            Self::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream-unreachable"),
            Self::EscapingPath(_) => (StatusCode::BAD_REQUEST, "invalid-path"),
            Self::NotRouted { .. } => (StatusCode::NOT_FOUND, "not-found"),
        };
        Problem::new(status, kind, self)
    }
}

impl From<ProxyError> for poem::Error {
    fn from(err: ProxyError) -> Self {
        if !matches!(
            err,
            ProxyError::EscapingPath(_) | ProxyError::NotRouted { .. }
        ) {
            tracing::warn!(%err, "proxying failed");
        }
        poem::Error::from_response(err.problem().into_response())
    }
}

/// Who may pass, and what the gateway shows the services for them.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Admits the operator (`--operator-token-file`).
    pub operator: Guard,
    /// `Bearer <service token>`, sent on the operator's calls when the
    /// services require it (`--service-token-file`).
    pub service: Option<HeaderValue>,
}

/// Where a service is, and the clients that reach it.
#[derive(Clone)]
pub struct Upstream {
    pub base: reqwest::Url,
    /// Keeps its connections alive between requests.
    pub http: reqwest::Client,
    /// Keeps none: each request on a new connection.
    pub fresh: reqwest::Client,
}

/// The routed operations under one route's prefix, forwarded to one service.
pub struct Proxy {
    route: &'static Route,
    base: reqwest::Url,
    http: reqwest::Client,
    fresh: reqwest::Client,
    timeout: Duration,
    credentials: Credentials,
}

impl Proxy {
    pub fn new(
        route: &'static Route,
        upstream: Upstream,
        timeout: Duration,
        credentials: Credentials,
    ) -> Self {
        Self {
            route,
            base: upstream.base,
            http: upstream.http,
            fresh: upstream.fresh,
            timeout,
            credentials,
        }
    }

    /// The service URL for this request. Checked after parsing, because URL
    /// parsing resolves dot segments (also percent-encoded or with `\`), and
    /// the result must still lie under the route's target.
    fn target(&self, req: &Request) -> Result<reqwest::Url, ProxyError> {
        let uri = req.original_uri();
        let escaping = || ProxyError::EscapingPath(uri.path().to_owned());
        let path = self.route.upstream_path(uri.path()).ok_or_else(escaping)?;
        let mut url = self.base.join(&path).map_err(|_| escaping())?;
        url.set_query(uri.query());
        let to = self.route.to;
        let inside = url.path() == to
            || url
                .path()
                .strip_prefix(to)
                .is_some_and(|r| r.starts_with('/'));
        if !inside {
            return Err(escaping());
        }
        Ok(url)
    }

    fn transport_error(&self, err: &reqwest::Error) -> ProxyError {
        ProxyError::Upstream(CallError::transport(
            self.route.service.name(),
            err,
            self.timeout,
        ))
    }
}

impl Endpoint for Proxy {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let url = self.target(&req)?;
        let op = routes::operation(self.route.service, req.method().as_str(), url.path())
            .ok_or_else(|| ProxyError::NotRouted {
                method: req.method().to_string(),
                path: req.original_uri().path().to_owned(),
            })?;
        let operator = op.access == Access::Operator;
        if operator && let Err(denied) = self.credentials.operator.admit(&req) {
            return Ok(denied.into_response());
        }
        let mut headers = HeaderMap::new();
        // The operator's token stays here (`Authorization` is not in
        // FORWARDED); the services see the gateway's own credential.
        if operator && let Some(bearer) = &self.credentials.service {
            headers.insert(header::AUTHORIZATION, bearer.clone());
        }
        for name in FORWARDED {
            for value in req.headers().get_all(*name) {
                headers.append(*name, value.clone());
            }
        }
        // See `resend`: the one operation that is not idempotent by
        // itself is made so, and a repeat of it returns the first order.
        if op.idempotent_by_key() && !headers.contains_key(IDEMPOTENCY_KEY) {
            let key = format!("gateway-{}", uuid::Uuid::new_v4().simple());
            if let Ok(key) = HeaderValue::from_str(&key) {
                headers.insert(IDEMPOTENCY_KEY, key);
            }
        }
        let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        // Held whole (it is at most --max-body-bytes) so that it can be sent
        // a second time.
        let body = if has_body {
            Some(req.take_body().into_bytes().await?)
        } else {
            None
        };
        let deadline = Instant::now() + self.timeout;
        let send = |http: &reqwest::Client, timeout: Duration| {
            let mut out = http
                .request(req.method().clone(), url.clone())
                .headers(headers.clone())
                .timeout(timeout);
            if let Some(body) = &body {
                out = out.body(body.clone());
            }
            out.send()
        };
        let mut sent = send(&self.http, self.timeout).await;
        for _ in 0..RESENDS {
            match &sent {
                Err(err) if resend(err) => {
                    tracing::debug!(
                        err = %valerix_runtime::client::error_chain(err),
                        "sending again on a new connection"
                    );
                    let left = deadline.saturating_duration_since(Instant::now());
                    sent = send(&self.fresh, left).await;
                }
                _ => break,
            }
        }
        let resp = sent.map_err(|e| self.transport_error(&e))?;

        let mut answer = Response::builder().status(resp.status());
        for (name, value) in resp.headers() {
            if !is_hop_by_hop(name) {
                answer = answer.header(name, value);
            }
        }
        let body = resp.bytes_stream().map_err(std::io::Error::other);
        Ok(answer.body(Body::from_bytes_stream(body)))
    }
}
