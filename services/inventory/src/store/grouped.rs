//! The grouped statements: reserves of one product and commits of many
//! orders, each applied by one statement for the whole group, and the
//! allocation a group of reserves applies.

use std::collections::HashMap;

use uuid::Uuid;
use valerix_runtime::contract::domain::{ProductId, Quantity};

use super::{RESERVATION_COLUMNS, ReservationRow, Store, StoreError};
use crate::domain::ReservationStatus;

/// What became of a group of reserves.
#[derive(Debug)]
pub enum Grouped {
    /// Applied: the row stored for each order.
    Applied(HashMap<Uuid, ReservationRow>),
    /// Not applied at all: the product's stock changed between the read and
    /// the write, or the product is unknown.
    Refused,
}

impl Store {
    /// Reserves for several orders of one product in one statement (one
    /// round trip, one commit): the product's row is updated once, for the
    /// sum, and every order's row is inserted with it. `requests` are served
    /// in their order: each takes its quantity while it fits what is left,
    /// else is REJECTED (later, smaller ones may still fit: no refusal while
    /// stock remains). The allocation is computed from the stock read just
    /// before; the write applies only if the stock is still what was read
    /// (checked under the row lock, so nothing can oversell), else nothing is
    /// written ([`Grouped::Refused`]). An order that already has a row fails
    /// the statement as a whole (its unique row): nothing is written then
    /// either, and the error is returned. Orders must be distinct.
    pub async fn reserve_group(
        &self,
        product: &ProductId,
        requests: &[(Uuid, Quantity)],
    ) -> Result<Grouped, StoreError> {
        let available: Option<i32> =
            sqlx::query_scalar("SELECT stock - reserved FROM inventory WHERE product_id = $1")
                .bind(product.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some(available) = available else {
            return Ok(Grouped::Refused);
        };
        let (statuses, taken) = allocate(available, requests.iter().map(|r| r.1.get()));
        let ids: Vec<Uuid> = requests.iter().map(|r| r.0).collect();
        let quantities: Vec<i32> = requests.iter().map(|r| r.1.get()).collect();
        let rows: Vec<ReservationRow> = sqlx::query_as(&format!(
            "WITH taken AS (
                 UPDATE inventory SET reserved = reserved + $3
                 WHERE product_id = $1 AND stock - reserved = $2
                 RETURNING price_cents)
             INSERT INTO reservations (order_id, product_id, quantity, status, unit_price_cents)
             SELECT r.order_id, $1, r.quantity, r.status, t.price_cents
             FROM unnest($4::uuid[], $5::int4[], $6::varchar[]) AS r(order_id, quantity, status)
             CROSS JOIN taken t
             RETURNING {RESERVATION_COLUMNS}"
        ))
        .bind(product.as_str())
        .bind(available)
        .bind(taken)
        .bind(&ids)
        .bind(&quantities)
        .bind(&statuses)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(Grouped::Refused);
        }
        Ok(Grouped::Applied(
            rows.into_iter().map(|r| (r.order_id, r)).collect(),
        ))
    }

    /// Commits several orders' reservations in one statement (one commit):
    /// each product's row is updated once, for the sum of its orders. Returns
    /// the rows committed now; an order missing from the answer was not
    /// RESERVED ([`Self::commit`] tells what it was).
    pub async fn commit_group(
        &self,
        order_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, ReservationRow>, StoreError> {
        let rows: Vec<ReservationRow> = sqlx::query_as(&format!(
            "WITH committed AS (
                 UPDATE reservations SET status = 'COMMITTED', updated_at = NOW()
                 WHERE order_id = ANY($1) AND status = 'RESERVED'
                 RETURNING {RESERVATION_COLUMNS}),
             sold AS (
                 UPDATE inventory i SET stock = i.stock - c.quantity, reserved = i.reserved - c.quantity
                 FROM (SELECT product_id, SUM(quantity)::int4 AS quantity FROM committed GROUP BY product_id) c
                 WHERE i.product_id = c.product_id
                 RETURNING 1)
             SELECT {RESERVATION_COLUMNS} FROM committed"
        ))
        .bind(order_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.order_id, r)).collect())
    }
}

/// Serves `quantities` in order from `available`: each takes its quantity
/// while it fits what is left, else is rejected. Returns each one's status
/// and the units taken in all.
pub fn allocate(
    available: i32,
    quantities: impl IntoIterator<Item = i32>,
) -> (Vec<ReservationStatus>, i32) {
    let mut left = available;
    let statuses = quantities
        .into_iter()
        .map(|q| {
            if q <= left {
                left -= q;
                ReservationStatus::Reserved
            } else {
                ReservationStatus::Rejected
            }
        })
        .collect();
    (statuses, available.max(0) - left.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationStatus::{Rejected as No, Reserved as Yes};

    #[test]
    fn allocation_serves_in_order_and_refuses_only_what_does_not_fit() {
        assert_eq!(allocate(5, [3, 4, 2, 1]), (vec![Yes, No, Yes, No], 5));
        assert_eq!(allocate(0, [1, 2]), (vec![No, No], 0));
        assert_eq!(allocate(10, [1, 2, 3]), (vec![Yes, Yes, Yes], 6));
        // Stock below the reserved units (restocked down): nothing fits.
        assert_eq!(allocate(-3, [1]), (vec![No], 0));
    }
}
