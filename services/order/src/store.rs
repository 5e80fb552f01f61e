//! Every SQL statement of the order service.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use valerix_runtime::contract::domain::{ProductId, Quantity};

use crate::domain::{FailureReason, OrderStatus};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Option<String>,
    pub product_id: String,
    pub quantity: i32,
    /// Unit price times quantity, once inventory priced the order's
    /// reservation; None before.
    pub amount_cents: Option<i64>,
    pub status: OrderStatus,
    pub failure_reason: Option<FailureReason>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown product {0}")]
    UnknownProduct(String),
    #[error("no order {0}")]
    NotFound(Uuid),
    #[error("Idempotency-Key {0:?} was used before with a different request")]
    KeyReused(String),
    #[error("order {0} exists with a different product, quantity or user")]
    IdReused(Uuid),
    #[error("the request's group was lost before it was answered")]
    GroupLost,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A new order as the client asked for it.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub user_id: Option<String>,
    pub product_id: ProductId,
    pub quantity: Quantity,
}

impl NewOrder {
    /// What makes two requests "the same" for an Idempotency-Key.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.product_id.as_str());
        h.update([0]);
        h.update(self.quantity.get().to_be_bytes());
        h.update([0]);
        h.update(self.user_id.as_deref().unwrap_or("").as_bytes());
        hex::encode(h.finalize())
    }
}

/// Where an order ends: its status, the reason when FAILED, and its
/// amount when inventory priced it (kept as it was when None).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub id: Uuid,
    pub status: OrderStatus,
    pub reason: Option<FailureReason>,
    pub amount_cents: Option<i64>,
}

/// What makes a repeat of `POST /orders` find the first request's order
/// instead of placing another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Idempotency {
    /// Nothing: every request is a new order.
    None,
    /// The client's Idempotency-Key, remembered for the retention period
    /// in a row of its own.
    Key(String),
    /// The id the order is to have, chosen by the caller (`Order-Id`): the
    /// order's own row is the record, so it costs no row of its own. The
    /// API gateway gives every order that comes without a key one, so that
    /// it can send it again after a broken connection.
    OrderId(Uuid),
}

impl Idempotency {
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Key(key) => Some(key),
            _ => None,
        }
    }
}

pub struct Created {
    pub order: OrderRow,
    /// The Idempotency-Key or the Order-Id was seen before: this is the
    /// first request's order.
    pub replayed: bool,
}

const COLUMNS: &str = "id, user_id, product_id, quantity, (amount * 100)::BIGINT AS amount_cents,
    status, failure_reason, attempts, created_at, updated_at";

/// How long the process working on an order owns it before the reconciler
/// may take it over (a crash mid-saga loses at most this much time).
pub const LEASE: Duration = Duration::from_secs(30);

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

    /// Stores the order as PENDING, unpriced (inventory prices it with the
    /// reservation), leased to the caller for `LEASE`. With a key, the key
    /// and the order commit together; with an Order-Id the order is stored
    /// under it. Either way a repeat (even a concurrent one) gets the first
    /// order back.
    pub async fn create(
        &self,
        new: &NewOrder,
        idempotency: &Idempotency,
    ) -> Result<Created, StoreError> {
        let (id, key) = match idempotency {
            // Without a key the insert is the whole transaction: one round trip.
            Idempotency::None => {
                return Ok(Created {
                    order: Self::insert(&self.pool, new).await?,
                    replayed: false,
                });
            }
            // With one the key is claimed and the order stored in one
            // statement too, as for a group: a transaction around two
            // inserts was four round trips.
            Idempotency::Key(key) => (Uuid::new_v4(), Some(key.as_str())),
            Idempotency::OrderId(id) => (*id, None),
        };
        let mut stored = self
            .create_many(&[(id, new, key)])
            .await
            .map_err(|e| match e {
                StoreError::Db(e) if valerix_runtime::db::is_foreign_key_violation(&e) => {
                    StoreError::UnknownProduct(new.product_id.to_string())
                }
                e => e,
            })?;
        if let Some(order) = stored.remove(&id) {
            return Ok(Created {
                order,
                replayed: false,
            });
        }
        match key {
            Some(key) => self.replay_key(new, key).await,
            None => self.replay_id(new, id).await,
        }
    }

    /// The order an Idempotency-Key placed before.
    async fn replay_key(&self, new: &NewOrder, key: &str) -> Result<Created, StoreError> {
        let first: Option<(String, Uuid)> =
            sqlx::query_as("SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        let Some((hash, order_id)) = first else {
            // Purged in between: the key had expired, so this request is
            // new (it cannot be purged again so soon).
            let again = Idempotency::Key(key.to_owned());
            return Box::pin(self.create(new, &again)).await;
        };
        if hash != new.fingerprint() {
            return Err(StoreError::KeyReused(key.to_owned()));
        }
        Ok(Created {
            order: self.get(order_id).await?,
            replayed: true,
        })
    }

    /// The order stored under `id` before, if it is the one asked for.
    async fn replay_id(&self, new: &NewOrder, id: Uuid) -> Result<Created, StoreError> {
        let order = self.get(id).await?;
        let same = order.product_id == new.product_id.as_str()
            && order.quantity == new.quantity.get()
            && order.user_id == new.user_id;
        if !same {
            return Err(StoreError::IdReused(id));
        }
        Ok(Created {
            order,
            replayed: true,
        })
    }

    /// Stores several new orders in one statement (one round trip, one
    /// commit), each as [`Self::create`] would: PENDING, leased for `LEASE`,
    /// with its Idempotency-Key if it has one. Returns the orders stored, by
    /// the id given here. An order missing from the answer was not stored:
    /// its key was used before ([`Self::create`] returns the first order).
    /// An unknown product fails the whole statement (its foreign key): then
    /// nothing is stored. Keys must be distinct within the call.
    pub async fn create_many(
        &self,
        orders: &[(Uuid, &NewOrder, Option<&str>)],
    ) -> Result<HashMap<Uuid, OrderRow>, StoreError> {
        let ids: Vec<Uuid> = orders.iter().map(|o| o.0).collect();
        let users: Vec<Option<&str>> = orders.iter().map(|o| o.1.user_id.as_deref()).collect();
        let products: Vec<&str> = orders.iter().map(|o| o.1.product_id.as_str()).collect();
        let quantities: Vec<i32> = orders.iter().map(|o| o.1.quantity.get()).collect();
        let keys: Vec<Option<&str>> = orders.iter().map(|o| o.2).collect();
        let fingerprints: Vec<Option<String>> = orders
            .iter()
            .map(|o| o.2.map(|_| o.1.fingerprint()))
            .collect();
        // The keys are claimed first; an order with a key is stored only if
        // its key was claimed by this statement. The key's reference to its
        // order is checked at the end of the statement, when both exist.
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "WITH new AS (
                 SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::int4[], $5::varchar[], $6::text[])
                     AS n(id, user_id, product_id, quantity, key, request_hash)),
             claimed AS (
                 INSERT INTO idempotency_keys (key, request_hash, order_id)
                 SELECT key, request_hash, id FROM new WHERE key IS NOT NULL
                 ON CONFLICT (key) DO NOTHING
                 RETURNING order_id)
             INSERT INTO orders (id, user_id, product_id, quantity, next_attempt_at)
             SELECT n.id, n.user_id, n.product_id, n.quantity, NOW() + make_interval(secs => $7)
             FROM new n
             WHERE n.key IS NULL OR n.id IN (SELECT order_id FROM claimed)
             ON CONFLICT (id) DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind(&ids)
        .bind(&users)
        .bind(&products)
        .bind(&quantities)
        .bind(&keys)
        .bind(&fingerprints)
        .bind(LEASE.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }

    /// The order, PENDING and leased for `LEASE`. A product inventory does
    /// not know fails the order's foreign key: no order is stored.
    async fn insert<'e>(
        db: impl sqlx::PgExecutor<'e>,
        new: &NewOrder,
    ) -> Result<OrderRow, StoreError> {
        sqlx::query_as(&format!(
            "INSERT INTO orders (user_id, product_id, quantity, next_attempt_at)
             VALUES ($1, $2, $3, NOW() + make_interval(secs => $4))
             RETURNING {COLUMNS}"
        ))
        .bind(new.user_id.as_deref())
        .bind(new.product_id.as_str())
        .bind(new.quantity.get())
        .bind(LEASE.as_secs_f64())
        .fetch_one(db)
        .await
        .map_err(|e| {
            if valerix_runtime::db::is_foreign_key_violation(&e) {
                StoreError::UnknownProduct(new.product_id.to_string())
            } else {
                e.into()
            }
        })
    }

    pub async fn get(&self, id: Uuid) -> Result<OrderRow, StoreError> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(id))
    }

    /// Newest first; `before` is the last id of the previous page.
    pub async fn list(
        &self,
        limit: i64,
        before: Option<Uuid>,
        status: Option<OrderStatus>,
    ) -> Result<Vec<OrderRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders
             WHERE ($2::UUID IS NULL OR (created_at, id) < (SELECT created_at, id FROM orders WHERE id = $2))
               AND ($3::TEXT IS NULL OR status = $3)
             ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .bind(before)
        .bind(status)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Settles an order, once: a settled order never changes again. The flag
    /// is true when this call did it (false: it was settled already).
    pub async fn settle(&self, s: &Settlement) -> Result<(OrderRow, bool), StoreError> {
        let row: Option<OrderRow> = sqlx::query_as(&format!(
            "UPDATE orders SET status = $2, failure_reason = $3, updated_at = NOW(),
                    amount = COALESCE($4 / 100.0, amount)
             WHERE id = $1 AND status IN {unsettled} RETURNING {COLUMNS}",
            unsettled = OrderStatus::unsettled_sql()
        ))
        .bind(s.id)
        .bind(s.status)
        .bind(s.reason)
        .bind(s.amount_cents)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok((row, true)),
            None => Ok((self.get(s.id).await?, false)),
        }
    }

    /// Settles several orders in one statement (one round trip, one commit),
    /// each as [`Self::settle`] would: only an unsettled order changes.
    /// Returns the rows settled now; an order missing from the answer was
    /// settled already, or is unknown. Ids must be distinct within the call.
    pub async fn settle_many(
        &self,
        settlements: &[Settlement],
    ) -> Result<HashMap<Uuid, OrderRow>, StoreError> {
        let ids: Vec<Uuid> = settlements.iter().map(|s| s.id).collect();
        let statuses: Vec<&str> = settlements.iter().map(|s| s.status.as_str()).collect();
        let reasons: Vec<Option<&str>> = settlements
            .iter()
            .map(|s| s.reason.map(FailureReason::as_str))
            .collect();
        let amounts: Vec<Option<i64>> = settlements.iter().map(|s| s.amount_cents).collect();
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "UPDATE orders SET status = s.to_status, failure_reason = s.reason, updated_at = NOW(),
                    amount = COALESCE(s.amount_cents / 100.0, amount)
             FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::int8[])
                  AS s(order_id, to_status, reason, amount_cents)
             WHERE id = s.order_id AND status IN {unsettled}
             RETURNING {COLUMNS}",
            unsettled = OrderStatus::unsettled_sql(),
        ))
        .bind(&ids)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&amounts)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }

    /// Leaves an order unsettled in `status`, to be retried after `backoff`,
    /// recording its amount once inventory priced it.
    pub async fn defer(
        &self,
        id: Uuid,
        status: OrderStatus,
        amount_cents: Option<i64>,
        backoff: Duration,
    ) -> Result<OrderRow, StoreError> {
        let row: Option<OrderRow> = sqlx::query_as(&format!(
            "UPDATE orders SET status = $2, updated_at = NOW(),
                    next_attempt_at = NOW() + make_interval(secs => $3),
                    amount = COALESCE($4 / 100.0, amount)
             WHERE id = $1 AND status IN {unsettled} RETURNING {COLUMNS}",
            unsettled = OrderStatus::unsettled_sql()
        ))
        .bind(id)
        .bind(status)
        .bind(backoff.as_secs_f64())
        .bind(amount_cents)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(row),
            None => self.get(id).await,
        }
    }

    /// Takes up to `limit` unsettled orders that are due, leasing each for
    /// `LEASE`. SKIP LOCKED lets several replicas claim side by side without
    /// ever taking the same order.
    pub async fn claim_due(&self, limit: i64) -> Result<Vec<OrderRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE orders SET attempts = attempts + 1,
                    next_attempt_at = NOW() + make_interval(secs => $2)
             WHERE id IN (
                 SELECT id FROM orders
                 WHERE status IN {unsettled}
                   AND next_attempt_at <= NOW()
                 ORDER BY next_attempt_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}",
            unsettled = OrderStatus::unsettled_sql()
        ))
        .bind(limit)
        .bind(LEASE.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets up to `limit` Idempotency-Keys older than `retention`, oldest
    /// first (through their `created_at` index); how many it deleted. SKIP
    /// LOCKED: replicas purging at the same moment take different keys.
    pub async fn purge_idempotency_keys(
        &self,
        retention: Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN (
                 SELECT key FROM idempotency_keys
                 WHERE created_at < NOW() - make_interval(secs => $1)
                 ORDER BY created_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
        )
        .bind(retention.as_secs_f64())
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Which of `ids` are CONFIRMED.
    pub async fn confirmed_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM orders WHERE id = ANY($1) AND status = 'CONFIRMED'")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Unsettled orders per status, for metrics and the dashboard.
    pub async fn unsettled_counts(&self) -> Result<Vec<(OrderStatus, i64)>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT status, COUNT(*) FROM orders WHERE status IN {} GROUP BY status",
            OrderStatus::unsettled_sql()
        ))
        .fetch_all(&self.pool)
        .await?)
    }
}
