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
//! never refuses, so there is nothing to decide per product): the shared
//! [`valerix_runtime::group::Lane`].
//!
//! There is no timer: an idle lane runs a request at once, alone, with the
//! single-statement path. A group is whatever queued meanwhile, at most
//! [`MAX_GROUP`](valerix_runtime::group::MAX_GROUP) requests. A group the
//! database refuses as a whole (a repeat of an order already stored, stock
//! changed by someone else between the read and the write, a deadlock) is
//! applied again one request at a time, so every request still gets the
//! answer it would have had alone. The reserve lanes are per product, which
//! the shared lane is not; they share its group taking and its metrics.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;
use uuid::Uuid;
use valerix_runtime::{
    domain::{ProductId, Quantity},
    group::{self, Apply, answer_each, record, take_group},
};

use crate::store::{Grouped, ReservationRow, Reserved, Store, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

struct ReserveJob {
    order_id: Uuid,
    quantity: Quantity,
    reply: Reply<Reserved>,
}

/// Requests waiting for the statement in flight; `busy` while a drain task
/// runs for the lane.
struct Lane<J> {
    waiting: VecDeque<J>,
    busy: bool,
}

impl<J> Default for Lane<J> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            busy: false,
        }
    }
}

type Lanes = HashMap<ProductId, Lane<ReserveJob>>;

/// The grouped entry points of the store; clones share the lanes.
#[derive(Clone)]
pub struct Groups {
    store: Store,
    /// None: grouping is off, every request goes straight to the store,
    /// alone (reserves too).
    commits: Option<group::Lane<Commits>>,
    lanes: Arc<Mutex<Lanes>>,
}

/// Commits of any products, applied together.
struct Commits(Store);

impl Apply for Commits {
    type Request = Uuid;
    type Answer = Result<ReservationRow, StoreError>;
    type Key = Uuid;

    fn key(order_id: &Uuid) -> Option<Uuid> {
        Some(*order_id)
    }

    async fn apply(&self, group: Vec<Uuid>) -> Vec<Self::Answer> {
        let stored = if group.len() > 1 {
            self.0.commit_group(&group).await.ok()
        } else {
            None
        };
        // Not committed by the group: not RESERVED (already committed,
        // released, unknown); the single path tells which.
        answer_each(group, stored, |id| *id, Ok, |id| self.0.commit(id)).await
    }
}

impl Groups {
    pub fn new(store: Store, enabled: bool) -> Self {
        Self {
            commits: enabled.then(|| group::Lane::new("commit", Commits(store.clone()))),
            store,
            lanes: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        // The lanes hold no invariant a panic could break half-way.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves of `product` waiting for the statement in flight.
    pub fn waiting(&self, product: &ProductId) -> usize {
        self.lock()
            .get(product)
            .map_or(0, |lane| lane.waiting.len())
    }

    /// [`Store::reserve`], grouped with the other reserves of `product`.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        product: &ProductId,
        quantity: Quantity,
    ) -> Result<Reserved, StoreError> {
        if self.commits.is_none() {
            return self.store.reserve(order_id, product, quantity).await;
        }
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut lanes = self.lock();
            let lane = lanes.entry(product.clone()).or_default();
            lane.waiting.push_back(ReserveJob {
                order_id,
                quantity,
                reply,
            });
            !std::mem::replace(&mut lane.busy, true)
        };
        if start {
            // A task of its own: a caller that hangs up must not stop the
            // group its request is in.
            tokio::spawn(self.clone().drain_reserves(product.clone()));
        }
        answer.await.unwrap_or(Err(StoreError::GroupLost))
    }

    /// [`Store::commit`], grouped with the other commits.
    pub async fn commit(&self, order_id: Uuid) -> Result<ReservationRow, StoreError> {
        let Some(commits) = &self.commits else {
            return self.store.commit(order_id).await;
        };
        commits
            .submit(order_id)
            .await
            .unwrap_or(Err(StoreError::GroupLost))
    }

    /// The next group of `product`'s lane; None (and the lane gone) when
    /// nothing waits.
    fn next_reserves(&self, product: &ProductId) -> Option<Vec<ReserveJob>> {
        let mut lanes = self.lock();
        let lane = lanes.get_mut(product)?;
        if lane.waiting.is_empty() {
            lanes.remove(product);
            return None;
        }
        Some(take_group(&mut lane.waiting, |j| Some(j.order_id)))
    }

    async fn drain_reserves(self, product: ProductId) {
        let mut guard = Abandon {
            groups: self.clone(),
            product: product.clone(),
            finished: false,
        };
        while let Some(group) = self.next_reserves(&product) {
            record("reserve", group.len());
            if group.len() == 1 {
                self.reserve_one_by_one(&product, group).await;
                continue;
            }
            let requests: Vec<_> = group.iter().map(|j| (j.order_id, j.quantity)).collect();
            match self.store.reserve_group(&product, &requests).await {
                Ok(Grouped::Applied(mut rows)) => {
                    for job in group {
                        let answer = rows
                            .remove(&job.order_id)
                            .map(|row| Reserved { row, created: true })
                            .ok_or(StoreError::GroupLost);
                        let _ = job.reply.send(answer);
                    }
                }
                // One at a time, in arrival order: each gets the answer it
                // would have had alone.
                Ok(Grouped::Refused) | Err(_) => self.reserve_one_by_one(&product, group).await,
            }
        }
        guard.finished = true;
    }

    /// Each request alone, in arrival order.
    async fn reserve_one_by_one(&self, product: &ProductId, group: Vec<ReserveJob>) {
        for job in group {
            let answer = self
                .store
                .reserve(job.order_id, product, job.quantity)
                .await;
            let _ = job.reply.send(answer);
        }
    }
}

/// Frees a product's lane whose drain task ends without emptying it (a
/// panic, or the runtime shutting down): its waiting requests are answered
/// [`StoreError::GroupLost`] (their replies are dropped) and the next
/// request starts a new drain, instead of the product hanging for good.
struct Abandon {
    groups: Groups,
    product: ProductId,
    /// Set when the drain emptied its lane and let it go, as it should.
    finished: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.finished {
            // The lane is still this drain's (`busy`): no other drain runs it.
            self.groups.lock().remove(&self.product);
        }
    }
}
