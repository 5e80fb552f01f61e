//! Grouped reservations: the hot-row answer to a flash sale.
//!
//! Every reserve takes the product's row lock and holds it across its
//! commit's WAL flush, so on one product orders queue behind each other's
//! flushes however fast the rest is. With grouping, the requests for one product that
//! arrive while a statement on it is in flight wait in that product's lane
//! and are applied together by the next one: one `UPDATE` of the product row
//! for their sum, their reservation rows inserted by the same statement, one
//! flush; each request is answered after that commit with its own outcome.
//! Commits are grouped the same way (one lane for all products: a commit
//! never refuses, so there is nothing to decide per product).
//!
//! There is no timer: an idle lane runs a request at once, alone, with the
//! single-statement path. A group is whatever queued meanwhile, at most
//! [`MAX_GROUP`](valerix_runtime::group::MAX_GROUP) requests. A group the
//! database refuses as a whole (a repeat of an order already stored, stock
//! changed by someone else between the read and the write, a deadlock) is
//! applied again one request at a time, so every request still gets the
//! answer it would have had alone. The lanes are per product, which the
//! generic [`valerix_runtime::group::Lane`] is not; they share its group
//! taking and its metrics.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;
use uuid::Uuid;
use valerix_runtime::{
    domain::{ProductId, Quantity},
    group::{record, take_group},
};

use crate::store::{Grouped, ReservationRow, Reserved, Store, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

struct ReserveJob {
    order_id: Uuid,
    quantity: Quantity,
    reply: Reply<Reserved>,
}

struct CommitJob {
    order_id: Uuid,
    reply: Reply<ReservationRow>,
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

#[derive(Default)]
struct Lanes {
    reserves: HashMap<ProductId, Lane<ReserveJob>>,
    commits: Lane<CommitJob>,
}

/// The grouped entry points of the store; clones share the lanes.
#[derive(Clone)]
pub struct Groups {
    store: Store,
    /// Off: every request goes straight to the store, alone.
    enabled: bool,
    lanes: Arc<Mutex<Lanes>>,
}

impl Groups {
    pub fn new(store: Store, enabled: bool) -> Self {
        Self {
            store,
            enabled,
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
            .reserves
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
        if !self.enabled {
            return self.store.reserve(order_id, product, quantity).await;
        }
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut lanes = self.lock();
            let lane = lanes.reserves.entry(product.clone()).or_default();
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
        if !self.enabled {
            return self.store.commit(order_id).await;
        }
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut lanes = self.lock();
            lanes
                .commits
                .waiting
                .push_back(CommitJob { order_id, reply });
            !std::mem::replace(&mut lanes.commits.busy, true)
        };
        if start {
            tokio::spawn(self.clone().drain_commits());
        }
        answer.await.unwrap_or(Err(StoreError::GroupLost))
    }

    /// The next group of `product`'s lane; None (and the lane gone) when
    /// nothing waits.
    fn next_reserves(&self, product: &ProductId) -> Option<Vec<ReserveJob>> {
        let mut lanes = self.lock();
        let lane = lanes.reserves.get_mut(product)?;
        if lane.waiting.is_empty() {
            lanes.reserves.remove(product);
            return None;
        }
        Some(take_group(&mut lane.waiting, |j| Some(j.order_id)))
    }

    async fn drain_reserves(self, product: ProductId) {
        let mut guard = Abandon {
            groups: self.clone(),
            lane: Some(product.clone()),
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

    fn next_commits(&self) -> Option<Vec<CommitJob>> {
        let mut lanes = self.lock();
        let lane = &mut lanes.commits;
        if lane.waiting.is_empty() {
            lane.busy = false;
            return None;
        }
        Some(take_group(&mut lane.waiting, |j| Some(j.order_id)))
    }

    async fn drain_commits(self) {
        let mut guard = Abandon {
            groups: self.clone(),
            lane: None,
            finished: false,
        };
        while let Some(group) = self.next_commits() {
            record("commit", group.len());
            if group.len() > 1 {
                let ids: Vec<Uuid> = group.iter().map(|j| j.order_id).collect();
                if let Ok(mut rows) = self.store.commit_group(&ids).await {
                    for job in group {
                        // Not committed by the group: not RESERVED (already
                        // committed, released, unknown); the single path
                        // tells which.
                        let answer = match rows.remove(&job.order_id) {
                            Some(row) => Ok(row),
                            None => self.store.commit(job.order_id).await,
                        };
                        let _ = job.reply.send(answer);
                    }
                    continue;
                }
            }
            for job in group {
                let answer = self.store.commit(job.order_id).await;
                let _ = job.reply.send(answer);
            }
        }
        guard.finished = true;
    }
}

/// Frees a lane whose drain task ends without emptying it (a panic, or the
/// runtime shutting down): its waiting requests are answered
/// [`StoreError::GroupLost`] (their replies are dropped) and the next
/// request starts a new drain, instead of the product hanging for good.
struct Abandon {
    groups: Groups,
    /// A product's reserve lane; None: the commit lane.
    lane: Option<ProductId>,
    /// Set when the drain emptied its lane and let it go, as it should.
    finished: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The lane is still this drain's (`busy`): no other drain runs it.
        let mut lanes = self.groups.lock();
        match &self.lane {
            Some(product) => {
                lanes.reserves.remove(product);
            }
            None => lanes.commits = Lane::default(),
        }
    }
}
