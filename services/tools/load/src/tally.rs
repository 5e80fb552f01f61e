//! What a run measured, sample by sample: latency histograms, the answers
//! by status code and order status, a timeline, and every affected order
//! (answered PENDING_*, FAILED, or an error), recorded as the run goes.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use super::target::{Answer, Failure};

/// Latencies are recorded in microseconds, up to this (an hour).
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("constant bounds and 2 or 3 digits")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

/// What one request came to.
#[derive(Debug)]
pub struct Sample {
    /// Its number in the run, from 0.
    pub n: u64,
    /// When it was due to be sent, since the start of the run.
    pub due: Duration,
    /// From when it was due until the answer (or the failure).
    pub latency: Duration,
    pub key: Option<Uuid>,
    /// Index into the run's products.
    pub product: usize,
    pub result: Result<Answer, Failure>,
}

/// An order the run did not simply see CONFIRMED, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Affected {
    pub n: u64,
    /// When it was due, seconds since the start.
    pub at_s: f64,
    pub product: String,
    pub idempotency_key: Option<Uuid>,
    /// `202 PENDING_INVENTORY`, `201 FAILED OUT_OF_STOCK`, `503 overloaded`, `timeout`, ...
    pub first_answer: String,
    pub latency_ms: f64,
    pub order_id: Option<Uuid>,
    /// An error a client may retry with the same Idempotency-Key.
    #[serde(skip)]
    pub retryable: bool,
    /// Filled in by following it.
    #[serde(flatten)]
    pub fate: Fate,
}

/// How an affected order ended, as far as following it could tell.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fate {
    /// CONFIRMED, FAILED, or the last status seen.
    pub final_status: Option<String>,
    pub failure_reason: Option<String>,
    /// From its creation to its last change.
    pub settled_after_ms: Option<f64>,
    /// The error was resolved by sending the same request with the same Idempotency-Key.
    pub resolved_by_retry: bool,
    /// ... and the order existed before that retry (the error hid a created order).
    pub existed_before_retry: Option<bool>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not followed yet.
    #[default]
    Unknown,
    Settled,
    /// Still unsettled when the time to settle ran out.
    Stuck,
    /// Acknowledged, but the service does not have it.
    Lost,
    /// Refused with a client error: there is no order.
    NotCreated,
    /// An error without an Idempotency-Key to find out what happened.
    Unresolved,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "not followed",
            Self::Settled => "settled",
            Self::Stuck => "STUCK",
            Self::Lost => "LOST",
            Self::NotCreated => "not created",
            Self::Unresolved => "unresolved",
        }
    }
}

/// An order a 2xx answer acknowledged, with the status it was answered with.
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: Uuid,
    pub first_status: String,
}

/// One slice of the run's timeline, by the time requests were due.
#[derive(Debug, Clone)]
pub struct Bin {
    pub sent: u64,
    pub confirmed: u64,
    pub processing: u64,
    pub failed: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

impl Bin {
    fn new() -> Self {
        Self {
            sent: 0,
            confirmed: 0,
            processing: 0,
            failed: 0,
            errors: 0,
            // Two significant digits: enough for a timeline, and small.
            latency: histogram(2),
        }
    }
}

#[derive(Debug)]
pub struct Tally {
    pub products: Vec<String>,
    pub bin_width: Duration,
    /// Every request that got an HTTP answer.
    pub all: Histogram<u64>,
    /// 2xx answers only.
    pub ok: Histogram<u64>,
    pub codes: BTreeMap<String, u64>,
    /// The order status of 2xx answers.
    pub statuses: BTreeMap<String, u64>,
    pub bins: Vec<Bin>,
    pub sent: u64,
    pub answered: u64,
    pub acknowledged: u64,
    pub errors: u64,
    /// 503 answers: the service shed the request.
    pub shed: u64,
    pub acked: Vec<Acked>,
    /// Orders answered CONFIRMED: when each was due and when its answer
    /// came, since the start (when did orders confirm again after a fault).
    pub confirmations: Vec<(Duration, Duration)>,
    pub affected: Vec<Affected>,
    /// The first answers seen among the affected orders.
    kinds: HashSet<String>,
    /// When the last answer came, since the start.
    pub last_answer: Duration,
}

/// The percentiles the report shows, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

impl Tally {
    pub fn new(products: Vec<String>, bin_width: Duration) -> Self {
        Self {
            products,
            bin_width: bin_width.max(Duration::from_millis(100)),
            all: histogram(3),
            ok: histogram(3),
            codes: BTreeMap::new(),
            statuses: BTreeMap::new(),
            bins: Vec::new(),
            sent: 0,
            answered: 0,
            acknowledged: 0,
            errors: 0,
            shed: 0,
            acked: Vec::new(),
            confirmations: Vec::new(),
            affected: Vec::new(),
            kinds: HashSet::new(),
            last_answer: Duration::ZERO,
        }
    }

    fn bin(&mut self, due: Duration) -> &mut Bin {
        let i = (due.as_secs_f64() / self.bin_width.as_secs_f64()) as usize;
        if self.bins.len() <= i {
            self.bins.resize_with(i + 1, Bin::new);
        }
        &mut self.bins[i]
    }

    /// Records one request. Returns the label of its first answer when this
    /// is the first affected order answered that way (worth a line live).
    pub fn add(&mut self, s: Sample) -> Option<String> {
        self.sent += 1;
        self.last_answer = self.last_answer.max(s.due + s.latency);
        let us = micros(s.latency);
        let bin = self.bin(s.due);
        bin.sent += 1;
        let _ = bin.latency.record(us);
        let (first_answer, order_id, retryable) = match &s.result {
            Ok(a) => {
                self.answered += 1;
                let _ = self.all.record(us);
                *self.codes.entry(a.code_label()).or_default() += 1;
                match (&a.order, a.is_success()) {
                    (Some(o), true) => {
                        self.acknowledged += 1;
                        let _ = self.ok.record(us);
                        *self.statuses.entry(o.label()).or_default() += 1;
                        self.acked.push(Acked {
                            id: o.id,
                            first_status: o.status.clone(),
                        });
                        if o.status == "CONFIRMED" {
                            self.confirmations.push((s.due, s.due + s.latency));
                        }
                        let bin = self.bin(s.due);
                        match o.status.as_str() {
                            "CONFIRMED" => {
                                bin.confirmed += 1;
                                return None;
                            }
                            "FAILED" => bin.failed += 1,
                            _ => bin.processing += 1,
                        }
                        (format!("{} {}", a.status, o.label()), Some(o.id), false)
                    }
                    (None, true) => {
                        // A 2xx whose body is not an order: the order is unknown.
                        self.errors += 1;
                        self.bin(s.due).errors += 1;
                        (format!("{} unreadable", a.status), None, true)
                    }
                    _ => {
                        self.errors += 1;
                        if a.status == 503 {
                            self.shed += 1;
                        }
                        self.bin(s.due).errors += 1;
                        (a.code_label(), None, a.is_retryable())
                    }
                }
            }
            Err(f) => {
                self.errors += 1;
                *self.codes.entry(f.label()).or_default() += 1;
                self.bin(s.due).errors += 1;
                (f.label(), None, true)
            }
        };
        let first_of_its_kind = self.kinds.insert(first_answer.clone());
        self.affected.push(Affected {
            n: s.n,
            at_s: s.due.as_secs_f64(),
            product: self.products.get(s.product).cloned().unwrap_or_default(),
            idempotency_key: s.key,
            first_answer: first_answer.clone(),
            latency_ms: s.latency.as_secs_f64() * 1000.0,
            order_id,
            retryable,
            fate: Fate::default(),
        });
        first_of_its_kind.then_some(first_answer)
    }
}
