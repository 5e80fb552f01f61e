//! Every SQL statement of the inventory service.
//!
//! The statements of one request are here; [`grouped`] holds those that
//! apply a whole group of reserves or commits at once.

pub mod grouped;

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;
use valerix_runtime::contract::domain::{Cents, ProductId, Quantity};

use crate::domain::ReservationStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub stock: i32,
    pub reserved: i32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationRow {
    pub order_id: Uuid,
    pub product_id: String,
    pub quantity: i32,
    pub status: ReservationStatus,
    /// The product's unit price when the order reserved (or was refused):
    /// what the order is charged per unit. None on a release fence.
    pub unit_price_cents: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown product {0}")]
    UnknownProduct(String),
    #[error("no reservation for order {0}")]
    NoReservation(Uuid),
    #[error("order {order_id} already has a reservation of {quantity} x {product_id}")]
    Mismatch {
        order_id: Uuid,
        product_id: String,
        quantity: i32,
    },
    #[error("reservation for order {order_id} is {status}")]
    WrongState {
        order_id: Uuid,
        status: ReservationStatus,
    },
    #[error("stock {stock} would fall below the {reserved} units reserved")]
    StockBelowReserved { stock: i32, reserved: i32 },
    #[error("the request's group was lost before it was answered")]
    GroupLost,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Whether a call created the reservation row or found the first answer.
#[derive(Debug)]
pub struct Reserved {
    pub row: ReservationRow,
    pub created: bool,
}

const RESERVATION_COLUMNS: &str =
    "order_id, product_id, quantity, status, unit_price_cents, created_at, updated_at";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn product(&self, id: &ProductId) -> Result<ProductRow, StoreError> {
        sqlx::query_as("SELECT product_id, name, price_cents, stock, reserved FROM inventory WHERE product_id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::UnknownProduct(id.to_string()))
    }

    pub async fn products(&self, limit: i64) -> Result<Vec<ProductRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT product_id, name, price_cents, stock, reserved FROM inventory ORDER BY product_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Creates or restocks a product. Stock may not drop below what is reserved.
    pub async fn upsert_product(
        &self,
        id: &ProductId,
        name: &str,
        price: Cents,
        stock: i32,
    ) -> Result<(ProductRow, bool), StoreError> {
        let row: Option<(String, String, i64, i32, i32, bool)> = sqlx::query_as(
            "INSERT INTO inventory (product_id, name, price_cents, stock) VALUES ($1, $2, $3, $4)
             ON CONFLICT (product_id) DO UPDATE
                SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock
                WHERE inventory.reserved <= EXCLUDED.stock
             RETURNING product_id, name, price_cents, stock, reserved, (xmax = 0) AS created",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(price.get())
        .bind(stock)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((product_id, name, price_cents, stock, reserved, created)) => Ok((
                ProductRow {
                    product_id,
                    name,
                    price_cents,
                    stock,
                    reserved,
                },
                created,
            )),
            None => {
                let current = self.product(id).await?;
                Err(StoreError::StockBelowReserved {
                    stock,
                    reserved: current.reserved,
                })
            }
        }
    }

    async fn existing(
        tx: &mut Transaction<'_, Postgres>,
        order_id: Uuid,
    ) -> Result<Option<ReservationRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE order_id = $1 FOR UPDATE"
        ))
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await?)
    }

    fn check_same(
        row: &ReservationRow,
        product: &ProductId,
        quantity: Quantity,
    ) -> Result<(), StoreError> {
        if row.product_id != product.as_str() || row.quantity != quantity.get() {
            return Err(StoreError::Mismatch {
                order_id: row.order_id,
                product_id: row.product_id.clone(),
                quantity: row.quantity,
            });
        }
        Ok(())
    }

    /// Reserves stock for an order, once, in one statement: one round trip,
    /// its own transaction, so the product's row stays locked only while the
    /// statement runs, never across a round trip to the caller. The stock
    /// check and the increment are one UPDATE (no interleaving can oversell)
    /// and the answer is recorded with it: RESERVED, or REJECTED when out of
    /// stock (remembered too). A repeat for the same order violates the
    /// order's unique row (a concurrent one waits for the first to commit):
    /// the statement fails as a whole, so the stock it took goes back, and
    /// the first answer is returned.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        product: &ProductId,
        quantity: Quantity,
    ) -> Result<Reserved, StoreError> {
        let inserted = sqlx::query_as(&format!(
            "WITH taken AS (
                 UPDATE inventory SET reserved = reserved + $3
                 WHERE product_id = $2 AND stock - reserved >= $3
                 RETURNING price_cents)
             INSERT INTO reservations (order_id, product_id, quantity, status, unit_price_cents)
             SELECT $1, $2, $3,
                    CASE WHEN EXISTS (SELECT 1 FROM taken) THEN 'RESERVED' ELSE 'REJECTED' END,
                    COALESCE((SELECT price_cents FROM taken), i.price_cents)
             FROM inventory i WHERE i.product_id = $2
             RETURNING {RESERVATION_COLUMNS}"
        ))
        .bind(order_id)
        .bind(product.as_str())
        .bind(quantity.get())
        .fetch_optional(&self.pool)
        .await;
        match inserted {
            Ok(Some(row)) => Ok(Reserved { row, created: true }),
            Ok(None) => Err(StoreError::UnknownProduct(product.to_string())),
            Err(e) if valerix_runtime::db::is_unique_violation(&e) => {
                let row = self.reservation(order_id).await?;
                Self::check_same(&row, product, quantity)?;
                Ok(Reserved {
                    row,
                    created: false,
                })
            }
            Err(e) if valerix_runtime::db::is_foreign_key_violation(&e) => {
                Err(StoreError::UnknownProduct(product.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a reservation's stock back. With no reservation yet, writes a
    /// RELEASED fence so a reserve still in flight cannot take stock later.
    pub async fn release(
        &self,
        order_id: Uuid,
        product: &ProductId,
        quantity: Quantity,
    ) -> Result<ReservationRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let fenced: Option<ReservationRow> = sqlx::query_as(&format!(
            "INSERT INTO reservations (order_id, product_id, quantity, status)
             VALUES ($1, $2, $3, 'RELEASED') ON CONFLICT (order_id) DO NOTHING
             RETURNING {RESERVATION_COLUMNS}"
        ))
        .bind(order_id)
        .bind(product.as_str())
        .bind(quantity.get())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            if valerix_runtime::db::is_foreign_key_violation(&e) {
                StoreError::UnknownProduct(product.to_string())
            } else {
                e.into()
            }
        })?;
        if let Some(row) = fenced {
            tx.commit().await?;
            return Ok(row);
        }
        let row = Self::existing(&mut tx, order_id)
            .await?
            .ok_or(StoreError::NoReservation(order_id))?;
        Self::check_same(&row, product, quantity)?;
        let row = match row.status {
            ReservationStatus::Reserved => {
                sqlx::query("UPDATE inventory SET reserved = reserved - $2 WHERE product_id = $1")
                    .bind(&row.product_id)
                    .bind(row.quantity)
                    .execute(&mut *tx)
                    .await?;
                Self::set_status(&mut tx, order_id, ReservationStatus::Released).await?
            }
            ReservationStatus::Committed => {
                return Err(StoreError::WrongState {
                    order_id,
                    status: row.status,
                });
            }
            _ => row,
        };
        tx.commit().await?;
        Ok(row)
    }

    /// Turns a reservation into a sale: the units leave stock for good. One
    /// statement (one round trip): the reservation row is locked by its
    /// UPDATE, so a concurrent release or commit of the same order waits and
    /// then finds it no longer RESERVED. A repeat returns the committed row.
    pub async fn commit(&self, order_id: Uuid) -> Result<ReservationRow, StoreError> {
        let committed: Option<ReservationRow> = sqlx::query_as(&format!(
            "WITH committed AS (
                 UPDATE reservations SET status = 'COMMITTED', updated_at = NOW()
                 WHERE order_id = $1 AND status = 'RESERVED'
                 RETURNING {RESERVATION_COLUMNS}),
             sold AS (
                 UPDATE inventory i SET stock = i.stock - c.quantity, reserved = i.reserved - c.quantity
                 FROM committed c WHERE i.product_id = c.product_id
                 RETURNING 1)
             SELECT {RESERVATION_COLUMNS} FROM committed"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = committed {
            return Ok(row);
        }
        let row = self.reservation(order_id).await?;
        match row.status {
            ReservationStatus::Committed => Ok(row),
            _ => Err(StoreError::WrongState {
                order_id,
                status: row.status,
            }),
        }
    }

    /// Reservations still RESERVED whose last change is older than
    /// `older_than`, oldest first: normally none but orders in flight. Found
    /// through the partial index of live reservations, not by a scan of
    /// every reservation ever made.
    pub async fn held_longer_than(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<ReservationRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations
             WHERE status = 'RESERVED' AND updated_at < NOW() - make_interval(secs => $1)
             ORDER BY updated_at LIMIT $2"
        ))
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn reservation(&self, order_id: Uuid) -> Result<ReservationRow, StoreError> {
        sqlx::query_as(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NoReservation(order_id))
    }

    async fn set_status(
        tx: &mut Transaction<'_, Postgres>,
        order_id: Uuid,
        status: ReservationStatus,
    ) -> Result<ReservationRow, StoreError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE reservations SET status = $2, updated_at = NOW() WHERE order_id = $1 RETURNING {RESERVATION_COLUMNS}"
        ))
        .bind(order_id)
        .bind(status)
        .fetch_one(&mut **tx)
        .await?)
    }
}
