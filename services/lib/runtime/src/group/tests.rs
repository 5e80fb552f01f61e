//! The lanes driven by a probe that holds a group in flight at a gate,
//! so what queues behind it is known before it goes.

use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::*;

/// Answers each request with its group's size, after `gate` lets the
/// first group go; reports each group to `groups`.
struct Probe {
    gate: Arc<Notify>,
    groups: mpsc::UnboundedSender<Vec<u32>>,
}

/// A group's statement stores every request but 13, which is answered
/// alone (0).
impl Apply for Probe {
    type Request = u32;
    type Answer = usize;
    type Key = u32;
    type Id = u32;
    type Stored = usize;

    fn key(request: &u32) -> Option<u32> {
        (*request < 100).then_some(*request)
    }

    fn id(request: &u32) -> u32 {
        *request
    }

    async fn one(&self, request: u32) -> usize {
        if request == 0 {
            self.gate.notified().await;
        }
        if request == 666 {
            panic!("a drain that dies");
        }
        let _ = self.groups.send(vec![request]);
        1
    }

    async fn many(&self, group: &[u32]) -> Option<HashMap<u32, usize>> {
        let _ = self.groups.send(group.to_vec());
        Some(
            group
                .iter()
                .filter(|&&r| r != 13)
                .map(|&r| (r, group.len()))
                .collect(),
        )
    }

    fn stored(&self, size: usize) -> usize {
        size
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
        while !lane.0.is_busy(&()) {
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
    assert!(!lane.0.is_busy(&()), "an empty lane is idle again");
    assert!(lane.0.lock().is_empty(), "and gone");
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
    // The statement stores one row per id: the second 100 goes alone.
    assert_eq!(seen.recv().await, Some(vec![100]));
    assert_eq!(seen.recv().await, Some(vec![7]));
}

#[tokio::test]
async fn what_the_group_did_not_store_is_answered_alone() {
    let (lane, gate, mut seen) = probe();
    let (first, rest) = held_then_queued(&lane, &[12, 13, 14]).await;
    gate.notify_one();
    first.await.expect("first");
    let answers: Vec<_> = futures_answers(rest).await;
    assert_eq!(answers, [Some(3), Some(1), Some(3)]);
    assert_eq!(seen.recv().await, Some(vec![0]));
    assert_eq!(seen.recv().await, Some(vec![12, 13, 14]));
    assert_eq!(
        seen.recv().await,
        Some(vec![13]),
        "13 alone, after the group"
    );
}

async fn futures_answers(handles: Vec<Handle>) -> Vec<Option<usize>> {
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.expect("answered"));
    }
    answers
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
