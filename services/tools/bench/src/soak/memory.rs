//! What the soak measures: each watched process's resident memory
//! (VmRSS) sampled as the orders go by, and its growth after the warm-up.

use std::{sync::atomic::Ordering, time::Duration};

use anyhow::{Context, bail};
use valerix_load::drive::Live;

use crate::median;

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// A process whose memory is judged.
#[derive(Debug, Clone)]
pub(super) struct Watched {
    pub(super) name: &'static str,
    pub(super) pid: u32,
}

/// One look at every watched process.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) at: Duration,
    /// Orders answered (or failed) so far.
    pub(super) orders: u64,
    pub(super) errors: u64,
    /// VmRSS in bytes, in the order of the watched processes (None: gone).
    pub(super) rss: Vec<Option<u64>>,
}

/// VmRSS of a process, in bytes.
pub(super) fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The machine's load averages, as `uptime` shows them.
pub(super) fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(super) fn sample(watched: &[Watched], live: &Live, at: Duration) -> Sample {
    Sample {
        at,
        orders: live.done.load(Ordering::Relaxed),
        errors: live.errors.load(Ordering::Relaxed),
        rss: watched.iter().map(|w| rss(w.pid)).collect(),
    }
}

/// What became of one process after warm-up.
pub(super) struct Growth {
    pub(super) name: &'static str,
    pub(super) warmed: f64,
    pub(super) end: f64,
    /// end - warmed, bytes.
    pub(super) growth: f64,
    /// growth per 100 000 orders after warm-up, bytes.
    pub(super) per_100k: f64,
    /// The least-squares slope of RSS over orders after warm-up, per 100 000 orders.
    pub(super) trend_per_100k: f64,
    pub(super) peak: f64,
}

/// Least-squares slope of y over x.
pub(super) fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den > 0.0 { num / den } else { 0.0 }
}

/// Growth of each process between the warm-up and the end. Each end is the
/// median of three samples, so one allocator hiccup decides nothing.
pub(super) fn growth(
    watched: &[Watched],
    samples: &[Sample],
    warmup_orders: u64,
) -> anyhow::Result<Vec<Growth>> {
    let Some(w) = samples.iter().position(|s| s.orders >= warmup_orders) else {
        bail!(
            "the run ended before {warmup_orders} orders warmed the processes up (--warmup-orders)"
        );
    };
    let after = &samples[w..];
    if after.len() < 6 {
        bail!(
            "only {} samples after the warm-up: run longer, or sample more often (--sample-every)",
            after.len()
        );
    }
    let (first, last) = (&after[..3], &after[after.len() - 3..]);
    let orders = |s: &[Sample]| median(&s.iter().map(|s| s.orders as f64).collect::<Vec<_>>());
    let span = (orders(last) - orders(first)).max(1.0);
    watched
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = |s: &[Sample]| -> anyhow::Result<f64> {
                let v: Option<Vec<f64>> = s.iter().map(|s| s.rss[i].map(|b| b as f64)).collect();
                v.map(|v| median(&v))
                    .with_context(|| format!("{} exited during the soak", p.name))
            };
            let (warmed, end) = (at(first)?, at(last)?);
            let points: Vec<(f64, f64)> = after
                .iter()
                .filter_map(|s| Some((s.orders as f64, s.rss[i]? as f64)))
                .collect();
            Ok(Growth {
                name: p.name,
                warmed,
                end,
                growth: end - warmed,
                per_100k: (end - warmed) / span * 100_000.0,
                trend_per_100k: slope(&points) * 100_000.0,
                peak: points.iter().map(|p| p.1).fold(0.0, f64::max),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 1000 orders of one process whose RSS is `rss(orders)`.
    fn series(n: u64, rss: impl Fn(u64) -> u64) -> Vec<Sample> {
        (0..=n)
            .map(|i| Sample {
                at: Duration::from_secs(i),
                orders: i * 1000,
                errors: 0,
                rss: vec![Some(rss(i * 1000))],
            })
            .collect()
    }

    fn one() -> Vec<Watched> {
        vec![Watched {
            name: "order-service",
            pid: 0,
        }]
    }

    #[test]
    fn a_leak_of_80_bytes_per_order_shows_after_the_warm_up() {
        // Warm-up growth of 10 MiB in the first 5000 orders, then 80 B/order.
        let samples = series(60, |o| {
            let warm = if o < 5000 { o * 2097 } else { 10 << 20 };
            (20 << 20) + warm + o.saturating_sub(5000) * 80
        });
        let g = &growth(&one(), &samples, 5000).expect("enough samples")[0];
        // 55 000 orders after warm-up (less the medians' first and last one).
        assert!((g.growth / MIB - 4.0).abs() < 0.2, "{}", g.growth / MIB);
        assert!((g.per_100k / MIB - 7.6).abs() < 0.2, "{}", g.per_100k / MIB);
        assert!((g.trend_per_100k / MIB - 7.6).abs() < 0.2);
    }

    #[test]
    fn flat_memory_with_one_spike_grows_by_nothing() {
        let samples = series(60, |o| {
            if o == 30_000 {
                40 << 20
            } else {
                (30 << 20) + (o % 3000)
            }
        });
        let g = &growth(&one(), &samples, 5000).expect("enough samples")[0];
        assert!(g.growth.abs() < 4096.0, "{}", g.growth);
        assert_eq!(g.peak, f64::from(40 << 20));
    }

    #[test]
    fn a_run_too_short_for_its_warm_up_is_an_error() {
        let samples = series(10, |_| 1 << 20);
        assert!(growth(&one(), &samples, 20_000).is_err());
        assert!(
            growth(&one(), &samples, 8000).is_err(),
            "3 samples after warm-up"
        );
    }
}
