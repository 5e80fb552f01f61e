//! `GET /sla`: the order service's SLA figure as JSON, for the gateway's
//! overview (the same mean the gauge `order_service_avg_latency_30s` shows
//! Prometheus, without parsing its text format).

use poem_openapi::{Object, OpenApi, Tags, payload::Json};
use valerix_runtime::observe::LatencyGauge;

use crate::telemetry::{AVG_LATENCY_WINDOW, SLA_LIMIT_SECONDS};

#[derive(Tags)]
enum Tag {
    /// The service level placing an order keeps
    Sla,
}

/// Placing an order takes under a second on average over the last 30 s.
#[derive(Debug, Clone, Object)]
pub struct Sla {
    /// Mean seconds taken by `POST /orders` over the window (0 when idle):
    /// the gauge `order_service_avg_latency_30s`.
    pub avg_latency_30s: f64,
    /// The window in seconds.
    pub window_seconds: u64,
    /// The limit in seconds (the `OrderServiceSLABreach` rule's).
    pub limit: f64,
    /// Whether the mean is above the limit.
    pub breached: bool,
}

impl Sla {
    pub fn new(avg_latency_30s: f64) -> Self {
        Self {
            avg_latency_30s,
            window_seconds: AVG_LATENCY_WINDOW.as_secs(),
            limit: SLA_LIMIT_SECONDS,
            breached: avg_latency_30s > SLA_LIMIT_SECONDS,
        }
    }
}

pub struct SlaApi {
    gauge: LatencyGauge,
}

impl SlaApi {
    pub fn new(gauge: LatencyGauge) -> Self {
        Self { gauge }
    }
}

#[OpenApi]
impl SlaApi {
    /// The SLA now.
    ///
    /// The mean latency of placing an order over the last 30 s against its
    /// 1 s limit. Always 200: the figure is kept in memory.
    #[oai(path = "/sla", method = "get", tag = "Tag::Sla")]
    async fn sla(&self) -> Json<Sla> {
        Json(Sla::new(self.gauge.mean()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sla_is_breached_above_its_limit_only() {
        assert!(!Sla::new(0.999).breached);
        assert!(!Sla::new(1.0).breached);
        assert!(Sla::new(1.001).breached);
        assert!(!Sla::new(0.0).breached);
        assert_eq!(Sla::new(0.5).window_seconds, 30);
    }
}
