//! Group writes: requests of one kind that arrive while a statement for
//! them is in flight wait in a lane and are applied together by the next
//! statement: one round trip and one database commit (one WAL flush) for the
//! whole group, each request answered after it with its own outcome.
//!
//! There is no timer. An idle lane runs a request at once, alone; a group is
//! whatever queued meanwhile, at most [`MAX_GROUP`] requests. Under load the
//! groups grow by themselves: while one statement waits for its flush, the
//! next group gathers. Requests with the same [`Apply::key`] never share a
//! group: a repeat waits for the next one, where it finds the first one's
//! row stored, as it would have alone.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::oneshot;

/// The most requests one statement applies: bounds the statement's size and
/// the wait of the last request in a group.
pub const MAX_GROUP: usize = 128;

/// How a kind of request is applied: alone ([`Apply::one`], the single
/// request's path) or as a group ([`Apply::many`], one statement). Every
/// request of a group that statement did not store is then put through
/// `one`, which finds the first answer or the error, so each request gets
/// the answer it would have had alone.
pub trait Apply: Send + Sync + 'static {
    type Request: Send + 'static;
    type Answer: Send + 'static;
    /// What two requests of one group may not share (an order id, an
    /// Idempotency-Key).
    type Key: Hash + Eq;
    /// How the group's statement names what it stored for a request.
    type Id: Hash + Eq + Send;
    /// What the group's statement stored for one request.
    type Stored: Send;

    /// None: the request shares nothing that matters.
    fn key(request: &Self::Request) -> Option<Self::Key>;

    fn id(request: &Self::Request) -> Self::Id;

    /// The request alone.
    fn one(&self, request: Self::Request) -> impl Future<Output = Self::Answer> + Send;

    /// One statement for a group of two or more: what it stored, by id.
    /// None: it stored nothing (the database refused the group as a whole).
    fn many(
        &self,
        group: &[Self::Request],
    ) -> impl Future<Output = Option<HashMap<Self::Id, Self::Stored>>> + Send;

    /// The answer of a request the group's statement stored.
    fn stored(&self, stored: Self::Stored) -> Self::Answer;
}

/// Applies a group: one statement when it is two or more, then each
/// request it did not store alone, in arrival order.
async fn apply<A: Apply>(apply: &A, group: Vec<A::Request>) -> Vec<A::Answer> {
    let mut stored = if group.len() > 1 {
        apply.many(&group).await.unwrap_or_default()
    } else {
        HashMap::new()
    };
    let mut answers = Vec::with_capacity(group.len());
    for request in group {
        answers.push(match stored.remove(&A::id(&request)) {
            Some(row) => apply.stored(row),
            None => apply.one(request).await,
        });
    }
    answers
}

struct Job<A: Apply> {
    request: A::Request,
    reply: oneshot::Sender<A::Answer>,
}

/// Requests waiting for the statement in flight; `busy` while a drain task
/// runs the lane. Present only while the lane has work: an idle lane is
/// dropped, so lanes by product cost nothing for products nobody orders.
struct State<A: Apply> {
    waiting: VecDeque<Job<A>>,
    busy: bool,
}

impl<A: Apply> Default for State<A> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            busy: false,
        }
    }
}

type States<L, A> = HashMap<L, State<A>>;

/// Lanes of grouped requests, one per `L` (a product), each drained apart
/// from the others; clones share them.
pub struct Lanes<L, A: Apply> {
    apply: Arc<A>,
    /// The `operation` label of the group metrics.
    operation: &'static str,
    states: Arc<Mutex<States<L, A>>>,
}

impl<L, A: Apply> Clone for Lanes<L, A> {
    fn clone(&self) -> Self {
        Self {
            apply: self.apply.clone(),
            operation: self.operation,
            states: self.states.clone(),
        }
    }
}

/// Counts a statement and the requests it applied (their ratio is the mean
/// group size).
fn record(operation: &'static str, requests: usize) {
    metrics::counter!("valerix_group_statements_total", "operation" => operation).increment(1);
    metrics::counter!("valerix_grouped_requests_total", "operation" => operation)
        .increment(requests as u64);
}

impl<L, A> Lanes<L, A>
where
    L: Hash + Eq + Clone + Send + Sync + 'static,
    A: Apply,
{
    pub fn new(operation: &'static str, apply: A) -> Self {
        // Present from the start, so a dashboard's rate has a series.
        metrics::counter!("valerix_group_statements_total", "operation" => operation).increment(0);
        metrics::counter!("valerix_grouped_requests_total", "operation" => operation).increment(0);
        Self {
            apply: Arc::new(apply),
            operation,
            states: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, States<L, A>> {
        lock(&self.states)
    }

    /// Requests of `lane` waiting for its statement in flight.
    pub fn waiting(&self, lane: &L) -> usize {
        self.lock().get(lane).map_or(0, |s| s.waiting.len())
    }

    #[cfg(test)]
    fn is_busy(&self, lane: &L) -> bool {
        self.lock().get(lane).is_some_and(|s| s.busy)
    }

    /// Applies `request` in `lane` with whatever else queues there
    /// meanwhile; None when its group was lost before it was answered (the
    /// drain task panicked or the runtime is shutting down).
    pub async fn submit(&self, lane: L, request: A::Request) -> Option<A::Answer> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut states = self.lock();
            let state = states.entry(lane.clone()).or_default();
            state.waiting.push_back(Job { request, reply });
            !std::mem::replace(&mut state.busy, true)
        };
        if start {
            // A task of its own: a caller that hangs up must not stop the
            // group its request is in.
            tokio::spawn(self.clone().drain(lane));
        }
        answer.await.ok()
    }

    /// The lane's next group; None (and the lane gone) when nothing waits.
    fn next(&self, lane: &L) -> Option<Vec<Job<A>>> {
        let mut states = self.lock();
        let state = states.get_mut(lane)?;
        if state.waiting.is_empty() {
            states.remove(lane);
            return None;
        }
        Some(take_group(&mut state.waiting, |job| A::key(&job.request)))
    }

    async fn drain(self, lane: L) {
        let mut guard = Abandon {
            states: self.states.clone(),
            lane: lane.clone(),
            finished: false,
        };
        while let Some(group) = self.next(&lane) {
            record(self.operation, group.len());
            let (requests, replies): (Vec<_>, Vec<_>) =
                group.into_iter().map(|j| (j.request, j.reply)).unzip();
            let answers = apply(&*self.apply, requests).await;
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        guard.finished = true;
    }
}

/// One lane of grouped requests (a kind of write with no finer lanes);
/// clones share it.
pub struct Lane<A: Apply>(Lanes<(), A>);

impl<A: Apply> Clone for Lane<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<A: Apply> Lane<A> {
    pub fn new(operation: &'static str, apply: A) -> Self {
        Self(Lanes::new(operation, apply))
    }

    /// Requests waiting for the statement in flight.
    pub fn waiting(&self) -> usize {
        self.0.waiting(&())
    }

    /// [`Lanes::submit`] in the one lane.
    pub async fn submit(&self, request: A::Request) -> Option<A::Answer> {
        self.0.submit((), request).await
    }
}

fn lock<L, A: Apply>(states: &Mutex<States<L, A>>) -> MutexGuard<'_, States<L, A>> {
    // The lanes hold no invariant a panic could break half-way.
    states.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frees a lane whose drain task ends without emptying it (a panic, or the
/// runtime shutting down): its waiting requests are answered "lost" (their
/// replies are dropped) and the next request starts a new drain, instead of
/// the lane hanging for good.
struct Abandon<L: Hash + Eq, A: Apply> {
    states: Arc<Mutex<States<L, A>>>,
    lane: L,
    /// Set when the drain emptied its lane and let it go, as it should.
    finished: bool,
}

impl<L: Hash + Eq, A: Apply> Drop for Abandon<L, A> {
    fn drop(&mut self) {
        if !self.finished {
            // The lane is still this drain's (`busy`): no other drain runs it.
            lock(&self.states).remove(&self.lane);
        }
    }
}

/// Up to [`MAX_GROUP`] of `waiting`, in arrival order. A request whose key
/// is already in the group stays for the next one.
fn take_group<J, K: Hash + Eq>(waiting: &mut VecDeque<J>, key: impl Fn(&J) -> Option<K>) -> Vec<J> {
    let mut seen = HashSet::new();
    let mut group = Vec::new();
    let mut later = VecDeque::new();
    while group.len() < MAX_GROUP {
        let Some(job) = waiting.pop_front() else {
            break;
        };
        let repeated = key(&job).is_some_and(|k| !seen.insert(k));
        if repeated {
            later.push_back(job);
        } else {
            group.push(job);
        }
    }
    later.append(waiting);
    *waiting = later;
    group
}

#[cfg(test)]
mod tests;
