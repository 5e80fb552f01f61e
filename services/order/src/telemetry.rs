//! The order service's own metrics (names in docs/CONTRACT.md): how orders
//! end, how many are still open, and what the reconciler does about them.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{
    domain::{FailureReason, OrderStatus},
    store::Store,
};

/// The order service's view of the SLA: mean latency of placing an order
/// (`POST /orders`) over 30 s, the same scope as the OrderServiceSLABreach
/// rule in grafana/prometheus/valerix-rules.yml.
pub const AVG_LATENCY_GAUGE: &str = "order_service_avg_latency_30s";
pub const AVG_LATENCY_ROUTE: &str = "/orders";

/// How often the pending backlog is counted in the database.
const PENDING_EVERY: Duration = Duration::from_secs(2);

/// What the reconciler did with an order it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Drove it to CONFIRMED.
    Confirmed,
    /// Drove it to FAILED (compensated: stock released, payment voided/refunded).
    Failed,
    /// A downstream still does not answer: it stays pending, retried later.
    Retried,
    /// The database failed while recording the step.
    Error,
}

impl Action {
    const ALL: [Action; 4] = [Self::Confirmed, Self::Failed, Self::Retried, Self::Error];

    fn label(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Retried => "retried",
            Self::Error => "error",
        }
    }
}

fn reason_label(reason: Option<FailureReason>) -> &'static str {
    reason.map_or("", FailureReason::as_str)
}

/// Creates every known series at 0, so the first order or action already
/// shows up as an increase in Prometheus (a series born at 1 does not).
pub fn register() {
    let settled = [(OrderStatus::Confirmed, None)].into_iter().chain(
        [
            FailureReason::OutOfStock,
            FailureReason::PaymentDeclined,
            FailureReason::Expired,
        ]
        .map(|r| (OrderStatus::Failed, Some(r))),
    );
    for (status, reason) in settled {
        metrics::counter!("valerix_orders_total",
            "status" => status.as_str(), "reason" => reason_label(reason))
        .increment(0);
    }
    crate::stock_commit::register();
    for action in Action::ALL {
        metrics::counter!("valerix_reconciler_actions_total", "action" => action.label())
            .increment(0);
    }
}

/// An order reached CONFIRMED or FAILED (counted once, by whoever settled it).
pub fn order_settled(status: OrderStatus, reason: Option<FailureReason>) {
    metrics::counter!("valerix_orders_total",
        "status" => status.as_str(), "reason" => reason_label(reason))
    .increment(1);
}

pub fn reconciler_action(action: Action) {
    metrics::counter!("valerix_reconciler_actions_total", "action" => action.label()).increment(1);
}

/// Keeps `valerix_orders_pending{status}` current from the database, the
/// one place that knows the backlog of every replica (so each replica
/// reports the same number; dashboards take the max).
pub fn spawn_pending_gauge(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PENDING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.unsettled_counts().await {
                Ok(counts) => {
                    for status in OrderStatus::UNSETTLED {
                        let n = counts
                            .iter()
                            .find(|(s, _)| *s == status)
                            .map_or(0, |(_, n)| *n);
                        metrics::gauge!("valerix_orders_pending", "status" => status.as_str())
                            .set(n as f64);
                    }
                }
                Err(err) => tracing::debug!(%err, "cannot count pending orders"),
            }
        }
    })
}
