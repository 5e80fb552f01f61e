//! Gremlins: fault injection shared by every service. Latency before the
//! handler; after a handler succeeded (its transaction committed), noise
//! (answer 500 anyway) or a crash (exit without answering) — the faults that
//! make "did it happen?" unanswerable for the caller.
//!
//! Refused with 403 unless the service was started with `--gremlins`.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use poem::{Endpoint, EndpointExt, IntoEndpoint, Request, Response, http::Method};
use poem_openapi::{Object, OpenApi, Tags, payload::Json};

use crate::contract::problem::{ProblemResponse, ProblemSet, Problems};

/// `POST /gremlin/latency`: delay requests before they are handled.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct LatencyGremlin {
    /// Fixed delay in milliseconds.
    #[oai(validator(minimum(value = "0"), maximum(value = "600000")))]
    pub delay_ms: u64,
    /// A random extra delay of 0 to `jitter_ms` milliseconds.
    #[oai(default, validator(minimum(value = "0"), maximum(value = "600000")))]
    pub jitter_ms: u64,
    /// Only every Nth request is delayed (deterministic pattern).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub every_nth: Option<u64>,
    #[oai(default = "yes")]
    pub enabled: bool,
}

/// `POST /gremlin/noise` and `/gremlin/crash`.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct AfterCommitGremlin {
    #[oai(default = "yes")]
    pub enabled: bool,
    /// Random share of successful writes hit, 0.0 to 1.0.
    #[oai(validator(minimum(value = "0"), maximum(value = "1")))]
    pub rate: Option<f64>,
    /// Every Nth successful write is hit (takes precedence over `rate`).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub every_nth: Option<u64>,
}

fn yes() -> bool {
    true
}

/// The gremlins of one service, as `GET /gremlin` shows them.
#[derive(Debug, Clone, Default, Object, serde::Serialize, serde::Deserialize)]
pub struct GremlinSettings {
    /// Whether this service accepts gremlins at all (`--gremlins`).
    pub enabled: bool,
    pub latency: Option<LatencyGremlin>,
    pub noise: Option<AfterCommitGremlin>,
    pub crash: Option<AfterCommitGremlin>,
}

#[derive(Default)]
struct Counters {
    latency: AtomicU64,
    noise: AtomicU64,
    crash: AtomicU64,
}

#[derive(Default)]
struct Inner {
    enabled: AtomicBool,
    settings: RwLock<GremlinSettings>,
    counters: Counters,
}

/// A service's gremlins, shared by its API and its middleware.
#[derive(Clone, Default)]
pub struct Gremlins(Arc<Inner>);

fn hits(counter: &AtomicU64, every_nth: Option<u64>, rate: Option<f64>) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    match (every_nth, rate) {
        (Some(k), _) => n.is_multiple_of(k),
        (None, Some(r)) => rand::random::<f64>() < r,
        (None, None) => true,
    }
}

impl Gremlins {
    pub fn set_enabled(&self, on: bool) {
        self.0.enabled.store(on, Ordering::Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.0.enabled.load(Ordering::Relaxed)
    }

    fn settings(&self) -> GremlinSettings {
        let mut s = self
            .0
            .settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_default();
        s.enabled = self.is_enabled();
        s
    }

    fn update(&self, f: impl FnOnce(&mut GremlinSettings)) {
        if let Ok(mut s) = self.0.settings.write() {
            f(&mut s);
        }
    }

    fn delay(&self) -> Option<Duration> {
        let s = self.0.settings.read().ok()?;
        let l = s.latency.as_ref().filter(|l| l.enabled)?;
        if !hits(&self.0.counters.latency, l.every_nth, None) {
            return None;
        }
        let jitter = if l.jitter_ms > 0 {
            rand::random_range(0..=l.jitter_ms)
        } else {
            0
        };
        Some(Duration::from_millis(l.delay_ms + jitter))
    }

    fn after_commit(&self) -> Option<Fault> {
        let s = self.0.settings.read().ok()?;
        if let Some(c) = s.crash.as_ref().filter(|c| c.enabled)
            && hits(&self.0.counters.crash, c.every_nth, c.rate)
        {
            return Some(Fault::Crash);
        }
        if let Some(n) = s.noise.as_ref().filter(|n| n.enabled)
            && hits(&self.0.counters.noise, n.every_nth, n.rate)
        {
            return Some(Fault::Noise);
        }
        None
    }

    /// Wraps a service's endpoint so the gremlins act on its requests.
    pub fn wrap<E>(self, ep: E) -> impl Endpoint<Output = Response>
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        let gremlins = self;
        ep.into_endpoint().map_to_response().around(move |ep, req: Request| {
            let gremlins = gremlins.clone();
            async move {
                if !gremlins.is_enabled() || exempt(req.uri().path()) {
                    return ep.call(req).await;
                }
                if let Some(d) = gremlins.delay() {
                    tokio::time::sleep(d).await;
                }
                let writes = req.method() != Method::GET && req.method() != Method::HEAD;
                let resp = ep.call(req).await?;
                if writes && resp.status().is_success() {
                    match gremlins.after_commit() {
                        Some(Fault::Crash) => {
                            tracing::error!("crash gremlin: exiting after a committed request");
                            std::process::exit(137);
                        }
                        Some(Fault::Noise) => {
                            return Err(poem::Error::from_string(
                                "noise gremlin: the request succeeded but the answer is an error",
                                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
                            ));
                        }
                        None => {}
                    }
                }
                Ok(resp)
            }
        })
    }
}

enum Fault {
    Noise,
    Crash,
}

/// Probes and the gremlin controls themselves are never slowed or broken.
fn exempt(path: &str) -> bool {
    ["/health", "/metrics", "/gremlin", "/docs", "/openapi"]
        .iter()
        .any(|p| path.starts_with(p))
}

#[derive(Tags)]
enum Tag {
    /// Fault injection (only when the service runs with --gremlins)
    Gremlin,
}

/// The gremlin controls, mounted on every service.
pub struct GremlinApi(pub Gremlins);

crate::problem_set!(ShowErrors {
    403 => "Gremlins are disabled on this service (`gremlins-disabled`).",
    500 => crate::contract::problem::INTERNAL,
});
crate::problem_set!(SetErrors {
    400 => crate::contract::problem::INVALID_BODY,
    403 => "Gremlins are disabled on this service (`gremlins-disabled`).",
    413 => crate::contract::problem::TOO_LARGE,
    415 => crate::contract::problem::NOT_JSON,
    500 => crate::contract::problem::INTERNAL,
});

type Answer<E = SetErrors> = Result<Json<GremlinSettings>, Problems<E>>;

impl GremlinApi {
    fn guard(&self) -> Result<(), ProblemResponse> {
        if self.0.is_enabled() {
            Ok(())
        } else {
            Err(ProblemResponse::forbidden(
                "gremlins-disabled",
                "gremlins are disabled on this service; start it with --gremlins (VALERIX_GREMLINS=true)",
            ))
        }
    }

    fn set<E: ProblemSet>(&self, f: impl FnOnce(&mut GremlinSettings)) -> Answer<E> {
        self.guard()?;
        self.0.update(f);
        let s = self.0.settings();
        tracing::warn!(settings = ?s, "gremlins changed");
        Ok(Json(s))
    }
}

#[OpenApi]
impl GremlinApi {
    /// The current gremlins.
    #[oai(path = "/gremlin", method = "get", tag = "Tag::Gremlin")]
    async fn show(&self) -> Answer<ShowErrors> {
        self.guard()?;
        Ok(Json(self.0.settings()))
    }

    /// Remove every gremlin.
    #[oai(path = "/gremlin", method = "delete", tag = "Tag::Gremlin")]
    async fn clear(&self) -> Answer<ShowErrors> {
        self.set(|s| *s = GremlinSettings::default())
    }

    /// Delay requests: `{"delay_ms": 3000, "enabled": true}`.
    #[oai(path = "/gremlin/latency", method = "post", tag = "Tag::Gremlin")]
    async fn latency(&self, body: Json<LatencyGremlin>) -> Answer {
        self.set(|s| s.latency = Some(body.0))
    }

    /// After a successful write, answer 500 anyway.
    #[oai(path = "/gremlin/noise", method = "post", tag = "Tag::Gremlin")]
    async fn noise(&self, body: Json<AfterCommitGremlin>) -> Answer {
        self.set(|s| s.noise = Some(body.0))
    }

    /// After a successful write, exit the process without answering.
    #[oai(path = "/gremlin/crash", method = "post", tag = "Tag::Gremlin")]
    async fn crash(&self, body: Json<AfterCommitGremlin>) -> Answer {
        self.set(|s| s.crash = Some(body.0))
    }
}
