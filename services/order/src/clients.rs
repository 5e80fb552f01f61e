//! The order service's view of inventory and payment: each call's answers
//! turned into the few outcomes the saga decides on.

use reqwest::Method;
use serde::{Deserialize, Serialize, de::IgnoredAny};
use uuid::Uuid;
use valerix_runtime::{
    auth::Token,
    client::{CallError, CallPolicy, Downstream},
    upstream::Upstream,
};

use crate::store::OrderRow;

#[derive(Debug, Deserialize)]
struct PricedReservation {
    unit_price_cents: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PaymentAnswer {
    status: String,
    amount_cents: i64,
}

/// What a reserve told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Stock is held (or already committed) for the order, at this unit
    /// price: the same on every repeat of the reserve.
    Held {
        unit_price_cents: i64,
    },
    OutOfStock,
    /// The reservation was released: someone gave the order up.
    Released,
}

/// What a commit told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// There is no live reservation to commit.
    NotHeld,
}

/// An order's payment as the payment service has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub paid: Paid,
    /// What was charged (0 on a void that fenced off any charge).
    pub amount_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paid {
    Completed,
    Declined,
    Refunded,
    Voided,
}

impl Paid {
    fn parse(s: &str, service: &'static str) -> Result<Self, CallError> {
        match s {
            "COMPLETED" => Ok(Self::Completed),
            "DECLINED" => Ok(Self::Declined),
            "REFUNDED" => Ok(Self::Refunded),
            "VOIDED" => Ok(Self::Voided),
            other => Err(CallError::Decode {
                service,
                reason: format!("unexpected payment status {other}"),
            }),
        }
    }
}

// The request bodies as types: serialised straight from the order row,
// where a `serde_json::Value` first built a map of owned strings per call.

#[derive(Serialize)]
struct ReservationBody<'a> {
    order_id: Uuid,
    product_id: &'a str,
    quantity: i32,
}

fn reservation_body(o: &OrderRow) -> ReservationBody<'_> {
    ReservationBody {
        order_id: o.id,
        product_id: &o.product_id,
        quantity: o.quantity,
    }
}

#[derive(Serialize)]
struct OrderRef {
    order_id: Uuid,
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    order_id: Uuid,
    amount_cents: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn is_conflict(err: &CallError, kinds: &[&str]) -> bool {
    matches!(err, CallError::Status { status: 409 | 404, kind, .. } if kinds.contains(&kind.as_str()))
}

#[derive(Debug, Clone)]
pub struct Inventory(Downstream);

impl Inventory {
    pub const NAME: &'static str = valerix_runtime::topology::Service::Inventory.name();

    /// `token`: the services' shared token, sent on every call.
    pub fn new(base: &Upstream, policy: CallPolicy, token: Option<&Token>) -> Self {
        Self(Downstream::new(Self::NAME, base, policy).with_bearer(token))
    }

    pub fn downstream(&self) -> &Downstream {
        &self.0
    }

    pub async fn reserve(&self, o: &OrderRow) -> Result<Hold, CallError> {
        match self
            .0
            .call::<_, PricedReservation>(
                Method::POST,
                "/inventory/reserve",
                Some(&reservation_body(o)),
            )
            .await
        {
            Ok(answer) => match answer.body.unit_price_cents {
                Some(unit_price_cents) => Ok(Hold::Held { unit_price_cents }),
                None => Err(CallError::Decode {
                    service: Self::NAME,
                    reason: "a held reservation without its unit price".to_owned(),
                }),
            },
            Err(e) if is_conflict(&e, &["out-of-stock"]) => Ok(Hold::OutOfStock),
            Err(e) if is_conflict(&e, &["reservation-released"]) => Ok(Hold::Released),
            Err(e) => Err(e),
        }
    }

    /// Gives the order's stock back (or fences off a late reserve).
    pub async fn release(&self, o: &OrderRow) -> Result<(), CallError> {
        self.0
            .call::<_, IgnoredAny>(
                Method::POST,
                "/inventory/release",
                Some(&reservation_body(o)),
            )
            .await
            .map(|_| ())
    }

    /// Commits the reservations of several orders (at most 256) in one call.
    pub async fn commit_batch(&self, order_ids: &[Uuid]) -> Result<CommitBatch, CallError> {
        Ok(self
            .0
            .call::<_, CommitBatch>(
                Method::POST,
                "/inventory/commits",
                Some(&OrderIds { order_ids }),
            )
            .await?
            .body)
    }

    /// Orders whose reservation has been held (RESERVED) for at least
    /// `older_than_secs`, oldest first, at most `limit`.
    pub async fn held(&self, older_than_secs: u32, limit: u32) -> Result<Vec<Uuid>, CallError> {
        let path =
            format!("/inventory/reservations/held?older_than_secs={older_than_secs}&limit={limit}");
        Ok(self
            .0
            .call::<(), HeldList>(Method::GET, &path, None)
            .await?
            .body
            .reservations
            .into_iter()
            .map(|r| r.order_id)
            .collect())
    }

    pub async fn commit(&self, o: &OrderRow) -> Result<Commit, CallError> {
        match self
            .0
            .call::<_, IgnoredAny>(
                Method::POST,
                "/inventory/commit",
                Some(&OrderRef { order_id: o.id }),
            )
            .await
        {
            Ok(_) => Ok(Commit::Committed),
            Err(e)
                if is_conflict(
                    &e,
                    &[
                        "no-reservation",
                        "reservation-released",
                        "reservation-rejected",
                    ],
                ) =>
            {
                Ok(Commit::NotHeld)
            }
            Err(e) => Err(e),
        }
    }
}

/// What a batch commit told us.
#[derive(Debug, Default, Deserialize)]
pub struct CommitBatch {
    /// Committed now, or before.
    pub committed: Vec<Uuid>,
    /// Released or rejected: there was nothing to commit.
    pub not_held: Vec<NotHeld>,
    /// No reservation at all.
    pub missing: Vec<Uuid>,
}

#[derive(Debug, Deserialize)]
pub struct NotHeld {
    pub order_id: Uuid,
    pub status: String,
}

#[derive(Serialize)]
struct OrderIds<'a> {
    order_ids: &'a [Uuid],
}

#[derive(Debug, Deserialize)]
struct HeldList {
    reservations: Vec<HeldReservation>,
}

#[derive(Debug, Deserialize)]
struct HeldReservation {
    order_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct Payments(Downstream);

impl Payments {
    pub const NAME: &'static str = valerix_runtime::topology::Service::Payment.name();

    /// `token`: the services' shared token, sent on every call.
    pub fn new(base: &Upstream, policy: CallPolicy, token: Option<&Token>) -> Self {
        Self(Downstream::new(Self::NAME, base, policy).with_bearer(token))
    }

    pub fn downstream(&self) -> &Downstream {
        &self.0
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<Payment, CallError> {
        let answer = self
            .0
            .call::<_, PaymentAnswer>(Method::POST, path, Some(body))
            .await?
            .body;
        Ok(Payment {
            paid: Paid::parse(&answer.status, Self::NAME)?,
            amount_cents: answer.amount_cents,
        })
    }

    /// Charges the order `amount_cents`, once per order.
    pub async fn charge(&self, o: &OrderRow, amount_cents: i64) -> Result<Payment, CallError> {
        let body = ChargeBody {
            order_id: o.id,
            amount_cents,
            user_id: o.user_id.as_deref(),
        };
        self.post("/payments", &body).await
    }

    /// Learns the payment's outcome for good: fences off a charge that has
    /// not arrived yet, or returns the payment as it is.
    pub async fn void(&self, o: &OrderRow) -> Result<Payment, CallError> {
        self.post("/payments/void", &OrderRef { order_id: o.id })
            .await
    }

    pub async fn refund(&self, o: &OrderRow) -> Result<Payment, CallError> {
        self.post("/payments/refund", &OrderRef { order_id: o.id })
            .await
    }
}
