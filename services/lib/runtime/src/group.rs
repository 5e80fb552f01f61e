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

/// How a kind of request is applied, alone or many at once.
pub trait Apply: Send + Sync + 'static {
    type Request: Send + 'static;
    type Answer: Send + 'static;
    type Key: Hash + Eq;

    /// What two requests of one group may not share (an order id, an
    /// Idempotency-Key); None: nothing.
    fn key(request: &Self::Request) -> Option<Self::Key>;

    /// Applies `group` and answers each request, in the group's order. A
    /// group the database refuses as a whole should be applied again one
    /// request at a time, so every request gets the answer it would have had
    /// alone.
    fn apply(&self, group: Vec<Self::Request>) -> impl Future<Output = Vec<Self::Answer>> + Send;
}

struct Job<A: Apply> {
    request: A::Request,
    reply: oneshot::Sender<A::Answer>,
}

/// Requests waiting for the statement in flight; `busy` while a drain task
/// runs the lane.
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

/// One lane of grouped requests; clones share it.
pub struct Lane<A: Apply> {
    apply: Arc<A>,
    /// The `operation` label of the group metrics.
    operation: &'static str,
    state: Arc<Mutex<State<A>>>,
}

impl<A: Apply> Clone for Lane<A> {
    fn clone(&self) -> Self {
        Self {
            apply: self.apply.clone(),
            operation: self.operation,
            state: self.state.clone(),
        }
    }
}

/// Counts a statement and the requests it applied (their ratio is the mean
/// group size); for lanes of other shapes too, so every service reports its
/// groups alike.
pub fn record(operation: &'static str, requests: usize) {
    metrics::counter!("valerix_group_statements_total", "operation" => operation).increment(1);
    metrics::counter!("valerix_grouped_requests_total", "operation" => operation)
        .increment(requests as u64);
}

impl<A: Apply> Lane<A> {
    pub fn new(operation: &'static str, apply: A) -> Self {
        // Present from the start, so a dashboard's rate has a series.
        metrics::counter!("valerix_group_statements_total", "operation" => operation).increment(0);
        metrics::counter!("valerix_grouped_requests_total", "operation" => operation).increment(0);
        Self {
            apply: Arc::new(apply),
            operation,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<A>> {
        lock(&self.state)
    }

    /// Requests waiting for the statement in flight.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Applies `request` with whatever else queues meanwhile; None when its
    /// group was lost before it was answered (the drain task panicked or
    /// the runtime is shutting down).
    pub async fn submit(&self, request: A::Request) -> Option<A::Answer> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.waiting.push_back(Job { request, reply });
            !std::mem::replace(&mut state.busy, true)
        };
        if start {
            // A task of its own: a caller that hangs up must not stop the
            // group its request is in.
            tokio::spawn(self.clone().drain());
        }
        answer.await.ok()
    }

    /// The next group; None (and the lane idle) when nothing waits.
    fn next(&self) -> Option<Vec<Job<A>>> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.busy = false;
            return None;
        }
        Some(take_group(&mut state.waiting, |job| A::key(&job.request)))
    }

    async fn drain(self) {
        let mut guard = Abandon {
            state: self.state.clone(),
            finished: false,
        };
        while let Some(group) = self.next() {
            record(self.operation, group.len());
            let (requests, replies): (Vec<_>, Vec<_>) =
                group.into_iter().map(|j| (j.request, j.reply)).unzip();
            let answers = self.apply.apply(requests).await;
            // An answer missing (a bug in `apply`) drops its reply: the
            // caller hears "lost" rather than waiting for ever.
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        guard.finished = true;
    }
}

fn lock<A: Apply>(state: &Mutex<State<A>>) -> MutexGuard<'_, State<A>> {
    // The lane holds no invariant a panic could break half-way.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frees a lane whose drain task ends without emptying it (a panic, or the
/// runtime shutting down): its waiting requests are answered "lost" (their
/// replies are dropped) and the next request starts a new drain, instead of
/// the lane hanging for good.
struct Abandon<A: Apply> {
    state: Arc<Mutex<State<A>>>,
    /// Set when the drain emptied its lane and let it go, as it should.
    finished: bool,
}

impl<A: Apply> Drop for Abandon<A> {
    fn drop(&mut self) {
        if !self.finished {
            // The lane is still this drain's (`busy`): no other drain runs it.
            *lock(&self.state) = State::default();
        }
    }
}

/// Answers a group the usual way. `stored` is what one statement stored
/// for the whole group, by key (None: the group was one request, or the
/// database refused it as a whole). A request it stored is answered with
/// `found`; every other one goes through `alone`, the single-request path,
/// in arrival order, which finds the first answer or the error.
pub async fn answer_each<R, K, V, A, Fut>(
    group: Vec<R>,
    stored: Option<HashMap<K, V>>,
    key: impl Fn(&R) -> K,
    found: impl Fn(V) -> A,
    alone: impl Fn(R) -> Fut,
) -> Vec<A>
where
    K: Hash + Eq,
    Fut: Future<Output = A>,
{
    let mut stored = stored.unwrap_or_default();
    let mut answers = Vec::with_capacity(group.len());
    for request in group {
        answers.push(match stored.remove(&key(&request)) {
            Some(value) => found(value),
            None => alone(request).await,
        });
    }
    answers
}

/// Up to [`MAX_GROUP`] of `waiting`, in arrival order. A request whose key
/// is already in the group stays for the next one.
pub fn take_group<J, K: Hash + Eq>(
    waiting: &mut VecDeque<J>,
    key: impl Fn(&J) -> Option<K>,
) -> Vec<J> {
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
mod tests {
    use std::time::Duration;

    use tokio::sync::{Notify, mpsc};

    use super::*;

    /// Answers each request with its group's size, after `gate` lets the
    /// first group go; reports each group to `groups`.
    struct Probe {
        gate: Arc<Notify>,
        groups: mpsc::UnboundedSender<Vec<u32>>,
    }

    impl Apply for Probe {
        type Request = u32;
        type Answer = usize;
        type Key = u32;

        fn key(request: &u32) -> Option<u32> {
            (*request < 100).then_some(*request)
        }

        async fn apply(&self, group: Vec<u32>) -> Vec<usize> {
            if group.contains(&0) {
                self.gate.notified().await;
            }
            if group.contains(&666) {
                panic!("a drain that dies");
            }
            let _ = self.groups.send(group.clone());
            vec![group.len(); group.len()]
        }
    }

    fn probe() -> (Lane<Probe>, Arc<Notify>, mpsc::UnboundedReceiver<Vec<u32>>) {
        let gate = Arc::new(Notify::new());
        let (groups, seen) = mpsc::unbounded_channel();
        let lane = Lane::new(
            "test",
            Probe {
                gate: gate.clone(),
                groups,
            },
        );
        (lane, gate, seen)
    }

    type Handle = tokio::task::JoinHandle<Option<usize>>;

    fn submit(lane: &Lane<Probe>, request: u32) -> Handle {
        let lane = lane.clone();
        tokio::spawn(async move { lane.submit(request).await })
    }

    /// Request 0 in flight (held at the gate), then `rest` queued behind it.
    async fn held_then_queued(lane: &Lane<Probe>, rest: &[u32]) -> (Handle, Vec<Handle>) {
        let first = submit(lane, 0);
        let within = Duration::from_secs(5);
        tokio::time::timeout(within, async {
            while !lane.lock().busy {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the first request started");
        let rest: Vec<_> = rest.iter().map(|&r| submit(lane, r)).collect();
        tokio::time::timeout(within, async {
            while lane.waiting() < rest.len() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the rest queued");
        (first, rest)
    }

    #[tokio::test]
    async fn what_queues_behind_a_statement_is_applied_by_the_next_one_together() {
        let (lane, gate, mut seen) = probe();
        let (first, rest) = held_then_queued(&lane, &[1, 2, 3, 4, 5]).await;
        gate.notify_one();
        assert_eq!(first.await.expect("first"), Some(1));
        for r in rest {
            assert_eq!(r.await.expect("rest"), Some(5));
        }
        assert_eq!(seen.recv().await, Some(vec![0]));
        assert_eq!(seen.recv().await, Some(vec![1, 2, 3, 4, 5]));
        assert!(!lane.lock().busy, "an empty lane is idle again");
    }

    #[tokio::test]
    async fn a_repeated_key_waits_for_the_next_group() {
        let (lane, gate, mut seen) = probe();
        // 7 twice; 100 and up have no key, so 100 twice may share.
        let (first, rest) = held_then_queued(&lane, &[7, 8, 7, 100, 100]).await;
        gate.notify_one();
        first.await.expect("first");
        for r in rest {
            r.await.expect("rest");
        }
        assert_eq!(seen.recv().await, Some(vec![0]));
        let mut second = seen.recv().await.expect("second group");
        second.sort_unstable();
        assert_eq!(second, vec![7, 8, 100, 100]);
        assert_eq!(seen.recv().await, Some(vec![7]));
    }

    #[test]
    fn a_group_is_at_most_max_group_in_arrival_order() {
        let mut waiting: VecDeque<u32> = (0..300).collect();
        let group = take_group(&mut waiting, |j| Some(*j));
        assert_eq!(group, (0..MAX_GROUP as u32).collect::<Vec<_>>());
        assert_eq!(waiting.front(), Some(&(MAX_GROUP as u32)));
        assert_eq!(waiting.len(), 300 - MAX_GROUP);
    }

    #[tokio::test]
    async fn a_lost_group_answers_none_and_the_lane_serves_again() {
        let (lane, _gate, mut seen) = probe();
        assert_eq!(lane.submit(666).await, None);
        assert_eq!(lane.submit(5).await, Some(1));
        assert_eq!(seen.recv().await, Some(vec![5]));
    }
}
