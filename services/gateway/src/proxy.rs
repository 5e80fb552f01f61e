//! Forwarding one request to a service: only the routed operations (the
//! operator's behind the operator token), the request body held (it may be
//! sent twice) and so is the answer (the deadline covers it whole), status
//! and content type kept, trace context and idempotency key passed on,
//! bounded by the gateway's own timeout.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hyper::body::Bytes;
use poem::{
    Body, Endpoint, IntoResponse, Request, Response, ResponseParts,
    http::{
        HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header,
        request::Parts,
    },
};
use tokio::time::{Instant, timeout_at};
use valerix_runtime::{
    Problem,
    auth::Guard,
    client::CallError,
    server::express::{Answer, Express},
};

use crate::{
    client::{self, Http, SendError},
    routes::{self, Access, Operation, Route},
};

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static AUTHORIZATION: HeaderName = header::AUTHORIZATION;
static ORDER_ID: HeaderName = HeaderName::from_static("order-id");

/// Request headers the services act on; anything else stays at the gateway.
/// Names, not strings: a lookup by a string parses it first, and these are
/// looked up on every forwarded request.
static FORWARDED: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::ACCEPT,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("order-id"),
];

/// W3C trace context: passed on as it came, unless the gateway has a span
/// of its own for the request (while it exports spans), which then is the
/// service's parent.
static TRACE_CONTEXT: [HeaderName; 2] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

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
/// for `POST /orders`, carries the client's `Idempotency-Key` or an
/// `Order-Id` (the client's, or one the gateway adds), so a request the old
/// process did act on is answered, not repeated.
///
/// At most [`RESENDS`] times, each on a new connection: under restarts
/// with SIGKILL a resent request was now and then reset once more (the
/// cause is not established); the sends stay within the one timeout. A
/// timed-out connect counts as refused: the deadline is the gateway's.
fn resend(sent: &Sent) -> bool {
    matches!(sent, Err(Failure::Client(err)) if err.unanswered())
}

/// How one send ended.
type Sent = Result<client::Answer, Failure>;

enum Failure {
    /// The deadline passed before the answer's head.
    Deadline(tokio::time::error::Elapsed),
    /// Refused, reset or closed before the answer, or in its body.
    Client(SendError),
}

/// The `Order-Id` the gateway gives a `POST /orders` that came with neither
/// it nor an `Idempotency-Key`. Not a key: the order service stores the
/// order under this id, and a repeat finds it there, at no cost of its own
/// (a key is a row of its own, written with every order). A random UUID
/// drawn once per process, its last 48 bits counting up: unique without a
/// random draw (a system call) per request.
fn gateway_order_id() -> HeaderValue {
    static BASE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    // The low 48 bits hold no version or variant bits: the id stays a
    // version 4 UUID.
    let n = u128::from(NEXT.fetch_add(1, Ordering::Relaxed)) & ((1 << 48) - 1);
    let id = uuid::Uuid::from_u128(base ^ n);
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or_else(|_| unreachable!("a hyphenated UUID is a valid header value"))
}

/// Whether URL parsing would leave this path as it is: no dot segment, no
/// percent-escape, no backslash, nothing it would encode.
fn is_plain_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_~/:@!$&'()*+,;=".contains(&b))
}

/// The same for a query (dots and escapes are plain there).
fn is_plain_query(query: &str) -> bool {
    query
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~/:@!$&()*+,;=?%".contains(&b))
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The service did not answer: classified as the services' own calls
    /// are ([`CallError::unanswered`]).
    #[error(transparent)]
    Upstream(#[from] CallError),
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
            // The forwarding itself only fails in transport (the service's
            // own answers pass unchanged, whatever their status), so the
            // other kinds of a call's failure do not occur here.
            Self::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream-unreachable"),
            Self::EscapingPath(_) => (StatusCode::BAD_REQUEST, "invalid-path"),
            Self::NotRouted { .. } => (StatusCode::NOT_FOUND, "not-found"),
        };
        Problem::new(status, kind, self)
    }
}

impl ProxyError {
    /// The answer to the client; a service that did not answer is logged.
    fn answer(self) -> Response {
        if !matches!(
            self,
            ProxyError::EscapingPath(_) | ProxyError::NotRouted { .. }
        ) {
            tracing::warn!(err = %self, "proxying failed");
        }
        self.problem().into_response()
    }
}

impl From<ProxyError> for poem::Error {
    fn from(err: ProxyError) -> Self {
        poem::Error::from_response(err.answer())
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
    /// Only to resolve a path that is not plain (see [`Proxy::target`]).
    pub base: reqwest::Url,
    /// Keeps its connections alive between requests.
    pub http: Http,
    /// Keeps none: each request on a new connection.
    pub fresh: Http,
}

/// The routed operations under one route's prefix, forwarded to one service.
pub struct Proxy {
    route: &'static Route,
    upstream: Upstream,
    timeout: Duration,
    credentials: Credentials,
}

/// Where a request goes: the service's path (for the route table), and
/// with the query (what the request line carries).
struct Target {
    path: String,
    path_and_query: String,
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
            upstream,
            timeout,
            credentials,
        }
    }

    /// The service URL for a request to `uri` (the gateway's). A path with
    /// anything URL parsing would change is parsed and checked after
    /// parsing, because parsing resolves dot segments (also
    /// percent-encoded or with `\`), and the result must still lie under
    /// the route's target; a plain one (what the routed operations use)
    /// cannot leave it and is taken as it is.
    fn target(&self, uri: &Uri) -> Result<Target, ProxyError> {
        let escaping = || ProxyError::EscapingPath(uri.path().to_owned());
        let mut path = self.route.upstream_path(uri.path()).ok_or_else(escaping)?;
        let mut query = uri.query().map(str::to_owned);
        if !is_plain_path(&path) || !query.as_deref().is_none_or(is_plain_query) {
            let mut url = self.upstream.base.join(&path).map_err(|_| escaping())?;
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
            path = url.path().to_owned();
            query = url.query().map(str::to_owned);
        }
        let mut path_and_query =
            String::with_capacity(path.len() + query.as_ref().map_or(0, |q| q.len() + 1));
        path_and_query.push_str(&path);
        if let Some(q) = &query {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Target {
            path,
            path_and_query,
        })
    }

    /// The routed operation a request is for.
    fn operation(
        &self,
        method: &Method,
        uri: &Uri,
        target: &Target,
    ) -> Result<&'static Operation, ProxyError> {
        routes::operation(self.route.service, method.as_str(), &target.path).ok_or_else(|| {
            ProxyError::NotRouted {
                method: method.to_string(),
                path: uri.path().to_owned(),
            }
        })
    }

    fn failure(&self, failure: Failure) -> ProxyError {
        let service = self.route.service.name();
        match failure {
            Failure::Deadline(elapsed) => {
                CallError::unanswered(service, self.timeout, true, &elapsed)
            }
            Failure::Client(err) => CallError::unanswered(service, self.timeout, false, &err),
        }
        .into()
    }

    /// The headers sent on: what the services act on, the service token on
    /// the operator's calls, and the trace context: the client's, or
    /// `injected` (the gateway's own span's) when there is one. Borrowed,
    /// not copied into a map of their own: they are written out once.
    fn headers<'h>(
        &'h self,
        incoming: &'h HeaderMap,
        operator: bool,
        order_id: Option<&'h HeaderValue>,
        injected: Option<&'h HeaderMap>,
    ) -> Vec<(&'h HeaderName, &'h HeaderValue)> {
        let mut headers = Vec::with_capacity(incoming.len() + 2);
        // The operator's token stays here (`Authorization` is not in
        // FORWARDED); the services see the gateway's own credential.
        if operator && let Some(bearer) = &self.credentials.service {
            headers.push((&AUTHORIZATION, bearer));
        }
        for (name, value) in incoming {
            if FORWARDED.contains(name) || (injected.is_none() && TRACE_CONTEXT.contains(name)) {
                headers.push((name, value));
            }
        }
        if let Some(id) = order_id {
            headers.push((&ORDER_ID, id));
        }
        headers.extend(injected.into_iter().flatten());
        headers
    }

    async fn send(
        &self,
        http: &Http,
        method: &Method,
        target: &Target,
        headers: &[(&HeaderName, &HeaderValue)],
        body: &[u8],
        deadline: Instant,
    ) -> Sent {
        let request = client::Request {
            method,
            target: &target.path_and_query,
            headers,
            body,
        };
        match timeout_at(deadline, http.send(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(Failure::Client(err)),
            Err(elapsed) => Err(Failure::Deadline(elapsed)),
        }
    }

    /// Sends the request on (again on a new connection when it got no
    /// answer, see [`resend`]) and returns the service's answer, held whole.
    async fn forward(
        &self,
        op: &Operation,
        method: &Method,
        incoming: &HeaderMap,
        target: &Target,
        body: Bytes,
    ) -> Result<Response, ProxyError> {
        let operator = op.access == Access::Operator;
        // See `resend`: the one operation that is not idempotent by
        // itself is made so, and a repeat of it returns the first order.
        let order_id = (op.idempotent_by_key()
            && !incoming.contains_key(&IDEMPOTENCY_KEY)
            && !incoming.contains_key(&ORDER_ID))
        .then(gateway_order_id);
        let deadline = Instant::now() + self.timeout;
        let injected = (!tracing::Span::current().is_none()).then(|| {
            let mut context = HeaderMap::new();
            valerix_runtime::telemetry::otel::inject_current(&mut context);
            context
        });
        let headers = self.headers(incoming, operator, order_id.as_ref(), injected.as_ref());
        let mut sent = self
            .send(
                &self.upstream.http,
                method,
                target,
                &headers,
                &body,
                deadline,
            )
            .await;
        for _ in 0..RESENDS {
            if !resend(&sent) {
                break;
            }
            if let Err(Failure::Client(err)) = &sent {
                tracing::debug!(
                    err = %valerix_runtime::client::error_chain(err),
                    "sending again on a new connection"
                );
            }
            sent = self
                .send(
                    &self.upstream.fresh,
                    method,
                    target,
                    &headers,
                    &body,
                    deadline,
                )
                .await;
        }
        let answer = sent.map_err(|f| self.failure(f))?;
        let parts = ResponseParts {
            status: answer.status,
            version: Version::HTTP_11,
            headers: answer.headers,
            extensions: Default::default(),
        };
        Ok(Response::from_parts(parts, Body::from(answer.body)))
    }
}

/// Every routed operation, through poem: the operator's behind the
/// operator token, and whatever the express lane leaves (see [`Shop`]).
#[derive(Clone)]
pub struct Routed(pub Arc<Proxy>);

impl Endpoint for Routed {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let proxy = &self.0;
        let target = proxy.target(req.original_uri())?;
        let op = proxy.operation(req.method(), req.original_uri(), &target)?;
        if op.access == Access::Operator
            && let Err(denied) = proxy.credentials.operator.admit(&req)
        {
            return Ok(denied.into_response());
        }
        let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        // Held whole (it is at most --max-body-bytes) so that it can be sent
        // a second time.
        let body = if has_body {
            req.take_body().into_bytes().await?
        } else {
            Bytes::new()
        };
        Ok(proxy
            .forward(op, req.method(), req.headers(), &target, body)
            .await?)
    }
}

/// The shop's operations (every public one: placing an order, reading one,
/// the catalog) in the runtime's express lane, past poem's layers: the
/// gateway forwards them and does nothing else.
pub struct Shop(pub Vec<Arc<Proxy>>);

impl Shop {
    /// The proxy of the route `path` is under, and the path's operation,
    /// if it is a public one.
    fn find(&self, method: &Method, path: &str) -> Option<&Arc<Proxy>> {
        self.0.iter().find(|p| {
            p.route
                .upstream_path(path)
                .and_then(|upstream| routes::operation(p.route.service, method.as_str(), &upstream))
                .is_some_and(|op| op.access == Access::Public)
        })
    }
}

impl Express for Shop {
    fn route(&self, method: &Method, path: &str) -> Option<&'static str> {
        self.find(method, path).map(|p| p.route.prefix)
    }

    fn answer(&self, route: &'static str, parts: Parts, body: Bytes) -> Answer {
        // `route` is the prefix `find` matched: the proxy is the one it found.
        let proxy = self.0.iter().find(|p| p.route.prefix == route).cloned();
        Box::pin(async move {
            let answered = async {
                let proxy = proxy.ok_or_else(|| ProxyError::NotRouted {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                })?;
                let target = proxy.target(&parts.uri)?;
                let op = proxy.operation(&parts.method, &parts.uri, &target)?;
                proxy
                    .forward(op, &parts.method, &parts.headers, &target, body)
                    .await
            };
            answered.await.unwrap_or_else(ProxyError::answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_that_parsing_leaves_alone_are_plain() {
        assert!(is_plain_path("/orders/3f2a-9c"));
        assert!(is_plain_path("/inventory/PROD-1"));
        for path in ["/orders/../x", "/orders/%2e%2e", "/a\\b", "/a b", "/a.b"] {
            assert!(!is_plain_path(path), "{path}");
        }
        assert!(is_plain_query("limit=50&before=2026-12-07T05:00:00.000Z"));
        assert!(!is_plain_query("q=a b"));
        assert!(!is_plain_query("q='x'"));
    }

    #[test]
    fn the_gateways_order_ids_are_version_4_uuids_that_do_not_repeat() {
        let parse =
            |v: HeaderValue| uuid::Uuid::parse_str(v.to_str().expect("ascii")).expect("a UUID");
        let (a, b) = (parse(gateway_order_id()), parse(gateway_order_id()));
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.get_version_num(), 4, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }
}
