//! The process's Prometheus registry: one `metrics` recorder per process
//! (tests run several services in one process, so installing is idempotent),
//! rendered by every service's `GET /metrics`. Which service a series belongs
//! to is its `service` label, set where it is recorded, never by the recorder.
//!
//! Histogram samples are kept one by one until upkeep drains them into their
//! buckets. Rendering drains them too, but a service nobody scrapes (no
//! Prometheus installed, or Prometheus down for a weekend) must not keep
//! every request's samples: a thread of the recorder's own drains them every
//! `UPKEEP_EVERY` whether anyone scrapes or not.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use poem::{
    Response, handler,
    http::{StatusCode, header},
};

/// Where every service serves its metrics. Not part of the OpenAPI spec: it
/// is Prometheus' text format, not an API.
pub const PATH: &str = "/metrics";

/// Histogram buckets in seconds (docs/CONTRACT.md). 1 s is the SLA
/// boundary, so "share of requests within the SLA" is one bucket away.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the samples recorded since are drained into their buckets: at
/// most this long of them is held (at 2 000 requests/s, a few histogram
/// samples of 8 bytes each per request: tens of KiB).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder unless this process already has one. Without it
/// every `metrics::counter!` etc. is a no-op, so call it before any service
/// code records (the binaries do in `telemetry::init`, `serve` does too).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Without explicit buckets the exporter renders summaries, and
            // Prometheus cannot aggregate those across instances.
            let installed = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(%err, "no Prometheus recorder: /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Whether this process has its recorder (until then every series is a
/// no-op, and a handle taken then stays one).
pub(crate) fn installed() -> bool {
    HANDLE.get().is_some_and(Option::is_some)
}

/// Upkeep on a timer, on a thread rather than a tokio task: the recorder
/// belongs to the process, which may run several runtimes (the tests do,
/// one per test) and outlive any of them. The exporter's own upkeep task
/// comes only with its HTTP listener or push gateway, neither of which we
/// use: `/metrics` is served by each service's own router.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "no metrics upkeep thread: histogram samples drain only when scraped");
    }
}

/// Everything recorded in this process, in Prometheus' text format.
pub fn render() -> String {
    install().map_or_else(String::new, |h| {
        // Rendering drains the histograms itself; upkeep also publishes
        // descriptions recorded since the last tick, so a scrape is current.
        h.run_upkeep();
        h.render()
    })
}

/// `GET /metrics`.
#[handler]
pub fn endpoint() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(render())
}
