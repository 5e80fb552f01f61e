//! The order flow. Every step is idempotent, so the request handler and the
//! reconciler run the same code from wherever an order was left, as often as
//! it takes: a crash between two steps only means the next run repeats one.
//!
//! What to do after each answer is decided in [`flow`], without I/O; this
//! module makes the calls it asks for and records where the order got.

mod flow;

use std::time::Duration;

use chrono::Utc;
use valerix_runtime::client::CallError;

use crate::{
    clients::{Inventory, Payments},
    domain::{OrderStatus, Outcome},
    stock_commit::StockCommits,
    store::{Idempotency, NewOrder, OrderRow, Settlement, Store, StoreError},
    telemetry,
    writes::Writes,
};
use flow::{Answer, Call, Flow, Next};

pub struct Saga {
    pub store: Store,
    /// The creates and settlements, grouped unless `--group-writes false`.
    pub writes: Writes,
    pub inventory: Inventory,
    pub payments: Payments,
    pub deadline: Duration,
    /// Some: a paid order is CONFIRMED at once and its stock committed
    /// after the answer ([`crate::stock_commit`]); None: committed before
    /// it is confirmed, on the request path.
    pub stock_commits: Option<StockCommits>,
}

/// Wait before the reconciler tries an unsettled order again.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(0, 6) as u32;
    Duration::from_millis(250 * 2u64.pow(exp)).min(Duration::from_secs(10))
}

impl Saga {
    /// Stores a new order (or finds the one its Idempotency-Key or
    /// Order-Id placed before) and drives it as far as it goes now.
    ///
    /// Once the order is stored it is acknowledged, whatever happens next:
    /// should recording a later step fail (the database failing over, a
    /// COMMIT whose connection broke, so whose outcome is unknown), the
    /// order is answered as it was stored, pending, and the reconciler
    /// drives it again once its lease runs out; each step being idempotent,
    /// it finds out what the lost write did rather than guess.
    pub async fn place(
        &self,
        new: &NewOrder,
        idempotency: &Idempotency,
    ) -> Result<OrderRow, StoreError> {
        let created = self.writes.create(new, idempotency).await?;
        if created.replayed {
            return Ok(created.order);
        }
        match self.advance(&created.order).await {
            Ok(order) => Ok(order),
            Err(err @ (StoreError::Db(_) | StoreError::GroupLost)) => {
                tracing::warn!(order_id = %created.order.id, %err,
                    "the order's progress was not recorded; it stays pending for the reconciler");
                Ok(created.order)
            }
            Err(err) => Err(err),
        }
    }

    /// Drives the order as far as it goes now and records where it got.
    pub async fn advance(&self, order: &OrderRow) -> Result<OrderRow, StoreError> {
        if order.status.is_settled() {
            return Ok(order.clone());
        }
        let (outcome, amount_cents) = self.drive(order).await;
        tracing::debug!(order_id = %order.id, ?outcome, ?amount_cents, "saga step");
        let settle = |status, reason| Settlement {
            id: order.id,
            status,
            reason,
            amount_cents,
        };
        match outcome {
            Outcome::Confirmed => {
                let row = self.settle(settle(OrderStatus::Confirmed, None)).await?;
                // Only what is CONFIRMED in the database: should another run
                // have settled the order otherwise, its stock is not sold.
                if let Some(commits) = &self.stock_commits
                    && row.status == OrderStatus::Confirmed
                {
                    commits.queue(order.id);
                }
                Ok(row)
            }
            Outcome::Failed(reason) => self.settle(settle(OrderStatus::Failed, Some(reason))).await,
            Outcome::Pending(status) => {
                self.store
                    .defer(order.id, status, amount_cents, backoff(order.attempts))
                    .await
            }
        }
    }

    async fn settle(&self, settlement: Settlement) -> Result<OrderRow, StoreError> {
        let (row, settled_now) = self.writes.settle(settlement).await?;
        if settled_now {
            telemetry::order_settled(settlement.status, settlement.reason);
        }
        Ok(row)
    }

    fn expired(&self, order: &OrderRow) -> bool {
        let age = Utc::now() - order.created_at;
        age.to_std().is_ok_and(|age| age > self.deadline)
    }

    /// Where the order got, with its amount when this run learned it
    /// ([`Flow::amount_cents`]): the calls [`Flow`] asks for, one after
    /// another, until it says where the order ends.
    async fn drive(&self, order: &OrderRow) -> (Outcome, Option<i64>) {
        let mut flow = Flow::new(order.quantity, order.status, self.stock_commits.is_some());
        let mut next = flow.start(self.expired(order));
        loop {
            match next {
                Next::Done(outcome) => return (outcome, flow.amount_cents()),
                Next::Call(call) => next = flow.next(self.call(order, call).await),
            }
        }
    }

    /// Makes one call of the flow.
    async fn call(&self, order: &OrderRow, call: Call) -> Answer {
        let (inventory, payments) = (&self.inventory, &self.payments);
        match call {
            Call::Reserve => Answer::Reserve(answered(order, call, inventory.reserve(order).await)),
            Call::Charge { amount_cents } => Answer::Charge(answered(
                order,
                call,
                payments.charge(order, amount_cents).await,
            )),
            Call::Void => Answer::Void(answered(order, call, payments.void(order).await)),
            Call::Commit => Answer::Commit(answered(order, call, inventory.commit(order).await)),
            Call::Refund => Answer::Refund(answered(order, call, payments.refund(order).await)),
            Call::Release(reason) => Answer::Release(
                reason,
                answered(order, call, inventory.release(order).await).is_some(),
            ),
        }
    }
}

/// The answer of a call that got one; a failure is logged and answers None.
fn answered<T>(order: &OrderRow, call: Call, result: Result<T, CallError>) -> Option<T> {
    match result {
        Ok(answer) => Some(answer),
        Err(err) => {
            tracing::warn!(order_id = %order.id, ?call, %err, "call failed; order stays pending");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconciler_waits_twice_as_long_each_attempt_from_250_ms_up_to_10_s() {
        let waits: Vec<u64> = (0..8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff(-1), Duration::from_millis(250), "never negative");
    }
}
