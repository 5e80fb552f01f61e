//! The background task that settles every order the request path could not:
//! it claims due orders (SKIP LOCKED, so replicas never share one) and runs
//! the saga on them again.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use tracing::Instrument;

use crate::{
    domain::OrderStatus,
    saga::Saga,
    telemetry::{self, Action},
};

/// Orders claimed per round.
const BATCH: i64 = 32;
/// Orders driven at once within a round.
const PARALLEL: usize = 8;

pub fn spawn(saga: Arc<Saga>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // A full batch means more may be due: go again at once.
            while let Ok(n) = round(&saga).await {
                if n < BATCH as usize {
                    break;
                }
            }
        }
    })
}

async fn round(saga: &Saga) -> Result<usize, ()> {
    let orders = saga.store.claim_due(BATCH).await.map_err(|err| {
        tracing::warn!(%err, "reconciler cannot claim orders");
    })?;
    let n = orders.len();
    stream::iter(orders)
        .for_each_concurrent(PARALLEL, |order| {
            // Each pass over an order is a trace of its own, holding the
            // downstream calls it made.
            let span =
                tracing::info_span!("reconcile", order_id = %order.id, otel.kind = "internal");
            async move {
                let action = match saga.advance(&order).await {
                    Ok(after) => {
                        if after.status != order.status {
                            tracing::info!(from = %order.status, to = %after.status, "reconciled");
                        }
                        match after.status {
                            OrderStatus::Confirmed => Action::Confirmed,
                            OrderStatus::Failed => Action::Failed,
                            _ => Action::Retried,
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "reconciler step failed");
                        Action::Error
                    }
                };
                telemetry::reconciler_action(action);
            }
            .instrument(span)
        })
        .await;
    Ok(n)
}
