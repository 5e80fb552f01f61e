//! Every SQL statement of the payment service.

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::{domain::PaymentStatus, rules};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub status: PaymentStatus,
    pub decline_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown order {0}")]
    UnknownOrder(Uuid),
    #[error("no payment {0}")]
    NotFound(Uuid),
    #[error("no payment for order {0}")]
    NoPaymentForOrder(Uuid),
    #[error("the request's group was lost before it was answered")]
    GroupLost,
    #[error("order {order_id} was already charged {existing} cents, not {requested}")]
    AmountMismatch {
        order_id: Uuid,
        existing: i64,
        requested: i64,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, order_id, (amount * 100)::BIGINT AS amount_cents, status, decline_reason, created_at, updated_at";

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

    fn map_fk(err: sqlx::Error, order_id: Uuid) -> StoreError {
        if valerix_runtime::db::is_foreign_key_violation(&err) {
            StoreError::UnknownOrder(order_id)
        } else {
            err.into()
        }
    }

    /// Records the charge's outcome once per order: the unique order_id makes
    /// a repeat return the first row instead of charging twice
    /// ([`rules::repeat`]).
    pub async fn charge(
        &self,
        order_id: Uuid,
        amount_cents: i64,
        decline_reason: Option<&str>,
    ) -> Result<(PaymentRow, bool), StoreError> {
        let status = rules::outcome(decline_reason);
        let inserted: Option<PaymentRow> = sqlx::query_as(&format!(
            "INSERT INTO payments (order_id, amount, status, decline_reason)
             VALUES ($1, $2::NUMERIC / 100, $3, $4) ON CONFLICT (order_id) DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind(order_id)
        .bind(amount_cents)
        .bind(status)
        .bind(decline_reason)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Self::map_fk(e, order_id))?;
        if let Some(row) = inserted {
            return Ok((row, true));
        }
        let first = self.by_order(order_id).await?;
        Ok((rules::repeat(first, amount_cents)?, false))
    }

    /// Records several orders' charges in one statement (one round trip, one
    /// commit), each as [`Self::charge`] would on a first charge. Returns the
    /// payments stored now, by order; an order missing from the answer
    /// already had a payment ([`Self::charge`] returns it, or the amount
    /// mismatch). Fails as a whole when an order is unknown. Orders must be
    /// distinct within the call.
    pub async fn charge_many(
        &self,
        charges: &[(Uuid, i64, Option<&'static str>)],
    ) -> Result<HashMap<Uuid, PaymentRow>, StoreError> {
        let orders: Vec<Uuid> = charges.iter().map(|c| c.0).collect();
        let amounts: Vec<i64> = charges.iter().map(|c| c.1).collect();
        let statuses: Vec<PaymentStatus> = charges.iter().map(|c| rules::outcome(c.2)).collect();
        let reasons: Vec<Option<&str>> = charges.iter().map(|c| c.2).collect();
        let rows: Vec<PaymentRow> = sqlx::query_as(&format!(
            "INSERT INTO payments (order_id, amount, status, decline_reason)
             SELECT c.order_id, c.amount::NUMERIC / 100, c.status, c.reason
             FROM unnest($1::uuid[], $2::int8[], $3::varchar[], $4::varchar[])
                 AS c(order_id, amount, status, reason)
             ON CONFLICT (order_id) DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind(&orders)
        .bind(&amounts)
        .bind(&statuses)
        .bind(&reasons)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.order_id, r)).collect())
    }

    /// Gives up on an order's payment: with no payment yet, writes a VOIDED
    /// fence so a charge still in flight cannot succeed later; otherwise
    /// returns the payment unchanged, so the caller learns the real outcome.
    pub async fn void(&self, order_id: Uuid) -> Result<PaymentRow, StoreError> {
        let inserted: Option<PaymentRow> = sqlx::query_as(&format!(
            "INSERT INTO payments (order_id, amount, status) VALUES ($1, 0, 'VOIDED')
             ON CONFLICT (order_id) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Self::map_fk(e, order_id))?;
        match inserted {
            Some(row) => Ok(row),
            None => self.by_order(order_id).await,
        }
    }

    /// Refunds a completed payment; other states are returned unchanged.
    pub async fn refund(&self, order_id: Uuid) -> Result<PaymentRow, StoreError> {
        let refunded: Option<PaymentRow> = sqlx::query_as(&format!(
            "UPDATE payments SET status = 'REFUNDED', updated_at = NOW()
             WHERE order_id = $1 AND status = 'COMPLETED' RETURNING {COLUMNS}"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?;
        match refunded {
            Some(row) => Ok(row),
            None => self.by_order(order_id).await,
        }
    }

    pub async fn by_order(&self, order_id: Uuid) -> Result<PaymentRow, StoreError> {
        self.find_by_order(order_id)
            .await?
            .ok_or(StoreError::NoPaymentForOrder(order_id))
    }

    pub async fn find_by_order(&self, order_id: Uuid) -> Result<Option<PaymentRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM payments WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get(&self, id: Uuid) -> Result<PaymentRow, StoreError> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(id))
    }
}
