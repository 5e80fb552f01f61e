//! Payments as the order service calls them: charge an order once, void
//! (fence off a charge that has not arrived), refund, read.

use poem_openapi::{Enum, Object};
use uuid::Uuid;

use super::domain::{Cents, UserId};

// As stored in `payments.status`: a value the database holds that is not
// one of these fails the read (sqlx's decode), it is never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(
    feature = "db",
    sqlx(type_name = "varchar", rename_all = "SCREAMING_SNAKE_CASE")
)]
pub enum PaymentStatus {
    /// The charge went through.
    Completed,
    /// The charge was refused (see `decline_reason`).
    Declined,
    /// The charge went through and was paid back.
    Refunded,
    /// The order was given up before any charge: later charges are refused.
    Voided,
    /// Not decided yet.
    Pending,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        Self::Completed,
        Self::Declined,
        Self::Refunded,
        Self::Voided,
        Self::Pending,
    ];
}

/// A payment for one order. Absent optional fields are left out.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub status: PaymentStatus,
    pub decline_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Charge an order. Idempotent per `order_id`: a repeat returns the first
/// payment. Declined when `amount_cents` is over the service's limit
/// (default 1000000) or `user_id` starts with `decline`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct ChargeRequest {
    pub order_id: Uuid,
    pub amount_cents: Cents,
    /// 1 to 255 characters, no control characters.
    pub user_id: Option<UserId>,
}

impl poem_openapi::types::Example for ChargeRequest {
    fn example() -> Self {
        Self {
            order_id: Uuid::from_u128(0x6a0c1d9e_2b4f_4a59_9d4e_1c2b3a4d5e6f),
            amount_cents: Cents::new(1999).expect("a valid example"),
            user_id: Some(UserId::parse("alice").expect("a valid example")),
        }
    }
}

/// The order whose payment is meant.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct OrderRef {
    pub order_id: Uuid,
}

#[derive(Debug, Object)]
pub struct PaymentList {
    pub payments: Vec<Payment>,
}
