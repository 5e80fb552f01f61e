//! The order service's view of inventory and payment: each call's answers
//! turned into the few outcomes the saga decides on. What goes over the
//! wire is the servers' own types (`valerix_runtime::contract`).

use reqwest::Method;
use serde::de::IgnoredAny;
use uuid::Uuid;
use valerix_runtime::{
    auth::Token,
    client::{CallError, CallPolicy, Downstream, upstream::Upstream},
    contract::{
        Wire,
        domain::{Cents, ProductId, Quantity, UserId},
        inventory::{
            CommitBatch, CommitBatchRequest, CommitRequest, Reservation, ReservationList,
            ReservationRequest,
        },
        payment::{ChargeRequest, OrderRef, Payment as PaymentAnswer, PaymentStatus},
    },
};

use crate::store::OrderRow;

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

impl Payment {
    fn from_answer(answer: PaymentAnswer, service: &'static str) -> Result<Self, CallError> {
        let paid = match answer.status {
            PaymentStatus::Completed => Paid::Completed,
            PaymentStatus::Declined => Paid::Declined,
            PaymentStatus::Refunded => Paid::Refunded,
            PaymentStatus::Voided => Paid::Voided,
            PaymentStatus::Pending => {
                return Err(CallError::Decode {
                    service,
                    reason: "a payment still PENDING".to_owned(),
                });
            }
        };
        Ok(Self {
            paid,
            amount_cents: answer.amount_cents,
        })
    }
}

/// The order's reserve (or release) as inventory takes it. The row holds
/// what the API parsed when the order was placed, so this fails only on a
/// row changed by hand.
fn reservation_request(o: &OrderRow) -> Result<Wire<ReservationRequest>, CallError> {
    let unsendable = |reason| CallError::Unsendable {
        service: Inventory::NAME,
        reason,
    };
    Ok(Wire(ReservationRequest {
        order_id: o.id,
        product_id: ProductId::parse(&o.product_id).map_err(unsendable)?,
        quantity: Quantity::new(i64::from(o.quantity)).map_err(unsendable)?,
    }))
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
        let request = reservation_request(o)?;
        match self
            .0
            .call::<_, Wire<Reservation>>(Method::POST, "/inventory/reserve", Some(&request))
            .await
        {
            Ok(answer) => match answer.body.0.unit_price_cents {
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
        let request = reservation_request(o)?;
        self.0
            .call::<_, IgnoredAny>(Method::POST, "/inventory/release", Some(&request))
            .await
            .map(|_| ())
    }

    /// Commits the reservations of several orders (at most
    /// [`MAX_COMMIT_BATCH`](valerix_runtime::contract::inventory::MAX_COMMIT_BATCH))
    /// in one call.
    pub async fn commit_batch(&self, order_ids: &[Uuid]) -> Result<CommitBatch, CallError> {
        let request = Wire(CommitBatchRequest {
            order_ids: order_ids.to_vec(),
        });
        Ok(self
            .0
            .call::<_, Wire<CommitBatch>>(Method::POST, "/inventory/commits", Some(&request))
            .await?
            .body
            .0)
    }

    /// Orders whose reservation has been held (RESERVED) for at least
    /// `older_than_secs`, oldest first, at most `limit`.
    pub async fn held(&self, older_than_secs: u32, limit: u32) -> Result<Vec<Uuid>, CallError> {
        let path =
            format!("/inventory/reservations/held?older_than_secs={older_than_secs}&limit={limit}");
        Ok(self
            .0
            .call::<(), Wire<ReservationList>>(Method::GET, &path, None)
            .await?
            .body
            .0
            .reservations
            .into_iter()
            .map(|r| r.order_id)
            .collect())
    }

    pub async fn commit(&self, o: &OrderRow) -> Result<Commit, CallError> {
        let request = Wire(CommitRequest { order_id: o.id });
        match self
            .0
            .call::<_, IgnoredAny>(Method::POST, "/inventory/commit", Some(&request))
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

    async fn post<B: poem_openapi::types::ToJSON>(
        &self,
        path: &str,
        body: B,
    ) -> Result<Payment, CallError> {
        let answer = self
            .0
            .call::<_, Wire<PaymentAnswer>>(Method::POST, path, Some(&Wire(body)))
            .await?;
        Payment::from_answer(answer.body.0, Self::NAME)
    }

    /// Charges the order `amount_cents`, once per order.
    pub async fn charge(&self, o: &OrderRow, amount_cents: i64) -> Result<Payment, CallError> {
        let unsendable = |reason| CallError::Unsendable {
            service: Self::NAME,
            reason,
        };
        let body = ChargeRequest {
            order_id: o.id,
            amount_cents: Cents::new(amount_cents).map_err(unsendable)?,
            user_id: o
                .user_id
                .as_deref()
                .map(UserId::parse)
                .transpose()
                .map_err(unsendable)?,
        };
        self.post("/payments", body).await
    }

    /// Learns the payment's outcome for good: fences off a charge that has
    /// not arrived yet, or returns the payment as it is.
    pub async fn void(&self, o: &OrderRow) -> Result<Payment, CallError> {
        self.post("/payments/void", OrderRef { order_id: o.id })
            .await
    }

    pub async fn refund(&self, o: &OrderRow) -> Result<Payment, CallError> {
        self.post("/payments/refund", OrderRef { order_id: o.id })
            .await
    }
}
