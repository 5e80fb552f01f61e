//! Calls to other services: a timeout per attempt, bounded retries of
//! transient failures, and errors typed by what the caller must do next.
//!
//! - [`Downstream`]: one service reached over HTTP, with its [`CallPolicy`]
//! - [`breaker`]: the circuit breaker a caller keeps per downstream
//! - [`upstream`]: where a service is reached (TCP or a Unix socket)
//! - each attempt gets a client span and a latency sample (`attempt`)

mod attempt;
pub mod breaker;
pub mod upstream;

use std::{sync::Arc, time::Duration};

use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use tokio_retry::{RetryIf, strategy::FixedInterval};

use crate::{contract::problem::Problem, telemetry::otel};
use breaker::{Breaker, BreakerPolicy};
use upstream::Upstream;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No answer within the timeout: the other side may or may not have acted.
    #[error("{service} did not answer within {timeout:?}")]
    Timeout {
        service: &'static str,
        timeout: Duration,
    },
    /// The request could not be delivered (connection refused, reset, ...).
    #[error("{service} is unreachable: {reason}")]
    Unreachable {
        service: &'static str,
        reason: String,
    },
    /// The other side answered with an error status.
    #[error("{service} answered {status}: {detail}")]
    Status {
        service: &'static str,
        status: u16,
        kind: String,
        detail: String,
    },
    /// The answer could not be read.
    #[error("{service} sent an unreadable answer: {reason}")]
    Decode {
        service: &'static str,
        reason: String,
    },
    /// Not sent: what it should carry is not a valid request (a value the
    /// contract refuses).
    #[error("the request to {service} cannot be made: {reason}")]
    Unsendable {
        service: &'static str,
        reason: String,
    },
    /// Not sent: the circuit breaker is open after repeated failures.
    #[error("{service} circuit is open: not calling it for now")]
    Rejected { service: &'static str },
}

impl CallError {
    /// Worth another attempt: the outcome is unknown or the failure passing.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::Decode { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Rejected { .. } | Self::Unsendable { .. } => false,
        }
    }

    /// The label of this outcome in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Rejected { .. } => "rejected",
            _ => "error",
        }
    }

    /// The one classification of a call that got no answer, whatever
    /// client made it: the services' calls (reqwest, [`Self::from_reqwest`])
    /// and the gateway's forwarding (hyper). `waited_out`: the deadline
    /// passed while the request was out, so the other side may have acted
    /// ([`Self::Timeout`]). Anything else is [`Self::Unreachable`]: the
    /// connection failed, and a connection that was not made in time counts
    /// here too, since nothing reached the service.
    pub fn unanswered(
        service: &'static str,
        timeout: Duration,
        waited_out: bool,
        err: &dyn std::error::Error,
    ) -> Self {
        if waited_out {
            Self::Timeout { service, timeout }
        } else {
            Self::Unreachable {
                service,
                reason: error_chain(err),
            }
        }
    }

    /// [`Self::unanswered`] for reqwest, which reports a connect timeout as
    /// a timeout too.
    pub fn from_reqwest(service: &'static str, err: &reqwest::Error, timeout: Duration) -> Self {
        Self::unanswered(service, timeout, err.is_timeout() && !err.is_connect(), err)
    }

    /// The status code when the other side gave a definite answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Per-downstream call settings.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    pub timeout: Duration,
    pub retries: usize,
    pub retry_delay: Duration,
    /// None: no circuit breaker, every call goes out.
    pub breaker: Option<BreakerPolicy>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            retries: 1,
            retry_delay: Duration::from_millis(50),
            breaker: Some(BreakerPolicy::default()),
        }
    }
}

/// One downstream service reached over HTTP.
#[derive(Debug, Clone)]
pub struct Downstream {
    name: &'static str,
    /// Parsed once, at configuration: parsing a URL runs its host through
    /// IDNA, which cost more instructions than anything else the order
    /// service does per call; each call only sets the path on a copy.
    upstream: Upstream,
    http: reqwest::Client,
    policy: CallPolicy,
    breaker: Option<Arc<Breaker>>,
    /// `Authorization` sent on every call but the health probes, when the
    /// services share a token (`--service-token-file`).
    bearer: Option<reqwest::header::HeaderValue>,
}

/// A response that was 2xx: its status and body.
#[derive(Debug)]
pub struct Answer<T> {
    pub status: StatusCode,
    pub body: T,
}

/// How long a client keeps an idle connection to a service: well below the
/// services' keep-alive (their `--header-timeout-ms`, 5 s by default), so a
/// client never reuses a connection the server is closing at that moment.
pub const POOL_IDLE: Duration = Duration::from_secs(2);

impl Downstream {
    pub fn new(name: &'static str, upstream: &Upstream, policy: CallPolicy) -> Self {
        let http = upstream
            .client(
                reqwest::Client::builder()
                    .pool_idle_timeout(POOL_IDLE)
                    .connect_timeout(policy.timeout),
            )
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            name,
            upstream: upstream.clone(),
            http,
            policy,
            breaker: policy.breaker.map(|p| Arc::new(Breaker::new(name, p))),
            bearer: None,
        }
    }

    /// Sends `token` as a bearer token on the calls that may need it.
    pub fn with_bearer(mut self, token: Option<&crate::auth::Token>) -> Self {
        self.bearer = token.map(crate::auth::Token::authorization);
        self
    }

    /// The breaker's state: "closed", "open", "half-open" (or "disabled").
    pub fn breaker_state(&self) -> &'static str {
        self.breaker
            .as_ref()
            .map_or("disabled", |b| b.state().name())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn policy(&self) -> CallPolicy {
        self.policy
    }

    /// One call with the policy's timeout and retries of transient failures.
    /// Only for idempotent operations: a retry may repeat an effect.
    pub async fn call<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer<T>, CallError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        // The breaker admits and counts whole calls, retries included: a
        // restarting service resets the connections open to it, and the
        // retry reaches the next process through the socket that outlives
        // both, so a restart is not a failure of the service.
        if let Some(breaker) = &self.breaker
            && !breaker.admit()
        {
            let rejected = async { Err(CallError::Rejected { service: self.name }) };
            return attempt::observed(self.name, &method, path, rejected).await;
        }
        let strategy = FixedInterval::new(self.policy.retry_delay).take(self.policy.retries);
        let result = RetryIf::start(
            strategy,
            || {
                let attempt = self.attempt(method.clone(), path, body, self.policy.timeout);
                attempt::observed(self.name, &method, path, attempt)
            },
            |err: &CallError| err.is_transient(),
        )
        .await;
        if let Some(breaker) = &self.breaker {
            breaker.record(!matches!(&result, Err(e) if e.is_transient()));
        }
        result
    }

    /// A single attempt with an explicit timeout (used by health probes).
    pub async fn attempt<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Answer<T>, CallError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut req = self
            .http
            .request(method, self.upstream.join(path))
            .timeout(timeout);
        // The callee's server span becomes a child of the current (client) span.
        let mut trace = reqwest::header::HeaderMap::new();
        otel::inject_current(&mut trace);
        req = req.headers(trace);
        if let Some(bearer) = &self.bearer {
            req = req.header(reqwest::header::AUTHORIZATION, bearer.clone());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::from_reqwest(self.name, &e, timeout))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::from_reqwest(self.name, &e, timeout))?;
        if !status.is_success() {
            let problem: Option<Problem> = serde_json::from_slice(&bytes).ok();
            return Err(CallError::Status {
                service: self.name,
                status: status.as_u16(),
                kind: problem.as_ref().map(|p| p.kind.clone()).unwrap_or_default(),
                detail: problem
                    .map(|p| p.detail)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
            });
        }
        let body = serde_json::from_slice(&bytes).map_err(|e| CallError::Decode {
            service: self.name,
            reason: e.to_string(),
        })?;
        Ok(Answer { status, body })
    }

    /// Whether the service answers its health endpoint with 200.
    pub async fn is_healthy(&self, timeout: Duration) -> bool {
        let url = self.upstream.join("/health");
        matches!(
            self.http.get(url).timeout(timeout).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    /// The service's health document, whatever its status (a 503 still says
    /// which dependency is down); None when it did not answer with one.
    pub async fn health(&self, timeout: Duration) -> Option<crate::contract::health::Health> {
        let url = self.upstream.join("/health");
        let resp = self.http.get(url).timeout(timeout).send().await.ok()?;
        resp.json().await.ok()
    }

    /// The service's `GET /metrics` (Prometheus text); None when it did not
    /// answer 200 in time.
    pub async fn metrics(&self, timeout: Duration) -> Option<String> {
        let url = self.upstream.join(crate::telemetry::prometheus::PATH);
        let resp = self.http.get(url).timeout(timeout).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    }
}

/// An error and its causes on one line (reqwest's own message hides them).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}
