//! Charges, grouped: the charges that arrive while one is in flight are
//! recorded by the next statement together ([`valerix_runtime::group`]):
//! one round trip and one WAL flush for the group, not one per order.
//!
//! Each request still gets exactly the answer [`Store::charge`] gives
//! alone: a group stores only first charges, and every other request (a
//! repeat, a charge after a void) is then put through the single path,
//! which returns the payment stored before or the amount mismatch. A group
//! the database refuses as a whole (an unknown order) is charged one order
//! at a time.

use std::collections::HashMap;

use uuid::Uuid;
use valerix_runtime::group::{Apply, Lane};

use crate::store::{PaymentRow, Store, StoreError};

/// Where the API charges; clones share the lane.
#[derive(Clone)]
pub struct Charges {
    store: Store,
    /// None: every charge goes to the store alone (`--group-writes false`).
    lane: Option<Lane<Grouped>>,
}

impl Charges {
    pub fn new(store: Store, grouped: bool) -> Self {
        let lane = grouped.then(|| Lane::new("charge", Grouped(store.clone())));
        Self { store, lane }
    }

    /// Charges waiting for the statement in flight.
    pub fn waiting(&self) -> usize {
        self.lane.as_ref().map_or(0, Lane::waiting)
    }

    /// [`Store::charge`], grouped with the other charges.
    pub async fn charge(
        &self,
        order_id: Uuid,
        amount_cents: i64,
        decline_reason: Option<&'static str>,
    ) -> Result<(PaymentRow, bool), StoreError> {
        let Some(lane) = &self.lane else {
            return self
                .store
                .charge(order_id, amount_cents, decline_reason)
                .await;
        };
        lane.submit((order_id, amount_cents, decline_reason))
            .await
            .unwrap_or(Err(StoreError::GroupLost))
    }
}

struct Grouped(Store);

impl Apply for Grouped {
    type Request = (Uuid, i64, Option<&'static str>);
    type Answer = Result<(PaymentRow, bool), StoreError>;
    type Key = Uuid;
    type Id = Uuid;
    type Stored = PaymentRow;

    fn key(request: &Self::Request) -> Option<Uuid> {
        Some(request.0)
    }

    fn id(request: &Self::Request) -> Uuid {
        request.0
    }

    async fn one(&self, (order, amount, reason): Self::Request) -> Self::Answer {
        self.0.charge(order, amount, reason).await
    }

    async fn many(&self, group: &[Self::Request]) -> Option<HashMap<Uuid, PaymentRow>> {
        self.0.charge_many(group).await.ok()
    }

    fn stored(&self, row: PaymentRow) -> Self::Answer {
        Ok((row, true))
    }
}
