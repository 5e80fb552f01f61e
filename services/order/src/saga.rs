//! The order flow. Every step is idempotent, so the request handler and the
//! reconciler run the same code from wherever an order was left, as often as
//! it takes: a crash between two steps only means the next run repeats one.

use std::time::Duration;

use chrono::Utc;

use crate::{
    clients::{Commit, Hold, Inventory, Paid, Payments},
    domain::{FailureReason, OrderStatus, Outcome},
    stock_commit::StockCommits,
    store::{NewOrder, OrderRow, Settlement, Store, StoreError},
    telemetry,
    writes::Writes,
};

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
    /// Stores a new order (or finds the one its idempotency key placed
    /// before) and drives it as far as it goes now.
    ///
    /// Once the order is stored it is acknowledged, whatever happens next:
    /// should recording a later step fail (the database failing over, a
    /// COMMIT whose connection broke, so whose outcome is unknown), the
    /// order is answered as it was stored, pending, and the reconciler
    /// drives it again once its lease runs out; each step being idempotent,
    /// it finds out what the lost write did rather than guess.
    pub async fn place(&self, new: &NewOrder, key: Option<&str>) -> Result<OrderRow, StoreError> {
        let created = self.writes.create(new, key).await?;
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

    /// Where the order got, with its amount when this run learned it: the
    /// unit price inventory answered with the reservation, times the
    /// quantity (or, when given up, what the payment service charged).
    async fn drive(&self, order: &OrderRow) -> (Outcome, Option<i64>) {
        if self.expired(order) {
            return self.give_up(order).await;
        }
        let amount_cents = match self.inventory.reserve(order).await {
            Ok(Hold::Held { unit_price_cents }) => unit_price_cents * i64::from(order.quantity),
            Ok(Hold::OutOfStock) => return (Outcome::Failed(FailureReason::OutOfStock), None),
            Ok(Hold::Released) => return self.give_up(order).await,
            Err(err) => {
                tracing::warn!(order_id = %order.id, %err, "reserve failed; order stays pending");
                return (Outcome::Pending(OrderStatus::PendingInventory), None);
            }
        };
        let outcome = match self.payments.charge(order, amount_cents).await {
            Ok(payment) => self.settle_payment(order, payment.paid).await,
            Err(err) => {
                // The charge may have gone through: keep the stock until
                // the payment's outcome is known.
                tracing::warn!(order_id = %order.id, %err, "charge failed; order stays pending");
                Outcome::Pending(OrderStatus::PendingPayment)
            }
        };
        (outcome, Some(amount_cents))
    }

    /// Past the deadline: learn the payment's final outcome (voiding a charge
    /// that never arrived), then confirm or compensate accordingly.
    async fn give_up(&self, order: &OrderRow) -> (Outcome, Option<i64>) {
        match self.payments.void(order).await {
            Ok(payment) => {
                let charged = matches!(payment.paid, Paid::Completed | Paid::Refunded)
                    .then_some(payment.amount_cents);
                (self.settle_payment(order, payment.paid).await, charged)
            }
            Err(err) => {
                tracing::warn!(order_id = %order.id, %err, "void failed; order stays pending");
                let status = match order.status {
                    OrderStatus::PendingInventory => OrderStatus::PendingInventory,
                    _ => OrderStatus::PendingPayment,
                };
                (Outcome::Pending(status), None)
            }
        }
    }

    /// The payment's outcome is known: commit the stock, or give it back.
    async fn settle_payment(&self, order: &OrderRow, paid: Paid) -> Outcome {
        let still_pending = Outcome::Pending(OrderStatus::PendingPayment);
        match paid {
            // The units stay held until the queued commit takes them.
            Paid::Completed if self.stock_commits.is_some() => Outcome::Confirmed,
            Paid::Completed => match self.inventory.commit(order).await {
                Ok(Commit::Committed) => Outcome::Confirmed,
                // Paid, but the stock is gone: pay the money back.
                Ok(Commit::NotHeld) => match self.payments.refund(order).await {
                    Ok(_) => self.release(order, FailureReason::Expired).await,
                    Err(_) => still_pending,
                },
                Err(err) => {
                    tracing::warn!(order_id = %order.id, %err, "commit failed; order stays pending");
                    still_pending
                }
            },
            Paid::Declined => self.release(order, FailureReason::PaymentDeclined).await,
            Paid::Voided | Paid::Refunded => self.release(order, FailureReason::Expired).await,
        }
    }

    async fn release(&self, order: &OrderRow, reason: FailureReason) -> Outcome {
        match self.inventory.release(order).await {
            Ok(()) => Outcome::Failed(reason),
            Err(err) => {
                tracing::warn!(order_id = %order.id, %err, "release failed; order stays pending");
                Outcome::Pending(OrderStatus::PendingPayment)
            }
        }
    }
}
