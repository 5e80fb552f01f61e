//! The saga's decisions, apart from its calls: given what the last call
//! answered, the next call to make or where the order ends. Nothing here
//! waits on a network or a database, so every branch of the order flow is
//! a plain function call (the tests below walk each one).
//!
//! A call that got no answer (a timeout, the service unreachable, an error
//! status) leaves the order pending, never failed: the other side may have
//! acted, and the reconciler asks again later.

use crate::{
    clients::{Commit, Hold, Paid, Payment},
    domain::{FailureReason, OrderStatus, Outcome},
};

/// A call the saga makes to inventory or payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Hold the order's units (inventory answers their unit price).
    Reserve,
    Charge {
        amount_cents: i64,
    },
    /// Learn the payment's final outcome, fencing off a charge still on
    /// its way (giving the order up).
    Void,
    /// Take the held units for good.
    Commit,
    Refund,
    /// Give the held units back; the order then fails for this reason.
    Release(FailureReason),
}

/// What a call answered; `None`: no answer to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Reserve(Option<Hold>),
    Charge(Option<Payment>),
    Void(Option<Payment>),
    Commit(Option<Commit>),
    Refund(Option<Payment>),
    /// The reason the release was made for, and whether it was done.
    Release(FailureReason, bool),
}

/// What comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Call(Call),
    Done(Outcome),
}

/// One run of the saga over one order.
#[derive(Debug, Clone)]
pub struct Flow {
    quantity: i64,
    /// The status the order had when this run began.
    was: OrderStatus,
    /// A paid order is confirmed at once and its units committed after the
    /// answer ([`crate::stock_commit`]), not before.
    deferred_commit: bool,
    amount_cents: Option<i64>,
}

impl Flow {
    pub fn new(quantity: i32, was: OrderStatus, deferred_commit: bool) -> Self {
        Self {
            quantity: i64::from(quantity),
            was,
            deferred_commit,
            amount_cents: None,
        }
    }

    /// The first call: past its deadline an order is given up (its
    /// payment's outcome learnt first); otherwise its stock is reserved.
    pub fn start(&self, expired: bool) -> Next {
        Next::Call(if expired { Call::Void } else { Call::Reserve })
    }

    /// The order's amount, when this run learned it: the unit price
    /// inventory answered times the quantity, or, when the order was given
    /// up, what the payment service charged.
    pub fn amount_cents(&self) -> Option<i64> {
        self.amount_cents
    }

    pub fn next(&mut self, answer: Answer) -> Next {
        let stays = |status| Next::Done(Outcome::Pending(status));
        match answer {
            Answer::Reserve(Some(Hold::Held { unit_price_cents })) => {
                let amount_cents = unit_price_cents * self.quantity;
                self.amount_cents = Some(amount_cents);
                Next::Call(Call::Charge { amount_cents })
            }
            Answer::Reserve(Some(Hold::OutOfStock)) => {
                Next::Done(Outcome::Failed(FailureReason::OutOfStock))
            }
            // Someone gave the order up: learn what became of its payment.
            Answer::Reserve(Some(Hold::Released)) => Next::Call(Call::Void),
            Answer::Reserve(None) => stays(OrderStatus::PendingInventory),
            Answer::Charge(Some(payment)) => self.paid(payment.paid),
            // The charge may have gone through: the units stay held until
            // the payment's outcome is known.
            Answer::Charge(None) => stays(OrderStatus::PendingPayment),
            Answer::Void(Some(payment)) => {
                self.amount_cents = matches!(payment.paid, Paid::Completed | Paid::Refunded)
                    .then_some(payment.amount_cents);
                self.paid(payment.paid)
            }
            Answer::Void(None) => stays(match self.was {
                OrderStatus::PendingInventory => OrderStatus::PendingInventory,
                _ => OrderStatus::PendingPayment,
            }),
            Answer::Commit(Some(Commit::Committed)) => Next::Done(Outcome::Confirmed),
            // Paid, but the units are gone: pay the money back.
            Answer::Commit(Some(Commit::NotHeld)) => Next::Call(Call::Refund),
            Answer::Commit(None) | Answer::Refund(None) => stays(OrderStatus::PendingPayment),
            Answer::Refund(Some(_)) => Next::Call(Call::Release(FailureReason::Expired)),
            Answer::Release(reason, true) => Next::Done(Outcome::Failed(reason)),
            Answer::Release(_, false) => stays(OrderStatus::PendingPayment),
        }
    }

    /// The payment's outcome is known: take the units, or give them back.
    fn paid(&self, paid: Paid) -> Next {
        match paid {
            // The units stay held until the queued commit takes them.
            Paid::Completed if self.deferred_commit => Next::Done(Outcome::Confirmed),
            Paid::Completed => Next::Call(Call::Commit),
            Paid::Declined => Next::Call(Call::Release(FailureReason::PaymentDeclined)),
            Paid::Voided | Paid::Refunded => Next::Call(Call::Release(FailureReason::Expired)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: i64 = 1999;

    fn payment(paid: Paid, amount_cents: i64) -> Option<Payment> {
        Some(Payment { paid, amount_cents })
    }

    fn held() -> Answer {
        Answer::Reserve(Some(Hold::Held {
            unit_price_cents: PRICE,
        }))
    }

    /// Runs a fresh order of 3 units through `answers` (each the answer to
    /// the call before it): the calls made, where it ended, its amount.
    fn walk(flow: &mut Flow, expired: bool, answers: &[Answer]) -> (Vec<Call>, Outcome) {
        let mut calls = Vec::new();
        let mut next = flow.start(expired);
        for answer in answers {
            match next {
                Next::Call(call) => calls.push(call),
                Next::Done(outcome) => panic!("ended {outcome:?} before {answer:?}"),
            }
            next = flow.next(*answer);
        }
        match next {
            Next::Done(outcome) => (calls, outcome),
            Next::Call(call) => panic!("still calls {call:?} after {calls:?}"),
        }
    }

    fn fresh() -> Flow {
        Flow::new(3, OrderStatus::Pending, false)
    }

    #[test]
    fn reserved_charged_and_committed_is_confirmed_at_price_times_quantity() {
        let mut flow = fresh();
        let charged = payment(Paid::Completed, 3 * PRICE);
        let (calls, outcome) = walk(
            &mut flow,
            false,
            &[
                held(),
                Answer::Charge(charged),
                Answer::Commit(Some(Commit::Committed)),
            ],
        );
        assert_eq!(
            calls,
            [
                Call::Reserve,
                Call::Charge {
                    amount_cents: 3 * PRICE
                },
                Call::Commit
            ]
        );
        assert_eq!(outcome, Outcome::Confirmed);
        assert_eq!(flow.amount_cents(), Some(3 * PRICE));
    }

    #[test]
    fn with_deferred_commits_a_paid_order_is_confirmed_without_committing() {
        let mut flow = Flow::new(3, OrderStatus::Pending, true);
        let (calls, outcome) = walk(
            &mut flow,
            false,
            &[held(), Answer::Charge(payment(Paid::Completed, 3 * PRICE))],
        );
        assert_eq!(
            calls.last(),
            Some(&Call::Charge {
                amount_cents: 3 * PRICE
            })
        );
        assert_eq!(outcome, Outcome::Confirmed);
    }

    #[test]
    fn a_refused_reserve_fails_the_order_out_of_stock_and_charges_nothing() {
        let mut flow = fresh();
        let (calls, outcome) = walk(&mut flow, false, &[Answer::Reserve(Some(Hold::OutOfStock))]);
        assert_eq!(calls, [Call::Reserve]);
        assert_eq!(outcome, Outcome::Failed(FailureReason::OutOfStock));
        assert_eq!(flow.amount_cents(), None);
    }

    #[test]
    fn an_unanswered_reserve_leaves_the_order_pending_inventory() {
        let (calls, outcome) = walk(&mut fresh(), false, &[Answer::Reserve(None)]);
        assert_eq!(calls, [Call::Reserve]);
        assert_eq!(outcome, Outcome::Pending(OrderStatus::PendingInventory));
    }

    #[test]
    fn a_declined_payment_releases_the_units_and_fails_the_order() {
        let (calls, outcome) = walk(
            &mut fresh(),
            false,
            &[
                held(),
                Answer::Charge(payment(Paid::Declined, 3 * PRICE)),
                Answer::Release(FailureReason::PaymentDeclined, true),
            ],
        );
        assert_eq!(
            calls.last(),
            Some(&Call::Release(FailureReason::PaymentDeclined))
        );
        assert_eq!(outcome, Outcome::Failed(FailureReason::PaymentDeclined));
    }

    #[test]
    fn an_unanswered_charge_keeps_the_units_held_and_the_order_pending_payment() {
        let mut flow = fresh();
        let (calls, outcome) = walk(&mut flow, false, &[held(), Answer::Charge(None)]);
        assert!(
            !calls.iter().any(|c| matches!(c, Call::Release(_))),
            "{calls:?}"
        );
        assert_eq!(outcome, Outcome::Pending(OrderStatus::PendingPayment));
        assert_eq!(
            flow.amount_cents(),
            Some(3 * PRICE),
            "the amount is recorded"
        );
    }

    #[test]
    fn a_release_that_gets_no_answer_leaves_the_order_pending() {
        let (_, outcome) = walk(
            &mut fresh(),
            false,
            &[
                held(),
                Answer::Charge(payment(Paid::Declined, 3 * PRICE)),
                Answer::Release(FailureReason::PaymentDeclined, false),
            ],
        );
        assert_eq!(outcome, Outcome::Pending(OrderStatus::PendingPayment));
    }

    #[test]
    fn paid_but_no_units_left_to_commit_is_refunded_released_and_failed() {
        let paid = payment(Paid::Completed, 3 * PRICE);
        let (calls, outcome) = walk(
            &mut fresh(),
            false,
            &[
                held(),
                Answer::Charge(paid),
                Answer::Commit(Some(Commit::NotHeld)),
                Answer::Refund(payment(Paid::Refunded, 3 * PRICE)),
                Answer::Release(FailureReason::Expired, true),
            ],
        );
        assert_eq!(
            calls[2..],
            [
                Call::Commit,
                Call::Refund,
                Call::Release(FailureReason::Expired)
            ]
        );
        assert_eq!(outcome, Outcome::Failed(FailureReason::Expired));
    }

    #[test]
    fn an_unanswered_commit_or_refund_leaves_the_order_pending_payment() {
        let paid = payment(Paid::Completed, 3 * PRICE);
        let (_, after_commit) = walk(
            &mut fresh(),
            false,
            &[held(), Answer::Charge(paid), Answer::Commit(None)],
        );
        assert_eq!(after_commit, Outcome::Pending(OrderStatus::PendingPayment));
        let (_, after_refund) = walk(
            &mut fresh(),
            false,
            &[
                held(),
                Answer::Charge(paid),
                Answer::Commit(Some(Commit::NotHeld)),
                Answer::Refund(None),
            ],
        );
        assert_eq!(after_refund, Outcome::Pending(OrderStatus::PendingPayment));
    }

    #[test]
    fn an_expired_order_learns_its_payment_first_and_a_paid_one_is_still_confirmed() {
        let mut flow = Flow::new(3, OrderStatus::PendingPayment, false);
        let (calls, outcome) = walk(
            &mut flow,
            true,
            &[
                Answer::Void(payment(Paid::Completed, 5997)),
                Answer::Commit(Some(Commit::Committed)),
            ],
        );
        assert_eq!(calls, [Call::Void, Call::Commit]);
        assert_eq!(outcome, Outcome::Confirmed);
        assert_eq!(flow.amount_cents(), Some(5997), "what was charged");
    }

    #[test]
    fn an_expired_order_whose_charge_never_arrived_is_voided_released_and_failed() {
        let mut flow = Flow::new(3, OrderStatus::PendingPayment, false);
        let (calls, outcome) = walk(
            &mut flow,
            true,
            &[
                Answer::Void(payment(Paid::Voided, 0)),
                Answer::Release(FailureReason::Expired, true),
            ],
        );
        assert_eq!(calls, [Call::Void, Call::Release(FailureReason::Expired)]);
        assert_eq!(outcome, Outcome::Failed(FailureReason::Expired));
        assert_eq!(flow.amount_cents(), None, "nothing was charged");
    }

    #[test]
    fn an_unanswered_void_keeps_the_status_the_order_had() {
        for (was, stays) in [
            (OrderStatus::PendingInventory, OrderStatus::PendingInventory),
            (OrderStatus::PendingPayment, OrderStatus::PendingPayment),
            (OrderStatus::Pending, OrderStatus::PendingPayment),
        ] {
            let (_, outcome) = walk(&mut Flow::new(3, was, false), true, &[Answer::Void(None)]);
            assert_eq!(outcome, Outcome::Pending(stays), "was {was}");
        }
    }

    #[test]
    fn a_reservation_released_by_someone_else_gives_the_order_up() {
        let (calls, outcome) = walk(
            &mut fresh(),
            false,
            &[
                Answer::Reserve(Some(Hold::Released)),
                Answer::Void(payment(Paid::Refunded, 3 * PRICE)),
                Answer::Release(FailureReason::Expired, true),
            ],
        );
        assert_eq!(calls[..2], [Call::Reserve, Call::Void]);
        assert_eq!(outcome, Outcome::Failed(FailureReason::Expired));
    }
}
