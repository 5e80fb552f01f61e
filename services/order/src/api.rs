//! The order HTTP API.

use std::{sync::Arc, time::Duration};

use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
};
use tracing::Instrument;
use uuid::Uuid;
use valerix_runtime::{
    ProblemResponse, Problems,
    contract::{
        domain::{ProductId, Quantity, UserId},
        health::{Health, HealthResponse},
        problem::{INTERNAL, INVALID_BODY, INVALID_PARAMS, NOT_JSON, TOO_LARGE, UNAVAILABLE},
    },
    db, problem_set,
};

use crate::{
    NAME,
    clients::{Inventory, Payments},
    domain::{FailureReason, OrderStatus},
    saga::Saga,
    store::{Idempotency, NewOrder, OrderRow, StoreError},
};

#[derive(Tags)]
enum Tag {
    /// Create orders and follow them until they settle
    Orders,
    /// Liveness and dependencies
    Health,
}

/// Place an order for one product.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct CreateOrder {
    /// Who orders (1 to 255 characters, no control characters); user ids
    /// starting with `decline` are declined by the payment service.
    pub user_id: Option<UserId>,
    pub product_id: ProductId,
    pub quantity: Quantity,
}

impl poem_openapi::types::Example for CreateOrder {
    fn example() -> Self {
        Self {
            user_id: Some(UserId::parse("alice").expect("a valid example")),
            product_id: ProductId::parse("PROD-1").expect("a valid example"),
            quantity: Quantity::new(1).expect("a valid example"),
        }
    }
}

/// An order and where it stands. Absent optional fields are left out.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Option<String>,
    pub product_id: String,
    pub quantity: i32,
    /// Unit price times quantity, in cents: the price inventory held the
    /// units at. Absent until inventory has answered the reservation.
    pub amount_cents: Option<i64>,
    pub status: OrderStatus,
    /// Set when `status` is FAILED.
    pub failure_reason: Option<FailureReason>,
    /// What the status means, for a person.
    pub message: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// One page of orders, newest first.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

#[derive(ApiResponse)]
enum CreateResponse {
    /// The order settled: CONFIRMED, or FAILED with a reason.
    #[oai(status = 201)]
    Settled(Json<Order>),
    /// Accepted and processing: it will settle without further action.
    #[oai(status = 202)]
    Processing(Json<Order>),
}

impl From<OrderRow> for Order {
    fn from(r: OrderRow) -> Self {
        let status = r.status;
        let failure_reason = r.failure_reason;
        let message = match (status, failure_reason) {
            (OrderStatus::Confirmed, _) => "confirmed".to_owned(),
            (OrderStatus::Failed, Some(FailureReason::OutOfStock)) => {
                "failed: out of stock".to_owned()
            }
            (OrderStatus::Failed, Some(FailureReason::PaymentDeclined)) => {
                "failed: payment declined".to_owned()
            }
            (OrderStatus::Failed, _) => {
                "failed: not settled in time; nothing was charged or held".to_owned()
            }
            _ => "processing - will confirm shortly".to_owned(),
        };
        Self {
            id: r.id,
            user_id: r.user_id,
            product_id: r.product_id,
            quantity: r.quantity,
            amount_cents: r.amount_cents,
            status,
            failure_reason,
            message,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<StoreError> for ProblemResponse {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UnknownProduct(_) => Self::unprocessable("unknown-product", err),
            StoreError::NotFound(_) => Self::not_found("no-order", err),
            StoreError::KeyReused(_) => Self::unprocessable("idempotency-key-reused", err),
            StoreError::IdReused(_) => Self::unprocessable("order-id-reused", err),
            StoreError::GroupLost => Self::internal(err),
            StoreError::Db(e) => e.into(),
        }
    }
}

problem_set!(
    /// What `POST /orders` answers when it takes no order.
    CreateErrors {
        400 => INVALID_BODY,
        413 => TOO_LARGE,
        415 => NOT_JSON,
        422 => "The product does not exist (`unknown-product`), the Idempotency-Key \
                was used before with a different body (`idempotency-key-reused`), or an \
                order with this Order-Id exists for another product, quantity or user \
                (`order-id-reused`), or the request has both an Idempotency-Key and an \
                Order-Id (`order-id-with-key`).",
        500 => INTERNAL,
        503 => UNAVAILABLE,
    }
);
problem_set!(ListErrors { 400 => INVALID_PARAMS, 500 => INTERNAL, 503 => UNAVAILABLE });
problem_set!(GetErrors {
    400 => INVALID_PARAMS,
    404 => "No order has this id (`no-order`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});

type Answer<T, E> = Result<T, Problems<E>>;

pub struct OrderApi {
    saga: Arc<Saga>,
}

impl OrderApi {
    pub fn new(saga: Arc<Saga>) -> Self {
        Self { saga }
    }
}

#[OpenApi]
impl OrderApi {
    /// Health: the database and both downstream services.
    #[oai(path = "/health", method = "get", tag = "Tag::Health")]
    async fn health(&self) -> HealthResponse {
        let t = Duration::from_secs(1);
        let (db_up, inv_up, pay_up) = tokio::join!(
            db::ping(self.saga.store.pool(), t),
            self.saga.inventory.downstream().is_healthy(t),
            self.saga.payments.downstream().is_healthy(t),
        );
        let inventory = self.saga.inventory.downstream();
        let payments = self.saga.payments.downstream();
        Health::new(NAME)
            .database(db_up)
            .service(Inventory::NAME, inv_up)
            .service(Payments::NAME, pay_up)
            .info("inventory-service-circuit", inventory.breaker_state())
            .info("payment-service-circuit", payments.breaker_state())
            .into_response()
    }

    /// Place an order.
    ///
    /// It is stored first, then stock is reserved and the amount charged.
    /// 201 when it settled, 202 when it is still processing (a downstream was
    /// slow or down; it settles by itself). A repeated request with the same
    /// `Idempotency-Key` (kept 24 hours) or the same `Order-Id` returns the
    /// same order.
    #[oai(path = "/orders", method = "post", tag = "Tag::Orders")]
    async fn create(
        &self,
        body: Json<CreateOrder>,
        /// Makes a retry safe: a request with a key seen before returns the
        /// first request's order instead of placing another (`422` if its
        /// body differs). A key is remembered for 24 hours after its first
        /// use (the order service's `--idempotency-retention-secs`), then
        /// forgotten: past that, the same key places a new order. Use a new
        /// key per order, e.g. a UUID.
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7e]+$")
        )]
        idempotency_key: Header<Option<String>>,
        /// Makes a retry safe too, without a key: the order is placed under
        /// this id, and a request with an id already taken returns that
        /// order instead (`422` if its product, quantity or user differ).
        /// Kept as long as the order. The API gateway sends one with every
        /// order that comes without a key, so that it can send the order
        /// again when its connection to this service breaks. Use a new
        /// random (version 4) UUID per order; not with an `Idempotency-Key`
        /// (`422`).
        #[oai(name = "Order-Id")]
        order_id: Header<Option<Uuid>>,
        req: &poem::Request,
    ) -> Answer<CreateResponse, CreateErrors> {
        // A key that is not ASCII reads as no key at all, and a retry would
        // then place a second order: refuse it instead.
        if idempotency_key.0.is_none() && req.headers().contains_key("idempotency-key") {
            return Err(ProblemResponse::bad_request(
                "invalid-request",
                "the Idempotency-Key header must be 1 to 255 printable ASCII characters",
            )
            .into());
        }
        let idempotency = match (idempotency_key.0, order_id.0) {
            // Each alone says which first order a retry finds; together
            // they could name two different ones.
            (Some(_), Some(_)) => {
                return Err(ProblemResponse::unprocessable(
                    "order-id-with-key",
                    "send an Idempotency-Key or an Order-Id, not both",
                )
                .into());
            }
            (Some(key), None) => Idempotency::Key(key),
            (None, Some(id)) => Idempotency::OrderId(id),
            (None, None) => Idempotency::None,
        };
        let Json(body) = body;
        let new = NewOrder {
            user_id: body.user_id.map(UserId::into_string),
            product_id: body.product_id,
            quantity: body.quantity,
        };
        // A client that leaves drops this future with its connection: the
        // order is placed on a task of its own, so it runs to its answer
        // (bounded by the calls' timeouts) instead of waiting, stock held,
        // for the reconciler to take it over once its lease expires.
        let saga = self.saga.clone();
        let placing = async move { saga.place(&new, &idempotency).await };
        let order = tokio::spawn(placing.instrument(tracing::Span::current()))
            .await
            .map_err(ProblemResponse::internal)??;
        Ok(if order.status.is_settled() {
            CreateResponse::Settled(Json(order.into()))
        } else {
            CreateResponse::Processing(Json(order.into()))
        })
    }

    /// Orders, newest first.
    #[oai(path = "/orders", method = "get", tag = "Tag::Orders")]
    async fn list(
        &self,
        /// Page size, 1 to 100.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<i64>,
        /// The `next_before` of the previous page.
        before: Query<Option<Uuid>>,
        /// Only orders in this status.
        status: Query<Option<OrderStatus>>,
    ) -> Answer<Json<OrderPage>, ListErrors> {
        let rows = self.saga.store.list(limit.0, before.0, status.0).await?;
        let next_before = if rows.len() as i64 == limit.0 {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Json(OrderPage {
            orders: rows.into_iter().map(Order::from).collect(),
            next_before,
        }))
    }

    /// One order.
    #[oai(path = "/orders/:id", method = "get", tag = "Tag::Orders")]
    async fn get(&self, id: Path<Uuid>) -> Answer<Json<Order>, GetErrors> {
        Ok(Json(self.saga.store.get(id.0).await?.into()))
    }
}

fn default_limit() -> i64 {
    20
}
