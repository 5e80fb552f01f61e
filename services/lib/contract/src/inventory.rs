//! Inventory's reservations as the order service calls them: reserve,
//! release, commit one, commit a batch, list what is still held.

use poem_openapi::{Enum, Object};
use uuid::Uuid;

use super::domain::{ProductId, Quantity};

/// The most orders one `POST /inventory/commits` takes.
pub const MAX_COMMIT_BATCH: usize = 256;

// As stored in `reservations.status`: a value the database holds that is
// not one of these fails the read (sqlx's decode), it is never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(
    feature = "db",
    sqlx(type_name = "varchar", rename_all = "SCREAMING_SNAKE_CASE")
)]
pub enum ReservationStatus {
    /// Stock is held for the order.
    Reserved,
    /// The order was confirmed: the units left stock.
    Committed,
    /// Given back (or fenced off before any reserve arrived).
    Released,
    /// There was not enough stock.
    Rejected,
}

impl ReservationStatus {
    pub const ALL: [ReservationStatus; 4] = [
        Self::Reserved,
        Self::Committed,
        Self::Released,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Committed => "COMMITTED",
            Self::Released => "RELEASED",
            Self::Rejected => "REJECTED",
        }
    }
}

impl std::fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reservation of stock for one order.
#[derive(Debug, Object)]
pub struct Reservation {
    pub order_id: Uuid,
    pub product_id: String,
    pub quantity: i32,
    pub status: ReservationStatus,
    /// The product's unit price in cents when the order reserved: what the
    /// order is charged per unit (the same on every repeat of the reserve).
    /// Absent on a release that came before any reserve.
    #[oai(skip_serializing_if_is_none)]
    pub unit_price_cents: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Reserve or release stock for an order. Repeating a call for the same
/// order is a no-op that returns the first answer.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct ReservationRequest {
    pub order_id: Uuid,
    pub product_id: ProductId,
    pub quantity: Quantity,
}

impl poem_openapi::types::Example for ReservationRequest {
    fn example() -> Self {
        Self {
            order_id: Uuid::from_u128(0x6a0c1d9e_2b4f_4a59_9d4e_1c2b3a4d5e6f),
            product_id: ProductId::parse("PROD-1").expect("a valid example"),
            quantity: Quantity::new(1).expect("a valid example"),
        }
    }
}

/// The order whose reservation is committed.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CommitRequest {
    pub order_id: Uuid,
}

/// Orders whose reservations are committed together.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CommitBatchRequest {
    /// 1 to 256 ([`MAX_COMMIT_BATCH`]) orders; an order named twice is
    /// committed once.
    // The attribute takes only a literal: a test holds it to the constant.
    #[oai(validator(min_items = 1, max_items = 256))]
    pub order_ids: Vec<Uuid>,
}

/// An order whose reservation was not there to commit.
#[derive(Debug, Object)]
pub struct NotHeld {
    pub order_id: Uuid,
    /// What the reservation is instead: RELEASED or REJECTED.
    pub status: ReservationStatus,
}

/// What became of each order of a batch commit.
#[derive(Debug, Object)]
pub struct CommitBatch {
    /// Committed now, or before.
    pub committed: Vec<Uuid>,
    /// Reservations that were released or rejected: nothing to commit.
    pub not_held: Vec<NotHeld>,
    /// Orders with no reservation at all.
    pub missing: Vec<Uuid>,
}

#[derive(Debug, Object)]
pub struct ReservationList {
    pub reservations: Vec<Reservation>,
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ParseFromJSON;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_batch_commit_takes_at_most_max_commit_batch_orders() {
        let ids = |n: usize| json!({ "order_ids": vec![Uuid::nil(); n] });
        assert!(CommitBatchRequest::parse_from_json(Some(ids(MAX_COMMIT_BATCH))).is_ok());
        assert!(CommitBatchRequest::parse_from_json(Some(ids(MAX_COMMIT_BATCH + 1))).is_err());
    }
}
