//! The payment HTTP API.

use std::time::Duration;

use poem_openapi::{
    ApiResponse, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sqlx::PgPool;
use uuid::Uuid;
use valerix_runtime::{
    ProblemResponse, Problems,
    contract::{
        domain::UserId,
        health::{Health, HealthResponse},
        payment::{ChargeRequest, OrderRef, Payment, PaymentList},
        problem::{INTERNAL, INVALID_BODY, INVALID_PARAMS, NOT_JSON, TOO_LARGE, UNAVAILABLE},
    },
    db, problem_set,
};

use crate::{
    NAME,
    charges::Charges,
    rules::DeclineRule,
    store::{PaymentRow, Store, StoreError},
};

#[derive(Tags)]
enum Tag {
    /// Charges, voids and refunds, at most one payment per order
    Payments,
    /// Liveness and dependencies
    Health,
}

#[derive(ApiResponse)]
enum ChargeResponse {
    /// The order already had a payment: the first one is returned.
    #[oai(status = 200)]
    Existing(Json<Payment>),
    /// The charge was made now (it may still be DECLINED).
    #[oai(status = 201)]
    Created(Json<Payment>),
}

impl From<PaymentRow> for Payment {
    fn from(r: PaymentRow) -> Self {
        Self {
            id: r.id,
            order_id: r.order_id,
            amount_cents: r.amount_cents,
            status: r.status,
            decline_reason: r.decline_reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<StoreError> for ProblemResponse {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UnknownOrder(_) => Self::unprocessable("unknown-order", err),
            StoreError::NotFound(_) | StoreError::NoPaymentForOrder(_) => {
                Self::not_found("no-payment", err)
            }
            StoreError::AmountMismatch { .. } => Self::conflict("amount-mismatch", err),
            StoreError::GroupLost => Self::internal(err),
            StoreError::Db(e) => e.into(),
        }
    }
}

problem_set!(ChargeErrors {
    400 => INVALID_BODY,
    409 => "The order was already charged another amount (`amount-mismatch`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    422 => "No order has this id (`unknown-order`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(ByOrderErrors { 400 => INVALID_PARAMS, 500 => INTERNAL, 503 => UNAVAILABLE });
problem_set!(GetErrors {
    400 => INVALID_PARAMS,
    404 => "No payment has this id (`no-payment`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(VoidErrors {
    400 => INVALID_BODY,
    413 => TOO_LARGE,
    415 => NOT_JSON,
    422 => "No order has this id (`unknown-order`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(RefundErrors {
    400 => INVALID_BODY,
    404 => "The order has no payment (`no-payment`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});

type Answer<T, E> = Result<T, Problems<E>>;

pub struct PaymentApi {
    store: Store,
    charges: Charges,
    decline: DeclineRule,
}

impl PaymentApi {
    /// `grouped`: concurrent charges are recorded in groups.
    pub fn new(pool: PgPool, decline: DeclineRule, grouped: bool) -> Self {
        let store = Store::new(pool);
        Self {
            charges: Charges::new(store.clone(), grouped),
            store,
            decline,
        }
    }

    pub fn spec_only() -> Self {
        Self::new(db::lazy_pool(), DeclineRule::default(), false)
    }
}

#[OpenApi]
impl PaymentApi {
    /// Health: the service and its database.
    #[oai(path = "/health", method = "get", tag = "Tag::Health")]
    async fn health(&self) -> HealthResponse {
        let db_up = db::ping(self.store.pool(), Duration::from_secs(1)).await;
        Health::new(NAME).database(db_up).into_response()
    }

    /// Charge an order (idempotent per order).
    #[oai(path = "/payments", method = "post", tag = "Tag::Payments")]
    async fn charge(&self, body: Json<ChargeRequest>) -> Answer<ChargeResponse, ChargeErrors> {
        let amount = body.amount_cents.get();
        let reason = self
            .decline
            .reason(amount, body.user_id.as_ref().map(UserId::as_str));
        let (row, created) = self.charges.charge(body.order_id, amount, reason).await?;
        Ok(if created {
            ChargeResponse::Created(Json(row.into()))
        } else {
            ChargeResponse::Existing(Json(row.into()))
        })
    }

    /// The payments of an order (zero or one).
    #[oai(path = "/payments", method = "get", tag = "Tag::Payments")]
    async fn by_order(&self, order_id: Query<Uuid>) -> Answer<Json<PaymentList>, ByOrderErrors> {
        let payments = self
            .store
            .find_by_order(order_id.0)
            .await?
            .into_iter()
            .map(Payment::from)
            .collect();
        Ok(Json(PaymentList { payments }))
    }

    /// One payment.
    #[oai(path = "/payments/:id", method = "get", tag = "Tag::Payments")]
    async fn get(&self, id: Path<Uuid>) -> Answer<Json<Payment>, GetErrors> {
        Ok(Json(self.store.get(id.0).await?.into()))
    }

    /// Give up on an order's payment.
    ///
    /// Fences off any later charge when there is none yet, otherwise returns
    /// the existing payment unchanged.
    #[oai(path = "/payments/void", method = "post", tag = "Tag::Payments")]
    async fn void(&self, body: Json<OrderRef>) -> Answer<Json<Payment>, VoidErrors> {
        Ok(Json(self.store.void(body.order_id).await?.into()))
    }

    /// Refund an order's completed payment (other states are returned as they are).
    #[oai(path = "/payments/refund", method = "post", tag = "Tag::Payments")]
    async fn refund(&self, body: Json<OrderRef>) -> Answer<Json<Payment>, RefundErrors> {
        Ok(Json(self.store.refund(body.order_id).await?.into()))
    }
}
