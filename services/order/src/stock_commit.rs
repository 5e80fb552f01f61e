//! Deferred stock commits: an order is CONFIRMED as soon as it is paid for,
//! while inventory still holds its units (RESERVED); the commit that takes
//! them out of stock follows off the request path, many orders per call.
//!
//! Held is enough for the buyer: held units are not available to anyone
//! else, and nothing releases the reservation of a CONFIRMED order (only
//! the saga of a failing order releases, and a settled order is never
//! driven again). Each order is one exchange and one database commit
//! shorter, and a hot product's commits arrive at inventory in batches.
//!
//! The queue lives in memory, one batch in flight at a time: a batch is
//! whatever queued while the previous call ran (no timer), at most
//! [`MAX_BATCH`]. A stopping process sends what it queued
//! ([`Committer::finish`]); what a crash or a failed call loses, the
//! reconciler's [`sweep`] finds: reservations held for longer than
//! [`SWEEP_AFTER_SECS`] whose order is CONFIRMED.

use std::time::Duration;

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::Instrument;
use uuid::Uuid;
use valerix_runtime::client::CallError;

use crate::{
    clients::Inventory,
    store::{Store, StoreError},
};

/// Orders per `POST /inventory/commits` (the most it takes).
pub use valerix_runtime::contract::inventory::MAX_COMMIT_BATCH as MAX_BATCH;
/// Commits waiting for the call in flight; past it an order is left to the
/// sweep rather than held in memory without bound.
const QUEUE: usize = 8192;
/// A reservation held this long whose order is CONFIRMED has lost its
/// queued commit (the process stopped, or inventory did not answer).
pub const SWEEP_AFTER_SECS: u32 = 5;
/// How often the reconciler sweeps: each sweep is a call to inventory (and
/// a small trace), so not on every round.
pub const SWEEP_EVERY: Duration = Duration::from_secs(SWEEP_AFTER_SECS as u64);
/// Held reservations looked at per sweep, oldest first.
const SWEEP_LIMIT: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The queue of commits; clones share it.
#[derive(Clone)]
pub struct StockCommits {
    queue: mpsc::Sender<Uuid>,
}

/// The task that empties the queue.
pub struct Committer {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl Committer {
    /// Stops taking commits and sends what is queued (after the call in
    /// flight), waiting at most `within`; what is left then is the sweep's.
    pub async fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("stock commits still queued when stopping: left to the sweep");
        }
    }
}

impl StockCommits {
    /// The queue and the task that empties it.
    pub fn spawn(inventory: Inventory) -> (Self, Committer) {
        let (queue, orders) = mpsc::channel(QUEUE);
        let (stop, stopping) = oneshot::channel();
        let task = tokio::spawn(run(orders, inventory, stopping));
        (Self { queue }, Committer { task, stop })
    }

    /// Queues the commit of a CONFIRMED order's reservation.
    pub fn queue(&self, order_id: Uuid) {
        if self.queue.try_send(order_id).is_err() {
            record("left_to_sweep", 1);
            tracing::debug!(%order_id, "stock commit queue full; left to the sweep");
        }
    }
}

async fn run(
    mut orders: mpsc::Receiver<Uuid>,
    inventory: Inventory,
    mut stop: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            _ = orders.recv_many(&mut batch, MAX_BATCH) => {}
            _ = &mut stop, if !stopping => {
                // A stopping process sends what it queued rather than
                // leave those units held until the next sweep: once closed,
                // the queue yields what it holds, then nothing.
                stopping = true;
                orders.close();
                continue;
            }
        }
        if batch.is_empty() {
            return;
        }
        // A trace per batch: it serves many orders, each with its own trace.
        let span = tracing::info_span!(
            "stock_commits",
            orders = batch.len(),
            otel.kind = "internal"
        );
        if let Err(err) = commit(&inventory, &batch).instrument(span).await {
            record("left_to_sweep", batch.len());
            tracing::warn!(%err, orders = batch.len(), "stock commits failed; left to the sweep");
        }
        batch.clear();
    }
}

fn record(outcome: &'static str, orders: usize) {
    metrics::counter!("valerix_order_stock_commits_total", "outcome" => outcome)
        .increment(orders as u64);
}

/// Creates the series at 0 (see `telemetry::register`).
pub fn register() {
    for outcome in ["committed", "left_to_sweep", "not_held"] {
        metrics::counter!("valerix_order_stock_commits_total", "outcome" => outcome).increment(0);
    }
}

/// Commits the reservations of `orders`, all CONFIRMED.
async fn commit(inventory: &Inventory, orders: &[Uuid]) -> Result<(), CallError> {
    for chunk in orders.chunks(MAX_BATCH) {
        let answer = inventory.commit_batch(chunk).await?;
        record("committed", answer.committed.len());
        let lost = answer.not_held.len() + answer.missing.len();
        if lost > 0 {
            // Nothing may release a CONFIRMED order's stock: `valerix
            // audit` reports these orders too.
            record("not_held", lost);
            for n in &answer.not_held {
                tracing::error!(order_id = %n.order_id, status = %n.status,
                    "a CONFIRMED order's reservation is not held: its stock cannot be committed");
            }
            for order_id in &answer.missing {
                tracing::error!(%order_id, "a CONFIRMED order has no reservation to commit");
            }
        }
    }
    Ok(())
}

/// The reconciler's share: commits the reservations held for longer than
/// [`SWEEP_AFTER_SECS`] whose order is CONFIRMED; how many it found.
/// Reservations of orders still in flight are the saga's, and left alone.
pub async fn sweep(inventory: &Inventory, store: &Store) -> Result<usize, SweepError> {
    let held = inventory.held(SWEEP_AFTER_SECS, SWEEP_LIMIT).await?;
    if held.is_empty() {
        return Ok(0);
    }
    let confirmed = store.confirmed_among(&held).await?;
    if !confirmed.is_empty() {
        commit(inventory, &confirmed).await?;
        tracing::info!(
            orders = confirmed.len(),
            "committed the stock of CONFIRMED orders whose commit was lost"
        );
    }
    Ok(confirmed.len())
}
