//! Grouped reservations: the hot-row answer to a flash sale.
//!
//! Every reserve takes the product's row lock and holds it across its
//! commit's WAL flush, so on one product orders queue behind each other's
//! flushes however fast the rest is. With grouping, the requests for one product that
//! arrive while a statement on it is in flight wait in that product's lane
//! and are applied together by the next one: one `UPDATE` of the product row
//! for their sum, their reservation rows inserted by the same statement, one
//! flush; each request is answered after that commit with its own outcome.
//! Commits are grouped the same way, in one lane for all products (a commit
//! never refuses, so there is nothing to decide per product). Both are the
//! runtime's lanes ([`valerix_runtime::group`]): a lane per product for the
//! reserves, one lane for the commits.
//!
//! There is no timer: an idle lane runs a request at once, alone, with the
//! single-statement path. A group is whatever queued meanwhile, at most
//! [`MAX_GROUP`](valerix_runtime::group::MAX_GROUP) requests. A group the
//! database refuses as a whole (a repeat of an order already stored, stock
//! changed by someone else between the read and the write, a deadlock) is
//! applied again one request at a time, so every request still gets the
//! answer it would have had alone.

use std::collections::HashMap;

use uuid::Uuid;
use valerix_runtime::{
    contract::domain::{ProductId, Quantity},
    group::{Apply, Lane, Lanes},
};

use crate::store::{ReservationRow, Reserved, Store, StoreError, grouped::Grouped};

/// The grouped entry points of the store; clones share the lanes.
#[derive(Clone)]
pub struct Groups {
    store: Store,
    /// None: grouping is off, every request goes straight to the store,
    /// alone.
    lanes: Option<(Lanes<ProductId, Reserves>, Lane<Commits>)>,
}

struct ReserveRequest {
    order_id: Uuid,
    product: ProductId,
    quantity: Quantity,
}

/// Reserves of one product (its lane), applied together.
struct Reserves(Store);

impl Apply for Reserves {
    type Request = ReserveRequest;
    type Answer = Result<Reserved, StoreError>;
    type Key = Uuid;
    type Id = Uuid;
    type Stored = ReservationRow;

    fn key(request: &ReserveRequest) -> Option<Uuid> {
        Some(request.order_id)
    }

    fn id(request: &ReserveRequest) -> Uuid {
        request.order_id
    }

    async fn one(&self, r: ReserveRequest) -> Self::Answer {
        self.0.reserve(r.order_id, &r.product, r.quantity).await
    }

    async fn many(&self, group: &[ReserveRequest]) -> Option<HashMap<Uuid, ReservationRow>> {
        // A lane is one product's: every request of the group names it.
        let product = &group.first()?.product;
        let requests: Vec<_> = group.iter().map(|r| (r.order_id, r.quantity)).collect();
        match self.0.reserve_group(product, &requests).await {
            Ok(Grouped::Applied(rows)) => Some(rows),
            Ok(Grouped::Refused) | Err(_) => None,
        }
    }

    fn stored(&self, row: ReservationRow) -> Self::Answer {
        Ok(Reserved { row, created: true })
    }
}

/// Commits of any products, applied together.
struct Commits(Store);

impl Apply for Commits {
    type Request = Uuid;
    type Answer = Result<ReservationRow, StoreError>;
    type Key = Uuid;
    type Id = Uuid;
    type Stored = ReservationRow;

    fn key(order_id: &Uuid) -> Option<Uuid> {
        Some(*order_id)
    }

    fn id(order_id: &Uuid) -> Uuid {
        *order_id
    }

    /// Not committed by the group: not RESERVED (already committed,
    /// released, unknown); alone, the store tells which.
    async fn one(&self, order_id: Uuid) -> Self::Answer {
        self.0.commit(order_id).await
    }

    async fn many(&self, group: &[Uuid]) -> Option<HashMap<Uuid, ReservationRow>> {
        self.0.commit_group(group).await.ok()
    }

    fn stored(&self, row: ReservationRow) -> Self::Answer {
        Ok(row)
    }
}

impl Groups {
    pub fn new(store: Store, enabled: bool) -> Self {
        Self {
            lanes: enabled.then(|| {
                (
                    Lanes::new("reserve", Reserves(store.clone())),
                    Lane::new("commit", Commits(store.clone())),
                )
            }),
            store,
        }
    }

    /// Reserves of `product` waiting for the statement in flight.
    pub fn waiting(&self, product: &ProductId) -> usize {
        self.lanes
            .as_ref()
            .map_or(0, |(reserves, _)| reserves.waiting(product))
    }

    /// [`Store::reserve`], grouped with the other reserves of `product`.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        product: &ProductId,
        quantity: Quantity,
    ) -> Result<Reserved, StoreError> {
        let Some((reserves, _)) = &self.lanes else {
            return self.store.reserve(order_id, product, quantity).await;
        };
        let request = ReserveRequest {
            order_id,
            product: product.clone(),
            quantity,
        };
        reserves
            .submit(product.clone(), request)
            .await
            .unwrap_or(Err(StoreError::GroupLost))
    }

    /// [`Store::commit`], grouped with the other commits.
    pub async fn commit(&self, order_id: Uuid) -> Result<ReservationRow, StoreError> {
        let Some((_, commits)) = &self.lanes else {
            return self.store.commit(order_id).await;
        };
        commits
            .submit(order_id)
            .await
            .unwrap_or(Err(StoreError::GroupLost))
    }
}
