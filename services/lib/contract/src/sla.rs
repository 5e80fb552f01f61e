//! The order service's SLA: placing an order (`POST /orders`) takes under
//! a second on average over 30 s. The order service answers it (`GET
//! /sla`), the gateway's overview passes it on, and the Prometheus rule
//! `OrderServiceSLABreach` alerts on the same mean.

use std::time::Duration;

use poem_openapi::Object;

/// The SLA's limit in seconds: breached above it.
pub const SLA_LIMIT_SECONDS: f64 = 1.0;
/// The window the mean is taken over.
pub const SLA_WINDOW: Duration = Duration::from_secs(30);

/// Placing an order takes under a second on average over the last 30 s.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct Sla {
    /// Mean seconds taken by `POST /orders` over the window (0 when idle):
    /// the gauge `order_service_avg_latency_30s`. Absent when the order
    /// service did not answer (the gateway's overview).
    #[oai(skip_serializing_if_is_none)]
    pub avg_latency_30s: Option<f64>,
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
            avg_latency_30s: Some(avg_latency_30s),
            window_seconds: SLA_WINDOW.as_secs(),
            limit: SLA_LIMIT_SECONDS,
            breached: avg_latency_30s > SLA_LIMIT_SECONDS,
        }
    }

    /// While the order service does not answer: no figure, not breached.
    pub fn unknown() -> Self {
        Self {
            avg_latency_30s: None,
            breached: false,
            ..Self::new(0.0)
        }
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
        assert!(!Sla::unknown().breached);
    }
}
