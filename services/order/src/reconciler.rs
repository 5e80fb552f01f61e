//! The background task that settles every order the request path could not:
//! it claims due orders (SKIP LOCKED, so replicas never share one) and runs
//! the saga on them again. It commits the stock of CONFIRMED orders whose
//! deferred commit was lost ([`stock_commit::sweep`]), and forgets
//! Idempotency-Keys past their retention, so that table holds a day of keys,
//! not every key ever sent.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use tracing::Instrument;

use crate::{
    domain::OrderStatus,
    saga::Saga,
    stock_commit,
    store::Store,
    telemetry::{self, Action},
};

/// Orders claimed per round.
const BATCH: i64 = 32;
/// Orders driven at once within a round.
const PARALLEL: usize = 8;
/// Expired Idempotency-Keys deleted per statement: few enough that a purge
/// never holds many row locks, or a transaction for long, beside the orders
/// being placed.
const PURGE_BATCH: i64 = 500;
/// Purge statements per tick at most (10 000 keys, 20 000/s at the default
/// interval): a backlog, such as the first start of a version that purges,
/// goes down over a few ticks instead of stalling the orders.
const PURGE_STATEMENTS: usize = 20;

pub fn spawn(
    saga: Arc<Saga>,
    interval: Duration,
    key_retention: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            ticker.tick().await;
            // A full batch means more may be due: go again at once.
            while let Ok(n) = round(&saga).await {
                if n < BATCH as usize {
                    break;
                }
            }
            // Also when this replica commits on the request path: another
            // one, or this one before a restart, may have deferred.
            if last_sweep.is_none_or(|at| at.elapsed() >= stock_commit::SWEEP_EVERY) {
                last_sweep = Some(tokio::time::Instant::now());
                sweep(&saga).await;
            }
            purge_keys(&saga.store, key_retention).await;
        }
    })
}

/// One sweep of held stock ([`stock_commit::sweep`]), a trace of its own.
async fn sweep(saga: &Saga) {
    let span = tracing::info_span!("stock_commit_sweep", otel.kind = "internal");
    match stock_commit::sweep(&saga.inventory, &saga.store)
        .instrument(span)
        .await
    {
        Ok(_) => {}
        // Inventory down is already told by the saga's calls, the
        // breaker and its health: not once more per round.
        Err(stock_commit::SweepError::Call(err)) => {
            tracing::debug!(%err, "cannot sweep held stock of confirmed orders");
        }
        Err(err) => {
            tracing::warn!(%err, "cannot sweep held stock of confirmed orders");
        }
    }
}

/// Deletes Idempotency-Keys older than `retention`, oldest first, until none
/// is left or this tick's share is done. With none expired it costs one
/// index lookup.
async fn purge_keys(store: &Store, retention: Duration) {
    let mut purged = 0;
    for _ in 0..PURGE_STATEMENTS {
        match store.purge_idempotency_keys(retention, PURGE_BATCH).await {
            Ok(n) => {
                purged += n;
                if n < PURGE_BATCH as u64 {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "reconciler cannot purge expired idempotency keys");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::debug!(purged, "expired idempotency keys deleted");
    }
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
