//! After the load: what became of every order.
//!
//! 1. Errors are resolved the way a careful client would: the same request
//!    again with the same Idempotency-Key, which returns the order if the
//!    first attempt created it (the error only hid the answer) or creates it.
//! 2. Every acknowledged order is read back (`GET {base}/orders/{id}`), and
//!    the unsettled ones again and again until they settle or time runs out.
//!
//! Lost: acknowledged, but the service does not have it. Stuck: not settled
//! in time. Changed: answered settled, later read otherwise (never allowed).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::{StreamExt, stream};
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    progress::Progress,
    tally::{Outcome, Tally},
    target::{OrderTarget, OrderView},
};

/// Requests in flight while following.
const PARALLEL: usize = 16;
const POLL_EVERY: Duration = Duration::from_millis(500);
const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Followed {
    /// Acknowledged orders read back.
    pub verified: u64,
    /// Errors resolved by a retry with the same Idempotency-Key.
    pub resolved: u64,
    pub lost: u64,
    pub stuck: u64,
    /// Answered settled, read back with another status.
    pub changed: u64,
    /// How long following took.
    pub took_s: f64,
}

impl Followed {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.stuck == 0 && self.changed == 0
    }
}

enum Resolution {
    Order {
        order: OrderView,
        existed: bool,
    },
    /// A client error: the request is refused for good, no order exists.
    NotCreated(String),
    GaveUp,
}

/// Sends the same order again with the same key until it gets an order.
async fn resolve(
    target: &OrderTarget,
    product: &str,
    quantity: i32,
    key: Uuid,
    deadline: Instant,
) -> Resolution {
    while Instant::now() < deadline {
        let asked_at = Utc::now();
        match target.place(product, quantity, Some(key)).await {
            Ok(a) if a.is_success() => {
                if let Some(order) = a.order {
                    // A replayed key returns the first order, created before we asked again.
                    let existed = order.created_at < asked_at;
                    return Resolution::Order { order, existed };
                }
            }
            Ok(a) if !a.is_retryable() => return Resolution::NotCreated(a.code_label()),
            Ok(a) => {
                if let Some(wait) = a.retry_after {
                    tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                    continue;
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    Resolution::GaveUp
}

#[derive(Debug)]
struct Track {
    first_status: String,
    last: Option<OrderView>,
    missing: bool,
}

impl Track {
    fn done(&self) -> bool {
        self.missing || self.last.as_ref().is_some_and(OrderView::is_settled)
    }
}

/// Follows everything the tally acknowledged or saw fail, for at most
/// `within`, and writes each affected order's fate into the tally. A request
/// on `stop` beyond `stop_seen` cuts it short.
pub async fn follow(
    target: &OrderTarget,
    tally: &mut Tally,
    quantity: i32,
    within: Duration,
    progress: &Progress,
    mut stop: watch::Receiver<u32>,
) -> Followed {
    let started = Instant::now();
    let deadline = started + within;
    let stop_seen = *stop.borrow_and_update();
    let interrupted = |stop: &watch::Receiver<u32>| *stop.borrow() > stop_seen;
    let mut out = Followed::default();

    // 1. Errors: resolve those that a retry may, with their keys.
    let to_resolve: Vec<usize> = tally
        .affected
        .iter()
        .enumerate()
        .filter(|(_, a)| a.order_id.is_none() && a.retryable && a.idempotency_key.is_some())
        .map(|(i, _)| i)
        .collect();
    if !to_resolve.is_empty() {
        progress.status(&format!(
            "resolving {} error(s) by sending them again with the same Idempotency-Key...",
            to_resolve.len()
        ));
    }
    let resolutions: Vec<(usize, Resolution)> = stream::iter(to_resolve)
        .map(|i| {
            let a = &tally.affected[i];
            let (product, key) = (a.product.clone(), a.idempotency_key.unwrap_or_default());
            async move { (i, resolve(target, &product, quantity, key, deadline).await) }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut tracks: HashMap<Uuid, Track> = HashMap::new();
    for (i, r) in resolutions {
        let a = &mut tally.affected[i];
        match r {
            Resolution::Order { order, existed } => {
                out.resolved += 1;
                a.order_id = Some(order.id);
                a.fate.resolved_by_retry = true;
                a.fate.existed_before_retry = Some(existed);
                tracks.insert(
                    order.id,
                    Track {
                        first_status: order.status.clone(),
                        last: Some(order),
                        missing: false,
                    },
                );
            }
            Resolution::NotCreated(answer) => {
                a.fate.outcome = Outcome::NotCreated;
                a.fate.final_status = Some(format!("refused on retry: {answer}"));
            }
            Resolution::GaveUp => {
                a.fate.outcome = Outcome::Stuck;
                out.stuck += 1;
            }
        }
    }
    for a in tally.affected.iter_mut().filter(|a| a.order_id.is_none()) {
        if a.fate.outcome == Outcome::Unknown {
            a.fate.outcome = if a.retryable {
                Outcome::Unresolved
            } else {
                Outcome::NotCreated
            };
        }
    }

    // 2. Read back every acknowledged order until it settles.
    for acked in &tally.acked {
        tracks.entry(acked.id).or_insert_with(|| Track {
            first_status: acked.first_status.clone(),
            last: None,
            missing: false,
        });
    }
    let mut round = 0;
    // What was last said, and when: a line when the count changes, or every 5 s.
    let mut said: Option<(usize, Instant)> = None;
    loop {
        let todo: Vec<Uuid> = tracks
            .iter()
            .filter(|(_, t)| !t.done())
            .map(|(id, _)| *id)
            .collect();
        if todo.is_empty() || Instant::now() >= deadline || interrupted(&stop) {
            break;
        }
        if round > 0 {
            let quiet = said.is_some_and(|(n, at)| n == todo.len() && at.elapsed() < LINE_EVERY);
            if !quiet {
                progress.status(&format!(
                    "following {} unsettled order(s), {:.0} s left...",
                    todo.len(),
                    deadline
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64()
                ));
                said = Some((todo.len(), Instant::now()));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = stop.changed() => {}
            }
        }
        round += 1;
        let reads: Vec<_> = stream::iter(todo)
            .map(|id| async move { (id, target.get(id).await) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (id, read) in reads {
            let Some(t) = tracks.get_mut(&id) else {
                continue;
            };
            match read {
                Ok(Some(order)) => t.last = Some(order),
                Ok(None) => t.missing = true,
                // Unreadable now: try again next round.
                Err(_) => {}
            }
        }
    }

    for t in tracks.values() {
        match &t.last {
            _ if t.missing => out.lost += 1,
            Some(o) if o.is_settled() => {
                out.verified += 1;
                let first_settled = matches!(t.first_status.as_str(), "CONFIRMED" | "FAILED");
                if first_settled && o.status != t.first_status {
                    out.changed += 1;
                }
            }
            Some(_) => {
                out.verified += 1;
                out.stuck += 1;
            }
            None => out.stuck += 1,
        }
    }
    for a in tally.affected.iter_mut() {
        let Some(t) = a.order_id.and_then(|id| tracks.get(&id)) else {
            continue;
        };
        if t.missing {
            a.fate.outcome = Outcome::Lost;
            continue;
        }
        match &t.last {
            Some(o) => {
                a.fate.final_status = Some(o.status.clone());
                a.fate.failure_reason = o.failure_reason.clone();
                a.fate.settled_after_ms = o.settled_after().map(|d| d.as_secs_f64() * 1000.0);
                a.fate.outcome = if o.is_settled() {
                    Outcome::Settled
                } else {
                    Outcome::Stuck
                };
            }
            None => a.fate.outcome = Outcome::Stuck,
        }
    }
    out.took_s = started.elapsed().as_secs_f64();
    out
}
