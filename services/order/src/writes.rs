//! The order service's two writes on every order's path, grouped: the
//! creates that arrive while one is in flight are stored by the next
//! statement together, and so are the settlements ([`valerix_runtime::group`]).
//! Under load that takes most of the order service's commits off each
//! order: a group of N costs one round trip and one WAL flush, not N.
//!
//! Each request still gets exactly the answer [`Store::create`] or
//! [`Store::settle`] gives alone: a group stores only what the single path
//! would have stored on the first try, and every other request (a repeated
//! Idempotency-Key, an unknown product, an order already settled) is then
//! put through the single path, which finds the first answer or the error.
//! An order with an Order-Id is stored under it, by the group's statement
//! as alone; a repeat finds it there.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
};

use uuid::Uuid;
use valerix_runtime::{
    contract::domain::ProductId,
    group::{Apply, Lane},
};

use crate::store::{Created, Idempotency, NewOrder, OrderRow, Settlement, Store, StoreError};

/// Where the saga and the API write orders; clones share the lanes.
#[derive(Clone)]
pub struct Writes {
    store: Store,
    /// None: every write goes to the store alone (`--group-writes false`).
    lanes: Option<(Lane<Creates>, Lane<Settles>)>,
}

impl Writes {
    pub fn new(store: Store, grouped: bool) -> Self {
        let lanes = grouped.then(|| {
            (
                Lane::new(
                    "create",
                    Creates {
                        store: store.clone(),
                        known: Mutex::default(),
                    },
                ),
                Lane::new("settle", Settles(store.clone())),
            )
        });
        Self { store, lanes }
    }

    /// Creates and settlements waiting for the statement in flight.
    pub fn waiting(&self) -> (usize, usize) {
        self.lanes
            .as_ref()
            .map_or((0, 0), |(c, s)| (c.waiting(), s.waiting()))
    }

    /// [`Store::create`], grouped with the other creates.
    pub async fn create(
        &self,
        new: &NewOrder,
        idempotency: &Idempotency,
    ) -> Result<Created, StoreError> {
        let Some((creates, _)) = &self.lanes else {
            return self.store.create(new, idempotency).await;
        };
        let id = match idempotency {
            Idempotency::OrderId(id) => *id,
            _ => Uuid::new_v4(),
        };
        let request = CreateRequest {
            id,
            new: new.clone(),
            idempotency: idempotency.clone(),
        };
        creates
            .submit(request)
            .await
            .unwrap_or(Err(StoreError::GroupLost))
    }

    /// [`Store::settle`], grouped with the other settlements.
    pub async fn settle(&self, settlement: Settlement) -> Result<(OrderRow, bool), StoreError> {
        let Some((_, settles)) = &self.lanes else {
            return self.store.settle(&settlement).await;
        };
        settles
            .submit(settlement)
            .await
            .unwrap_or(Err(StoreError::GroupLost))
    }
}

struct CreateRequest {
    /// The id the order gets when its group stores it: its Order-Id if it
    /// came with one.
    id: Uuid,
    new: NewOrder,
    idempotency: Idempotency,
}

struct Creates {
    store: Store,
    /// Products an order was stored for. Only their orders join a group's
    /// statement: an unknown product fails its foreign key, which would
    /// refuse the whole statement, and the order service does not read
    /// inventory's table to tell beforehand. Products are never deleted,
    /// so the set only grows with the catalog.
    known: Mutex<HashSet<ProductId>>,
}

impl Creates {
    fn is_known(&self, product: &ProductId) -> bool {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(product)
    }

    fn learn(&self, order: &OrderRow) {
        if let Ok(product) = ProductId::parse(&order.product_id) {
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(product);
        }
    }
}

impl Apply for Creates {
    type Request = CreateRequest;
    type Answer = Result<Created, StoreError>;
    type Key = Idempotency;
    type Id = Uuid;
    type Stored = OrderRow;

    fn key(request: &CreateRequest) -> Option<Idempotency> {
        (request.idempotency != Idempotency::None).then(|| request.idempotency.clone())
    }

    fn id(request: &CreateRequest) -> Uuid {
        request.id
    }

    async fn one(&self, request: CreateRequest) -> Self::Answer {
        let created = self
            .store
            .create(&request.new, &request.idempotency)
            .await?;
        self.learn(&created.order);
        Ok(created)
    }

    async fn many(&self, group: &[CreateRequest]) -> Option<HashMap<Uuid, OrderRow>> {
        let orders: Vec<_> = group
            .iter()
            .filter(|r| self.is_known(&r.new.product_id))
            .map(|r| (r.id, &r.new, r.idempotency.key()))
            .collect();
        if orders.is_empty() {
            return None;
        }
        self.store.create_many(&orders).await.ok()
    }

    fn stored(&self, order: OrderRow) -> Self::Answer {
        Ok(Created {
            order,
            replayed: false,
        })
    }
}

struct Settles(Store);

impl Apply for Settles {
    type Request = Settlement;
    type Answer = Result<(OrderRow, bool), StoreError>;
    type Key = Uuid;
    type Id = Uuid;
    type Stored = OrderRow;

    fn key(request: &Settlement) -> Option<Uuid> {
        Some(request.id)
    }

    fn id(request: &Settlement) -> Uuid {
        request.id
    }

    async fn one(&self, settlement: Settlement) -> Self::Answer {
        self.0.settle(&settlement).await
    }

    async fn many(&self, group: &[Settlement]) -> Option<HashMap<Uuid, OrderRow>> {
        self.0.settle_many(group).await.ok()
    }

    fn stored(&self, row: OrderRow) -> Self::Answer {
        Ok((row, true))
    }
}
