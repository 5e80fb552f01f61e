//! The dashboard's chart: orders per second by outcome and the latency of
//! placing an order, one point a second over the last five minutes. Read
//! from the order service's own `/metrics` (the counters and the histogram
//! Prometheus scrapes), once a second, so the chart and Grafana show the
//! same numbers; the gateway keeps only the last five minutes of them.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use valerix_runtime::telemetry::scrape::{self, Sample};

/// One point a second.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How far back the chart reaches.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Rates are the mean over this many seconds (a second alone is mostly 0
/// or 1 order and draws a comb, not a line).
const RATE_SECONDS: usize = 5;
/// Latency quantiles are taken over the orders of this many seconds.
const QUANTILE_SECONDS: usize = 10;

/// The order service's series the chart reads (names in docs/CONTRACT.md).
const ORDERS_TOTAL: &str = "valerix_orders_total";
const REQUESTS_TOTAL: &str = "http_requests_total";
const DURATION: &str = "http_request_duration_seconds";
const AVG_LATENCY: &str = "order_service_avg_latency_30s";
/// Placing an order, as the order service labels it.
const PLACE_ORDER: [(&str, &str); 3] = [
    ("service", "order-service"),
    ("method", "POST"),
    ("path", "/orders"),
];

/// One second of the chart. Every figure is absent when the order service
/// did not answer that second (the chart shows a gap).
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Point {
    /// When it was read, in milliseconds since the Unix epoch.
    pub t: i64,
    /// Orders that ended CONFIRMED, per second (mean of the last 5 s;
    /// `valerix_orders_total{status="CONFIRMED"}`), whether at once or by
    /// the reconciler.
    pub confirmed: Option<f64>,
    /// Orders that ended FAILED, per second (as above).
    pub failed: Option<f64>,
    /// Orders answered `202` (still pending), per second (as above;
    /// `http_requests_total` of `POST /orders` with status 202).
    pub pending: Option<f64>,
    /// Median seconds taken by `POST /orders` over the last 10 s (from
    /// `http_request_duration_seconds`' buckets, as Prometheus'
    /// `histogram_quantile` does); absent when no order was placed then.
    pub p50: Option<f64>,
    /// 99th percentile of the same.
    pub p99: Option<f64>,
    /// `order_service_avg_latency_30s`, the SLA's figure.
    pub avg_30s: Option<f64>,
}

/// The chart's data: the points after `after`, oldest first.
#[derive(Debug, Clone, Object)]
pub struct Activity {
    /// Seconds between points.
    pub interval_seconds: u64,
    /// How far back the points reach, in seconds.
    pub window_seconds: u64,
    pub points: Vec<Point>,
}

/// The counters of one scrape, as they stood.
#[derive(Debug, Clone, PartialEq)]
struct Counters {
    confirmed: f64,
    failed: f64,
    pending: f64,
    /// `(le, cumulative count)` of placing an order.
    buckets: Vec<(f64, f64)>,
    avg_30s: Option<f64>,
}

impl Counters {
    fn read(samples: &[Sample]) -> Self {
        let orders = |status| scrape::value(samples, ORDERS_TOTAL, &[("status", status)]);
        let mut answered_202 = PLACE_ORDER.to_vec();
        answered_202.push(("status_code", "202"));
        Self {
            confirmed: orders("CONFIRMED").unwrap_or(0.0),
            failed: orders("FAILED").unwrap_or(0.0),
            pending: scrape::value(samples, REQUESTS_TOTAL, &answered_202).unwrap_or(0.0),
            buckets: scrape::buckets(samples, DURATION, &PLACE_ORDER),
            avg_30s: scrape::value(samples, AVG_LATENCY, &[]),
        }
    }
}

/// What happened between two scrapes. A counter lower than before means
/// the order service restarted and counts from 0 again (Prometheus' rule
/// for `rate`): its new value is the increase.
#[derive(Debug, Clone, Default, PartialEq)]
struct Increase {
    confirmed: f64,
    failed: f64,
    pending: f64,
    buckets: Vec<(f64, f64)>,
}

fn increase(before: f64, now: f64) -> f64 {
    if now >= before { now - before } else { now }
}

impl Increase {
    fn between(before: &Counters, now: &Counters) -> Self {
        let same_buckets = before.buckets.len() == now.buckets.len()
            && before
                .buckets
                .iter()
                .zip(&now.buckets)
                .all(|(a, b)| a.0 == b.0);
        let reset = now
            .buckets
            .last()
            .zip(before.buckets.last())
            .is_some_and(|(n, b)| n.1 < b.1);
        let buckets = match same_buckets && !reset {
            true => before
                .buckets
                .iter()
                .zip(&now.buckets)
                .map(|(b, n)| (n.0, n.1 - b.1))
                .collect(),
            false => now.buckets.clone(),
        };
        Self {
            confirmed: increase(before.confirmed, now.confirmed),
            failed: increase(before.failed, now.failed),
            pending: increase(before.pending, now.pending),
            buckets,
        }
    }

    fn add(&mut self, other: &Increase) {
        self.confirmed += other.confirmed;
        self.failed += other.failed;
        self.pending += other.pending;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else if self.buckets.len() == other.buckets.len() {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
    }
}

/// The `q` quantile of cumulative buckets, interpolated within its bucket
/// as Prometheus' `histogram_quantile` does; None without observations.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Above the highest bound: that bound is all that is known.
                return Some(lower.0);
            }
            let within = count - lower.1;
            let share = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, count);
    }
    None
}

/// One second as read: what changed since the last answer, or nothing when
/// the order service did not answer.
#[derive(Debug, Clone)]
struct Tick {
    at: DateTime<Utc>,
    read: Option<Read>,
}

#[derive(Debug, Clone)]
struct Read {
    /// None for the first answer (nothing to compare it with yet).
    increase: Option<Increase>,
    avg_30s: Option<f64>,
}

/// The last five minutes of ticks.
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ticks: VecDeque<Tick>,
    last: Option<Counters>,
}

/// Ticks kept: the window plus what the oldest point's means look back on.
fn capacity() -> usize {
    (WINDOW.as_secs() / INTERVAL.as_secs()) as usize + QUANTILE_SECONDS
}

impl Recorder {
    /// One scrape of the order service's `/metrics` at `at`; None when it
    /// did not answer.
    pub fn record(&self, at: DateTime<Utc>, metrics: Option<&str>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let read = metrics.map(|text| {
            let now = Counters::read(&scrape::parse(text));
            let read = Read {
                increase: state.last.as_ref().map(|b| Increase::between(b, &now)),
                avg_30s: now.avg_30s,
            };
            state.last = Some(now);
            read
        });
        state.ticks.push_back(Tick { at, read });
        while state.ticks.len() > capacity() {
            state.ticks.pop_front();
        }
    }

    /// The points after `after` (milliseconds since the epoch), oldest
    /// first; all of the window without it.
    pub fn activity(&self, after: Option<i64>) -> Activity {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticks = state.ticks.make_contiguous();
        let first = ticks.len().saturating_sub(capacity() - QUANTILE_SECONDS);
        let points = (first..ticks.len())
            .filter(|&i| after.is_none_or(|a| ticks[i].at.timestamp_millis() > a))
            .map(|i| point(&ticks[..=i]))
            .collect();
        Activity {
            interval_seconds: INTERVAL.as_secs(),
            window_seconds: WINDOW.as_secs(),
            points,
        }
    }
}

/// The point of the last of `ticks`, from it and the ones before.
fn point(ticks: &[Tick]) -> Point {
    let Some(tick) = ticks.last() else {
        return empty(Utc::now());
    };
    let Some(read) = &tick.read else {
        return empty(tick.at);
    };
    let sum = |seconds: usize| -> Option<Increase> {
        let mut total: Option<Increase> = None;
        for t in ticks.iter().rev().take(seconds) {
            if let Some(inc) = t.read.as_ref().and_then(|r| r.increase.as_ref()) {
                total.get_or_insert_with(Increase::default).add(inc);
            }
        }
        total
    };
    let rates = read.increase.as_ref().and(sum(RATE_SECONDS));
    let per_second = |f: fn(&Increase) -> f64| {
        rates
            .as_ref()
            .map(|r| f(r) / (RATE_SECONDS as f64 * INTERVAL.as_secs_f64()))
    };
    let latency = read.increase.as_ref().and(sum(QUANTILE_SECONDS));
    let buckets = latency.as_ref().map_or(&[][..], |l| &l.buckets[..]);
    Point {
        t: tick.at.timestamp_millis(),
        confirmed: per_second(|r| r.confirmed),
        failed: per_second(|r| r.failed),
        pending: per_second(|r| r.pending),
        p50: quantile(0.5, buckets),
        p99: quantile(0.99, buckets),
        avg_30s: read.avg_30s,
    }
}

fn empty(at: DateTime<Utc>) -> Point {
    Point {
        t: at.timestamp_millis(),
        confirmed: None,
        failed: None,
        pending: None,
        p50: None,
        p99: None,
        avg_30s: None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    /// The order service's metrics after `confirmed`, `failed`, `pending`
    /// orders, with the placement latencies in `le` buckets.
    fn metrics(confirmed: u32, failed: u32, pending: u32, buckets: [u32; 3]) -> String {
        let place = r#"service="order-service",method="POST",path="/orders""#;
        format!(
            "# TYPE valerix_orders_total counter\n\
             valerix_orders_total{{status=\"CONFIRMED\",reason=\"\"}} {confirmed}\n\
             valerix_orders_total{{status=\"FAILED\",reason=\"OUT_OF_STOCK\"}} {failed}\n\
             valerix_orders_total{{status=\"FAILED\",reason=\"EXPIRED\"}} 0\n\
             http_requests_total{{{place},status_code=\"201\"}} {confirmed}\n\
             http_requests_total{{{place},status_code=\"202\"}} {pending}\n\
             http_request_duration_seconds_bucket{{{place},le=\"0.1\"}} {}\n\
             http_request_duration_seconds_bucket{{{place},le=\"1\"}} {}\n\
             http_request_duration_seconds_bucket{{{place},le=\"+Inf\"}} {}\n\
             http_request_duration_seconds_bucket{{service=\"order-service\",method=\"GET\",path=\"/orders\",le=\"+Inf\"}} 99\n\
             order_service_avg_latency_30s 0.25\n",
            buckets[0], buckets[1], buckets[2],
        )
    }

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::seconds(1_700_000_000 + second)
    }

    #[test]
    fn rates_are_five_second_means_and_survive_a_restart() {
        let r = Recorder::default();
        r.record(at(0), Some(&metrics(10, 1, 0, [5, 10, 11])));
        // Ten confirmed and five pending in the next second.
        r.record(at(1), Some(&metrics(20, 1, 5, [10, 20, 26])));
        let a = r.activity(None);
        assert_eq!(a.points.len(), 2);
        assert_eq!(
            a.points[0].confirmed, None,
            "nothing to compare the first with"
        );
        assert_eq!(a.points[0].avg_30s, Some(0.25));
        assert_eq!(a.points[1].confirmed, Some(2.0));
        assert_eq!(a.points[1].failed, Some(0.0));
        assert_eq!(a.points[1].pending, Some(1.0));

        // The order service down for a second, then back from 0.
        r.record(at(2), None);
        r.record(at(3), Some(&metrics(5, 0, 0, [5, 5, 5])));
        let a = r.activity(Some(at(1).timestamp_millis()));
        assert_eq!(a.points.len(), 2, "only the points after `after`");
        assert_eq!(a.points[0].confirmed, None, "a gap while it did not answer");
        assert_eq!(a.points[0].t, at(2).timestamp_millis());
        assert_eq!(a.points[1].confirmed, Some(3.0), "(10 + 5) / 5 s");
        assert_eq!(
            a.points[1].p50,
            Some(0.1),
            "10 of the 20 recent orders under 100 ms"
        );
    }

    #[test]
    fn latency_quantiles_follow_the_buckets() {
        let r = Recorder::default();
        r.record(at(0), Some(&metrics(0, 0, 0, [0, 0, 0])));
        // 100 orders: 50 under 100 ms, 40 more under 1 s, 10 slower.
        r.record(at(1), Some(&metrics(100, 0, 0, [50, 90, 100])));
        let p = r.activity(None).points[1].clone();
        assert_eq!(p.p50, Some(0.1));
        assert_eq!(p.p99, Some(1.0), "above the highest bound: that bound");
        // Quiet for ten seconds: no latency to speak of.
        for s in 2..=11 {
            r.record(at(s), Some(&metrics(100, 0, 0, [50, 90, 100])));
        }
        let last = r.activity(None).points.pop().expect("points");
        assert_eq!((last.p50, last.p99), (None, None));
        assert_eq!(last.confirmed, Some(0.0));
    }

    #[test]
    fn keeps_five_minutes() {
        let r = Recorder::default();
        for s in 0..1000 {
            r.record(at(s), Some(&metrics(s as u32, 0, 0, [0, 0, 0])));
        }
        let a = r.activity(None);
        assert_eq!(a.points.len(), 300);
        assert_eq!(a.points[0].t, at(700).timestamp_millis());
        assert!(a.points.iter().all(|p| p.confirmed == Some(1.0)));
    }

    #[test]
    fn quantile_interpolates_within_a_bucket() {
        let b = [(0.1, 0.0), (0.5, 10.0), (f64::INFINITY, 10.0)];
        let median = quantile(0.5, &b).expect("observations");
        assert!((median - 0.3).abs() < 1e-9, "{median}");
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
    }
}
