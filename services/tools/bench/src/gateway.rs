//! What the API gateway costs: the same orders straight at the order
//! service and through the gateway, at a few client counts, the two
//! alternating round by round (which of them goes first alternating too),
//! so that a slow spell of a shared machine falls on both. The ratio of
//! their throughputs is what a user loses by putting the gateway in front;
//! the gateway's own CPU per order says where.

use std::fmt::Write as _;

use valerix_load::target::OrderTarget;

use crate::{
    BenchArgs, Mix,
    measure::{Measured, Runs, e2e},
    report::mix_name,
    stack::Stack,
};

/// The least share of the direct throughput the gateway keeps, by client
/// count; client counts not named here are measured but not judged.
pub(crate) const OBJECTIVES: &[(usize, f64, &str)] = &[
    (
        16,
        0.95,
        "through the gateway ≥ 0.95 of straight at the order service, 16 clients",
    ),
    (
        64,
        0.90,
        "through the gateway ≥ 0.90 of straight at the order service, 64 clients",
    ),
];

/// One mix at one client count, both ways.
pub(crate) struct GatewayCell {
    pub(crate) mix: Mix,
    pub(crate) clients: usize,
    pub(crate) direct: Runs,
    pub(crate) via: Runs,
    /// Through the gateway over straight, round by round (each pair ran
    /// back to back).
    pub(crate) pairs: Vec<f64>,
}

impl GatewayCell {
    /// Of the medians.
    pub(crate) fn ratio(&self) -> f64 {
        self.via.median().per_s() / self.direct.median().per_s().max(1e-9)
    }

    /// The lowest and highest ratio of one round's pair.
    pub(crate) fn pair_range(&self) -> (f64, f64) {
        let lo = self.pairs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.pairs.iter().copied().fold(0.0, f64::max);
        (lo, hi)
    }
}

/// Every mix at every `--gateway-concurrency`, `--rounds` pairs each.
pub(crate) async fn measure(
    args: &BenchArgs,
    stack: &Stack,
    direct: &OrderTarget,
    via: &OrderTarget,
    mixes: &[(Mix, Vec<String>)],
) -> anyhow::Result<Vec<GatewayCell>> {
    let mut cells = Vec::new();
    for (mix, products) in mixes {
        for &clients in &args.gateway_concurrency {
            let (mut straight, mut through, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..args.rounds.max(1) {
                let order = if round % 2 == 0 {
                    [direct, via]
                } else {
                    [via, direct]
                };
                let mut pair: Vec<Measured> = Vec::new();
                for target in order {
                    stack.reset().await?;
                    pair.push(e2e(target, products, clients, args, &stack.roles()).await);
                    stack.check_settled().await?;
                }
                let (first, second) = (pair.remove(0), pair.remove(0));
                let (d, v) = if round % 2 == 0 {
                    (first, second)
                } else {
                    (second, first)
                };
                pairs.push(v.per_s() / d.per_s().max(1e-9));
                straight.push(d);
                through.push(v);
            }
            let cell = GatewayCell {
                mix: *mix,
                clients,
                direct: Runs::new(straight),
                via: Runs::new(through),
                pairs,
            };
            let (lo, hi) = cell.pair_range();
            eprintln!(
                "{:<20} x{clients:<3} straight {:>18}/s (p99 {:>6.1} ms)   through the gateway {:>18}/s (p99 {:>6.1} ms)   {:.2} ({lo:.2}–{hi:.2})",
                mix_name(*mix, args.spread),
                cell.direct.cell(),
                cell.direct.median().pct().p99,
                cell.via.cell(),
                cell.via.median().pct().p99,
                cell.ratio(),
            );
            cells.push(cell);
        }
    }
    Ok(cells)
}

/// The table of the gateway's cost, in Markdown.
pub(crate) fn table(cells: &[GatewayCell], spread: usize, rounds: usize) -> String {
    let mut m = String::from(
        "| mix | N | straight at the order service orders/s | p50 / p99 ms | through the gateway orders/s | p50 / p99 ms | gateway CPU per order µs | ratio (each round's pair) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        let (d, v) = (c.direct.median().pct(), c.via.median().pct());
        let cpu = c
            .via
            .median()
            .gateway_cpu_per_order()
            .map_or_else(|| "–".to_owned(), |us| format!("{us:.0}"));
        let (lo, hi) = c.pair_range();
        let _ = writeln!(
            m,
            "| {} | {} | {} | {:.1} / {:.1} | {} | {:.1} / {:.1} | {cpu} | **{:.2}** ({lo:.2}–{hi:.2}) |",
            mix_name(c.mix, spread),
            c.clients,
            c.direct.cell(),
            d.p50,
            d.p99,
            c.via.cell(),
            v.p50,
            v.p99,
            c.ratio(),
        );
    }
    let _ = writeln!(
        m,
        "\nOrders/s: the median of {rounds} rounds (lowest–highest); the ratio of the medians, and in brackets the lowest and highest ratio of one round's two runs (run back to back, which of them first alternating); latencies and the gateway's CPU (from /proc) from the median round."
    );
    m
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::measure::Measured;

    fn run(orders: u64) -> Measured {
        let mut h = crate::histogram();
        for _ in 0..orders {
            h.record(1000).expect("in range");
        }
        Measured::new(h, Duration::from_secs(1), 0)
    }

    #[test]
    fn the_ratio_is_of_the_medians_and_the_range_of_the_pairs() {
        let cell = GatewayCell {
            mix: Mix::Hot,
            clients: 16,
            direct: Runs::new(vec![run(100), run(110), run(90)]),
            via: Runs::new(vec![run(95), run(99), run(81)]),
            pairs: vec![0.95, 0.90, 0.90],
        };
        assert!((cell.ratio() - 0.95).abs() < 1e-9);
        assert_eq!(cell.pair_range(), (0.90, 0.95));
        let t = table(&[cell], 32, 3);
        assert!(t.contains("| hot (1 product) | 16 | 100 (90–110) |"), "{t}");
        assert!(t.contains("| **0.95** (0.90–0.95) |"), "{t}");
    }
}
