//! One measurement: N clients back to back (closed model) or orders at a
//! fixed rate (open model) against an order-taking URL, with what it cost
//! each process; and the rounds of a measurement, of which the median is
//! shown.

use std::{sync::Arc, time::Duration};

use hdrhistogram::Histogram;
use tokio::{sync::watch, time::Instant};
use valerix_load::{
    drive::{self, Arrival, Live, Plan, Until},
    tally::{Percentiles, Tally},
    target::OrderTarget,
};

use crate::{
    BenchArgs, Mix,
    cpu::{CpuTime, Roles},
};

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds and 3 digits")
}

/// Orders done in a measured time, and their latencies (µs).
#[derive(Clone)]
pub struct Measured {
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    pub errors: u64,
    /// CPU spent meanwhile, by role (when /proc could tell).
    pub cpu: Option<CpuTime>,
}

impl Measured {
    pub(crate) fn new(latency: Histogram<u64>, elapsed: Duration, errors: u64) -> Self {
        Self {
            latency,
            elapsed,
            errors,
            cpu: None,
        }
    }

    /// `parts` of the /proc figures, each divided by the orders done:
    /// (postgres, services, client).
    fn per_order(&self, parts: impl Fn(&CpuTime) -> [f64; 3]) -> Option<(f64, f64, f64)> {
        let n = self.latency.len().max(1) as f64;
        self.cpu.map(|c| {
            let [p, s, cl] = parts(&c);
            (p / n, s / n, cl / n)
        })
    }

    /// CPU per order, µs: (postgres, services, client).
    pub fn cpu_per_order(&self) -> Option<(f64, f64, f64)> {
        self.per_order(|c| [c.postgres, c.services, c.client].map(|d| d.as_secs_f64() * 1e6))
    }

    /// Context switches per order: (postgres, services, client).
    pub fn switches_per_order(&self) -> Option<(f64, f64, f64)> {
        self.per_order(|c| {
            [c.postgres_switches, c.services_switches, c.client_switches].map(|n| n as f64)
        })
    }

    /// The API gateway's CPU per order, µs.
    pub fn gateway_cpu_per_order(&self) -> Option<f64> {
        let n = self.latency.len().max(1) as f64;
        self.cpu.map(|c| c.gateway.as_secs_f64() * 1e6 / n)
    }

    /// The API gateway's context switches per order.
    pub fn gateway_switches_per_order(&self) -> Option<f64> {
        let n = self.latency.len().max(1) as f64;
        self.cpu.map(|c| c.gateway_switches as f64 / n)
    }

    /// Adds a later slice of the same measurement: its orders, time, errors
    /// and CPU.
    pub(crate) fn absorb(&mut self, slice: Measured) {
        self.latency
            .add(&slice.latency)
            .expect("every histogram has the bounds of `histogram()`");
        self.elapsed += slice.elapsed;
        self.errors += slice.errors;
        self.cpu = match (self.cpu, slice.cpu) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }

    pub fn per_s(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn pct(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }
}

/// The rounds of one measurement, sorted by throughput.
#[derive(Clone)]
pub(crate) struct Runs(pub(crate) Vec<Measured>);

impl Runs {
    pub(crate) fn new(mut runs: Vec<Measured>) -> Self {
        runs.sort_by(|a, b| a.per_s().total_cmp(&b.per_s()));
        Self(runs)
    }

    pub(crate) fn median(&self) -> &Measured {
        &self.0[self.0.len() / 2]
    }

    pub(crate) fn cell(&self) -> String {
        let m = self.median().per_s();
        match (self.0.first(), self.0.last()) {
            (Some(lo), Some(hi)) if self.0.len() > 1 => {
                format!("{m:.0} ({:.0}–{:.0})", lo.per_s(), hi.per_s())
            }
            _ => format!("{m:.0}"),
        }
    }

    pub(crate) fn errors(&self) -> u64 {
        self.0.iter().map(|m| m.errors).sum()
    }
}

pub(crate) struct Cell {
    pub(crate) mix: Mix,
    /// End to end through the API gateway (a fifth HTTP exchange).
    pub(crate) via_gateway: bool,
    pub(crate) concurrency: usize,
    pub(crate) db: Runs,
    pub(crate) e2e: Runs,
}

impl Cell {
    /// Of the medians.
    pub(crate) fn ratio(&self) -> f64 {
        self.e2e.median().per_s() / self.db.median().per_s().max(1e-9)
    }
}

/// An open-model run: its rate and what came of it.
pub(crate) struct OpenRun {
    pub(crate) mix: Mix,
    pub(crate) via_gateway: bool,
    pub(crate) rate: f64,
    pub(crate) peak: f64,
    pub(crate) shedding: bool,
    pub(crate) tally: Tally,
    pub(crate) elapsed: Duration,
    /// The p99 (ms, of 2xx answers) of every round this one is the median
    /// of, lowest first; one entry for a single run.
    pub(crate) p99_of_rounds: Vec<f64>,
}

impl OpenRun {
    pub(crate) fn at_half_of_peak(&self) -> bool {
        (self.rate - self.peak / 2.0).abs() < 1e-6
    }

    pub(crate) fn p99(&self) -> f64 {
        Percentiles::of(&self.tally.ok).p99
    }

    /// The round with the median p99, knowing the others'.
    pub(crate) fn median_of(mut rounds: Vec<OpenRun>) -> Option<OpenRun> {
        rounds.sort_by(|a, b| a.p99().total_cmp(&b.p99()));
        let p99s: Vec<f64> = rounds.iter().map(OpenRun::p99).collect();
        if rounds.is_empty() {
            return None;
        }
        let mut median = rounds.swap_remove(p99s.len() / 2);
        median.p99_of_rounds = p99s;
        Some(median)
    }
}

pub(crate) fn products(mix: Mix, spread: usize) -> Vec<String> {
    match mix {
        Mix::Hot => vec!["BENCH-HOT".to_owned()],
        Mix::Spread => (1..=spread.max(1))
            .map(|i| format!("BENCH-{i:03}"))
            .collect(),
    }
}

fn quiet_plan(arrival: Arrival, duration: Duration, products: Vec<String>) -> Plan {
    Plan {
        arrival,
        until: Until::Elapsed(duration),
        products,
        quantity: 1,
        // The bench measures the plain order; a key adds a row per order.
        idempotency_keys: false,
        max_in_flight: 20_000,
    }
}

async fn drive_plan(target: &OrderTarget, plan: Plan) -> (Tally, Duration) {
    let (_stop_tx, stop) = watch::channel(0u32);
    let start = Instant::now();
    let tally = drive::drive(
        target.clone(),
        plan,
        Arc::new(Live::default()),
        stop,
        start,
        |_, _| {},
    )
    .await;
    (tally, start.elapsed())
}

/// End to end from `concurrency` clients: confirmed orders and their latency.
pub(crate) async fn e2e(
    target: &OrderTarget,
    products: &[String],
    concurrency: usize,
    args: &BenchArgs,
    roles: &Roles,
) -> Measured {
    warm_up(target, products, concurrency, args.warmup).await;
    closed(target, products, concurrency, args.duration, roles).await
}

/// `concurrency` clients for `duration`, unmeasured: connections opened,
/// caches and queues filled.
pub(crate) async fn warm_up(
    target: &OrderTarget,
    products: &[String],
    concurrency: usize,
    duration: Duration,
) {
    let plan = quiet_plan(Arrival::Clients(concurrency), duration, products.to_vec());
    drive_plan(target, plan).await;
}

/// `concurrency` clients back to back for `duration`, measured.
pub(crate) async fn closed(
    target: &OrderTarget,
    products: &[String],
    concurrency: usize,
    duration: Duration,
    roles: &Roles,
) -> Measured {
    let before = roles.sample();
    let (tally, _) = drive_plan(
        target,
        quiet_plan(Arrival::Clients(concurrency), duration, products.to_vec()),
    )
    .await;
    let after = roles.sample();
    let confirmed = tally.statuses.get("CONFIRMED").copied().unwrap_or(0);
    let mut m = Measured::new(tally.ok, tally.last_answer, tally.sent - confirmed);
    m.cpu = after.zip(before).map(|(a, b)| a - b);
    m
}

pub(crate) async fn open_run(
    target: &OrderTarget,
    args: &BenchArgs,
    mix: Mix,
    products: &[String],
    rate: f64,
    peak: f64,
    shedding: bool,
) -> OpenRun {
    let plan = |d| quiet_plan(Arrival::Rate(rate), d, products.to_vec());
    drive_plan(target, plan(args.warmup)).await;
    let (tally, elapsed) = drive_plan(target, plan(args.duration)).await;
    let mut run = OpenRun {
        mix,
        via_gateway: false,
        rate,
        peak,
        shedding,
        tally,
        elapsed,
        p99_of_rounds: Vec::new(),
    };
    run.p99_of_rounds = vec![run.p99()];
    run
}
