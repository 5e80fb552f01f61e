//! The charge rules, without the database: when a charge is declined,
//! what it records, and how a repeated charge for an order is answered.
//! [`crate::store`] applies them in its SQL's place; the tests below walk
//! each one.

use clap::Args;

use crate::{
    domain::PaymentStatus,
    store::{PaymentRow, StoreError},
};

/// When a charge is declined. There is no card network behind this service,
/// so the rule is explicit: an amount over the limit, or a user id that
/// starts with the decline prefix.
#[derive(Debug, Clone, Copy, Args)]
pub struct DeclineRule {
    /// Decline charges above this many cents
    #[arg(long, env = "VALERIX_DECLINE_ABOVE_CENTS", default_value_t = 1_000_000)]
    pub decline_above_cents: i64,
}

impl DeclineRule {
    /// User ids starting with this are always declined (test and demo users).
    pub const DECLINE_USER_PREFIX: &'static str = "decline";

    pub fn reason(&self, amount_cents: i64, user_id: Option<&str>) -> Option<&'static str> {
        if amount_cents > self.decline_above_cents {
            Some("AMOUNT_LIMIT")
        } else if user_id.is_some_and(|u| u.starts_with(Self::DECLINE_USER_PREFIX)) {
            Some("TEST_USER_DECLINED")
        } else {
            None
        }
    }
}

impl Default for DeclineRule {
    fn default() -> Self {
        valerix_runtime::config::defaults()
    }
}

/// What a charge records: declined with a reason, else completed.
pub fn outcome(decline_reason: Option<&str>) -> PaymentStatus {
    if decline_reason.is_some() {
        PaymentStatus::Declined
    } else {
        PaymentStatus::Completed
    }
}

/// The answer to a charge for an order that has a payment already: that
/// payment, as it is (a repeat is never a second charge), unless the repeat
/// asks for another amount. A VOIDED fence has amount 0 and answers any
/// later charge as voided.
pub fn repeat(existing: PaymentRow, requested_cents: i64) -> Result<PaymentRow, StoreError> {
    if existing.amount_cents != requested_cents && existing.status != PaymentStatus::Voided {
        return Err(StoreError::AmountMismatch {
            order_id: existing.order_id,
            existing: existing.amount_cents,
            requested: requested_cents,
        });
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn rule() -> DeclineRule {
        DeclineRule {
            decline_above_cents: 10_000,
        }
    }

    #[test]
    fn a_charge_above_the_limit_is_declined_and_one_at_the_limit_is_not() {
        assert_eq!(rule().reason(10_001, None), Some("AMOUNT_LIMIT"));
        assert_eq!(rule().reason(10_000, None), None);
        assert_eq!(rule().reason(1, Some("alice")), None);
    }

    #[test]
    fn a_user_whose_id_starts_with_decline_is_declined_whatever_the_amount() {
        assert_eq!(
            rule().reason(1, Some("decline-7")),
            Some("TEST_USER_DECLINED")
        );
        assert_eq!(
            rule().reason(1, Some("declined")),
            Some("TEST_USER_DECLINED")
        );
        assert_eq!(rule().reason(1, Some("not-decline")), None);
        assert_eq!(
            rule().reason(10_001, Some("decline-7")),
            Some("AMOUNT_LIMIT"),
            "the limit is named first"
        );
    }

    #[test]
    fn the_default_limit_is_ten_thousand_in_currency() {
        assert_eq!(DeclineRule::default().decline_above_cents, 1_000_000);
    }

    #[test]
    fn a_declined_charge_records_declined_and_any_other_completed() {
        assert_eq!(outcome(Some("AMOUNT_LIMIT")), PaymentStatus::Declined);
        assert_eq!(outcome(None), PaymentStatus::Completed);
    }

    fn stored(status: PaymentStatus, amount_cents: i64) -> PaymentRow {
        let now = chrono::Utc::now();
        PaymentRow {
            id: Uuid::new_v4(),
            order_id: Uuid::new_v4(),
            amount_cents,
            status,
            decline_reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_repeat_for_the_same_amount_answers_the_first_payment_as_it_is() {
        for status in [
            PaymentStatus::Completed,
            PaymentStatus::Declined,
            PaymentStatus::Refunded,
        ] {
            let first = stored(status, 500);
            let answer = repeat(first.clone(), 500).expect("the first payment");
            assert_eq!((answer.id, answer.status), (first.id, status));
        }
    }

    #[test]
    fn a_repeat_for_another_amount_is_refused() {
        let first = stored(PaymentStatus::Completed, 500);
        match repeat(first.clone(), 501) {
            Err(StoreError::AmountMismatch {
                order_id,
                existing: 500,
                requested: 501,
            }) => assert_eq!(order_id, first.order_id),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_void_fence_answers_any_later_charge_as_voided() {
        let fence = stored(PaymentStatus::Voided, 0);
        let answer = repeat(fence.clone(), 500).expect("the fence");
        assert_eq!(
            (answer.id, answer.status),
            (fence.id, PaymentStatus::Voided)
        );
    }
}
