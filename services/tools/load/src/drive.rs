//! Sending the orders. Two models:
//!
//! - open (`--rate`): order n is due at `n / rate` whatever the answers, as
//!   real customers arrive. Latency counts from when it was due, not from
//!   when it went out, so a slow server cannot hide its queue by slowing the
//!   sender down (coordinated omission).
//! - closed (`--concurrency`): N clients, each sending its next order when
//!   the last one is answered; latency counts from the send.
//!
//! Every answer goes to one collector that keeps the tally while the run
//! goes on; nothing waits on it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Semaphore, mpsc, watch},
    time::Instant,
};
use uuid::Uuid;

use super::{
    tally::{Sample, Tally},
    target::OrderTarget,
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Orders per second (open model).
    Rate(f64),
    /// Clients sending back to back (closed model).
    Clients(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Elapsed(Duration),
    Orders(u64),
}

impl Until {
    fn allows(self, n: u64, due: Duration) -> bool {
        match self {
            Self::Elapsed(d) => due < d,
            Self::Orders(k) => n < k,
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub arrival: Arrival,
    pub until: Until,
    /// Orders go round-robin over these.
    pub products: Vec<String>,
    pub quantity: i32,
    /// Send an Idempotency-Key with every order, so an error can be resolved later.
    pub idempotency_keys: bool,
    /// The open model waits for a free slot past this many requests in flight.
    pub max_in_flight: usize,
}

impl Plan {
    /// About how long the run takes, when that is known up front.
    pub fn expected_length(&self) -> Option<Duration> {
        match (self.until, self.arrival) {
            (Until::Elapsed(d), _) => Some(d),
            (Until::Orders(n), Arrival::Rate(r)) if r > 0.0 => {
                Some(Duration::from_secs_f64(n as f64 / r))
            }
            _ => None,
        }
    }

    /// A timeline of about 30 rows.
    pub fn bin_width(&self) -> Duration {
        let secs = self
            .expected_length()
            .map_or(1.0, |d| (d.as_secs_f64() / 30.0).ceil().max(1.0));
        Duration::from_secs_f64(secs)
    }
}

/// Counters the progress display reads while the run goes.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    /// Answered or failed.
    pub done: AtomicU64,
    pub answered: AtomicU64,
    pub acknowledged: AtomicU64,
    pub errors: AtomicU64,
    /// Orders answered with a PENDING_* status.
    pub pending: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Live {
    fn sending(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, s: &Sample) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        match &s.result {
            Ok(a) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                match &a.order {
                    Some(o) if a.is_success() => {
                        self.acknowledged.fetch_add(1, Ordering::Relaxed);
                        if o.status.starts_with("PENDING") {
                            self.pending.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether `stop` asked the run to end (its value counts the requests).
pub(super) async fn stopped(stop: &mut watch::Receiver<u32>) {
    if stop.wait_for(|n| *n > 0).await.is_err() {
        // The sender is gone: nobody can ask any more.
        std::future::pending::<()>().await;
    }
}

struct Shared {
    target: OrderTarget,
    plan: Plan,
    live: Arc<Live>,
    start: Instant,
    samples: mpsc::UnboundedSender<Sample>,
}

impl Shared {
    async fn send(&self, n: u64, due: Instant) {
        let product = (n % self.plan.products.len().max(1) as u64) as usize;
        let key = self.plan.idempotency_keys.then(Uuid::new_v4);
        let name = self.plan.products.get(product).map_or("", String::as_str);
        let result = self.target.place(name, self.plan.quantity, key).await;
        let sample = Sample {
            n,
            due: due.saturating_duration_since(self.start),
            latency: due.elapsed(),
            key,
            product,
            result,
        };
        self.live.record(&sample);
        // The collector outlives every sender; a closed channel means the
        // run is being torn down and the sample has nowhere to go.
        let _ = self.samples.send(sample);
    }
}

/// Runs the schedule until it is done or `stop` says so, and returns the tally
/// once every request in flight has been answered.
pub async fn drive(
    target: OrderTarget,
    plan: Plan,
    live: Arc<Live>,
    stop: watch::Receiver<u32>,
    start: Instant,
    mut on_first: impl FnMut(&str, f64),
) -> Tally {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tally = Tally::new(plan.products.clone(), plan.bin_width());
    let arrival = plan.arrival;
    let shared = Arc::new(Shared {
        target,
        plan,
        live,
        start,
        samples: tx,
    });
    let producer = match arrival {
        Arrival::Rate(rate) => tokio::spawn(open(shared, rate, stop)),
        Arrival::Clients(n) => tokio::spawn(closed(shared, n, stop)),
    };
    while let Some(sample) = rx.recv().await {
        let due = sample.due.as_secs_f64();
        if let Some(kind) = tally.add(sample) {
            on_first(&kind, due);
        }
    }
    let _ = producer.await;
    tally
}

/// The open model: order n is due at start + n / rate.
async fn open(shared: Arc<Shared>, rate: f64, mut stop: watch::Receiver<u32>) {
    let slots = Arc::new(Semaphore::new(shared.plan.max_in_flight.max(1)));
    let interval = 1.0 / rate.max(1e-6);
    for n in 0u64.. {
        let offset = Duration::from_secs_f64(n as f64 * interval);
        if !shared.plan.until.allows(n, offset) {
            break;
        }
        let due = shared.start + offset;
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stopped(&mut stop) => break,
        }
        // Waiting for a slot delays the send, not the due time: the wait is
        // part of the latency this order reports.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        shared.live.sending();
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.send(n, due).await;
            drop(slot);
        });
    }
}

/// The closed model: `clients` loops, each one order at a time.
async fn closed(shared: Arc<Shared>, clients: usize, stop: watch::Receiver<u32>) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (shared, next, stop) = (shared.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    if *stop.borrow() > 0 {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if !shared.plan.until.allows(n, now - shared.start) {
                        break;
                    }
                    shared.live.sending();
                    shared.send(n, now).await;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
}
