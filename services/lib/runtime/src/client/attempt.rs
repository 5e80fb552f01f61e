//! One attempt of a call to another service, observed: a client span around
//! it, whose `traceparent` the request carries, and a latency sample by
//! outcome.

use std::time::Instant;

use reqwest::Method;
use tracing::{Instrument, field::Empty};

use super::CallError;
use crate::telemetry::requests::method_label;

/// One attempt of a call to `downstream`: a client span around it (the
/// request it sends carries the span's `traceparent`) and a latency sample
/// labelled ok | timeout | error | rejected.
pub(super) async fn observed<T>(
    downstream: &'static str,
    method: &Method,
    path: &str,
    attempt: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    // The path without its query: callers pass fixed paths, so this is bounded.
    let operation = format!(
        "{} {}",
        method_label(method),
        path.split('?').next().unwrap_or(path)
    );
    let span = tracing::info_span!(
        "downstream",
        otel.name = operation.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        peer.service = downstream,
        outcome = Empty,
    );
    let start = Instant::now();
    let result = attempt.instrument(span.clone()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    span.record("outcome", outcome);
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    metrics::histogram!("valerix_downstream_request_duration_seconds",
        "downstream" => downstream, "operation" => operation, "outcome" => outcome)
    .record(start.elapsed().as_secs_f64());
    result
}
