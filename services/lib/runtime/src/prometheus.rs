//! The process's Prometheus registry: one `metrics` recorder per process
//! (tests run several services in one process, so installing is idempotent),
//! rendered by every service's `GET /metrics`. Which service a series belongs
//! to is its `service` label, set where it is recorded, never by the recorder.

use std::sync::OnceLock;

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
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(%err, "no Prometheus recorder: /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Everything recorded in this process, in Prometheus' text format.
pub fn render() -> String {
    install().map_or_else(String::new, |h| {
        // Upkeep drains histogram samples into their buckets; doing it per
        // scrape needs no task tied to one runtime.
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
