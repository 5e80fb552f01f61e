//! The run's report: one structure, written as JSON (for tools) and as
//! Markdown (for people; also what `valerix load` prints at the end).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::{
    follow::Followed,
    progress::Event,
    scenario::GremlinWindow,
    tally::{Affected, Outcome, Percentiles, Tally},
};

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Where orders went.
    pub target: String,
    /// `open` (fixed arrival rate) or `closed` (clients back to back).
    pub model: &'static str,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub duration_s: Option<f64>,
    pub orders: Option<u64>,
    pub products: Vec<String>,
    pub quantity: i32,
    pub gremlin: Option<GremlinWindow>,
    pub idempotency_keys: bool,
    pub settle_within_s: f64,
}

impl RunConfig {
    /// One line: where, how, how long, what.
    pub fn describe(&self) -> String {
        let c = self;
        let how = match (c.rate, c.concurrency) {
            (Some(r), _) => format!("open model, {r} orders/s"),
            (_, Some(n)) => format!("closed model, {n} clients"),
            _ => String::new(),
        };
        let until = match (c.duration_s, c.orders) {
            (Some(d), _) => format!("for {d} s"),
            (_, Some(n)) => format!("until {n} orders"),
            _ => String::new(),
        };
        let products = match c.products.as_slice() {
            [one] => format!("hot product {one}"),
            many => format!("spread over {} products ({})", many.len(), many.join(", ")),
        };
        let gremlin = c.gremlin.map_or("no gremlin".to_owned(), |g| g.describe());
        format!(
            "`POST {}` · {how} {until} · {products} · quantity {} · {gremlin}",
            c.target, c.quantity
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub sent: u64,
    /// Got an HTTP answer (any status).
    pub answered: u64,
    /// 2xx with an order.
    pub acknowledged: u64,
    /// Not a 2xx order: an error status or no answer at all.
    pub errors: u64,
    /// 503: refused by load shedding (or a dependency being down).
    pub shed: u64,
    /// From the start to the last answer.
    pub load_s: f64,
    /// Answers per second.
    pub throughput: f64,
    /// Acknowledged orders per second.
    pub acknowledged_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    pub from_s: f64,
    pub sent: u64,
    pub confirmed: u64,
    pub processing: u64,
    pub failed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Affected orders grouped by first answer and final status.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub first_answer: String,
    pub became: String,
    pub count: u64,
    pub settled_after_p50_ms: Option<f64>,
    pub settled_after_max_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub ok: bool,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: DateTime<Utc>,
    pub config: RunConfig,
    pub totals: Totals,
    /// Every answered request, ms from when it was due.
    pub latency_ms: Percentiles,
    /// 2xx answers only.
    pub latency_ok_ms: Percentiles,
    pub status_codes: BTreeMap<String, u64>,
    /// The status the 2xx answers gave.
    pub order_statuses: BTreeMap<String, u64>,
    pub timeline: Vec<TimelineRow>,
    pub events: Vec<Event>,
    pub followed: Followed,
    pub transitions: Vec<Transition>,
    pub affected: Vec<Affected>,
    pub verdict: Verdict,
}

fn became(a: &Affected) -> String {
    match (a.fate.outcome, &a.fate.final_status) {
        (Outcome::Settled, Some(s)) => match &a.fate.failure_reason {
            Some(r) => format!("{s} {r}"),
            None => s.clone(),
        },
        (Outcome::Stuck, Some(s)) => format!("STUCK in {s}"),
        (o, _) => o.name().to_owned(),
    }
}

fn transitions(affected: &[Affected]) -> Vec<Transition> {
    let mut groups: BTreeMap<(String, String), Vec<&Affected>> = BTreeMap::new();
    for a in affected {
        let became = match (a.fate.resolved_by_retry, became(a)) {
            (true, b) => format!("{b} (after a retry)"),
            (false, b) => b,
        };
        groups
            .entry((a.first_answer.clone(), became))
            .or_default()
            .push(a);
    }
    groups
        .into_iter()
        .map(|((first_answer, became), list)| {
            let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
            for ms in list.iter().filter_map(|a| a.fate.settled_after_ms) {
                let _ = h.record((ms * 1000.0) as u64);
            }
            let (p50, max) = if h.is_empty() {
                (None, None)
            } else {
                (
                    Some(h.value_at_quantile(0.5) as f64 / 1000.0),
                    Some(h.max() as f64 / 1000.0),
                )
            };
            Transition {
                first_answer,
                became,
                count: list.len() as u64,
                settled_after_p50_ms: p50,
                settled_after_max_ms: max,
            }
        })
        .collect()
}

impl Report {
    pub fn new(
        started_at: DateTime<Utc>,
        config: RunConfig,
        tally: Tally,
        events: Vec<Event>,
        followed: Followed,
    ) -> Self {
        let mut tally = tally;
        tally.affected.sort_by_key(|a| a.n);
        let load_s = tally.last_answer.as_secs_f64();
        let per_s = |n: u64| if load_s > 0.0 { n as f64 / load_s } else { 0.0 };
        let timeline = tally
            .bins
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let p = Percentiles::of(&b.latency);
                TimelineRow {
                    from_s: i as f64 * tally.bin_width.as_secs_f64(),
                    sent: b.sent,
                    confirmed: b.confirmed,
                    processing: b.processing,
                    failed: b.failed,
                    errors: b.errors,
                    p50_ms: p.p50,
                    p99_ms: p.p99,
                }
            })
            .collect();
        let mut problems = Vec::new();
        if followed.lost > 0 {
            problems.push(format!("{} LOST", followed.lost));
        }
        if followed.stuck > 0 {
            problems.push(format!("{} STUCK", followed.stuck));
        }
        if followed.changed > 0 {
            problems.push(format!("{} changed after settling", followed.changed));
        }
        let verdict = if problems.is_empty() {
            Verdict {
                ok: true,
                summary: format!(
                    "OK: nothing lost, nothing stuck ({} acknowledged orders read back, {} affected, all settled)",
                    followed.verified,
                    tally.affected.len()
                ),
            }
        } else {
            Verdict {
                ok: false,
                summary: format!("FAILED: {}", problems.join(", ")),
            }
        };
        Self {
            started_at,
            totals: Totals {
                sent: tally.sent,
                answered: tally.answered,
                acknowledged: tally.acknowledged,
                errors: tally.errors,
                shed: tally.shed,
                load_s,
                throughput: per_s(tally.answered),
                acknowledged_per_s: per_s(tally.acknowledged),
            },
            latency_ms: Percentiles::of(&tally.all),
            latency_ok_ms: Percentiles::of(&tally.ok),
            status_codes: tally.codes,
            order_statuses: tally.statuses,
            timeline,
            events,
            transitions: transitions(&tally.affected),
            affected: tally.affected,
            followed,
            config,
            verdict,
        }
    }

    /// The report in Markdown; `max_affected` caps the list of affected
    /// orders (the JSON always has all of them).
    pub fn markdown(&self, max_affected: Option<usize>) -> String {
        let mut m = String::new();
        let t = &self.totals;
        let _ = writeln!(
            m,
            "# Valerix load report, {}\n",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = writeln!(m, "{}\n", self.config.describe());
        let _ = writeln!(m, "**{}**\n", self.verdict.summary);
        let _ = writeln!(m, "| | |\n|---|---|");
        let _ = writeln!(m, "| orders sent | {} |", t.sent);
        let _ = writeln!(
            m,
            "| answered | {} ({} acknowledged, {} errors, {} shed with 503) |",
            t.answered, t.acknowledged, t.errors, t.shed
        );
        let _ = writeln!(
            m,
            "| throughput | {:.1} answers/s, {:.1} acknowledged orders/s over {:.1} s |",
            t.throughput, t.acknowledged_per_s, t.load_s
        );
        let f = &self.followed;
        let _ = writeln!(
            m,
            "| followed | {} read back, {} resolved by retry, {} lost, {} stuck, {} changed, in {:.1} s |\n",
            f.verified, f.resolved, f.lost, f.stuck, f.changed, f.took_s
        );

        let _ = writeln!(
            m,
            "## Latency (ms, from when each order was due)\n\n| answers | count | p50 | p90 | p99 | p99.9 | max | mean |\n|---|---|---|---|---|---|---|---|"
        );
        for (name, p) in [("all", &self.latency_ms), ("2xx", &self.latency_ok_ms)] {
            let _ = writeln!(
                m,
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                p.count, p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean
            );
        }

        let _ = writeln!(m, "\n## Answers\n\n| status code | count |\n|---|---|");
        for (code, n) in &self.status_codes {
            let _ = writeln!(m, "| {code} | {n} |");
        }
        let _ = writeln!(m, "\n| order status in the answer | count |\n|---|---|");
        for (status, n) in &self.order_statuses {
            let _ = writeln!(m, "| {status} | {n} |");
        }

        if !self.events.is_empty() {
            let _ = writeln!(m, "\n## Events\n\n| at (s) | what |\n|---|---|");
            for e in &self.events {
                let _ = writeln!(m, "| {:.1} | {} |", e.at_s, e.what);
            }
        }

        let _ = writeln!(
            m,
            "\n## Timeline (by when orders were due)\n\n| from (s) | sent | CONFIRMED | PENDING_* | FAILED | errors | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|"
        );
        for r in &self.timeline {
            let _ = writeln!(
                m,
                "| {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                r.from_s, r.sent, r.confirmed, r.processing, r.failed, r.errors, r.p50_ms, r.p99_ms
            );
        }

        let _ = writeln!(
            m,
            "\n## Affected orders: {}\n\nAnswered PENDING_*, FAILED or an error; each followed until it settled.\n",
            self.affected.len()
        );
        if !self.transitions.is_empty() {
            let _ = writeln!(
                m,
                "| first answer | became | count | settled after p50 (ms) | max (ms) |\n|---|---|---|---|---|"
            );
            let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
            for tr in &self.transitions {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} |",
                    tr.first_answer,
                    tr.became,
                    tr.count,
                    opt(tr.settled_after_p50_ms),
                    opt(tr.settled_after_max_ms)
                );
            }
            let shown = max_affected.unwrap_or(usize::MAX).min(self.affected.len());
            let _ = writeln!(
                m,
                "\n| # | due (s) | product | order | first answer | latency (ms) | became | settled after (ms) |\n|---|---|---|---|---|---|---|---|"
            );
            for a in &self.affected[..shown] {
                let _ = writeln!(
                    m,
                    "| {} | {:.2} | {} | {} | {} | {:.1} | {} | {} |",
                    a.n,
                    a.at_s,
                    a.product,
                    a.order_id.map_or("-".to_owned(), |id| id.to_string()),
                    a.first_answer,
                    a.latency_ms,
                    became(a),
                    a.fate
                        .settled_after_ms
                        .map_or("-".to_owned(), |v| format!("{v:.0}")),
                );
            }
            if shown < self.affected.len() {
                let _ = writeln!(
                    m,
                    "\n... and {} more (all of them are in the report files).",
                    self.affected.len() - shown
                );
            }
        }
        m
    }

    /// Writes `load-<time>.md` and `load-<time>.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = format!("load-{}", self.started_at.format("%Y%m%d-%H%M%S"));
        let md = dir.join(format!("{stem}.md"));
        let json = dir.join(format!("{stem}.json"));
        std::fs::write(&md, self.markdown(None))
            .with_context(|| format!("writing {}", md.display()))?;
        let body = serde_json::to_vec_pretty(self).context("encoding the report")?;
        std::fs::write(&json, body).with_context(|| format!("writing {}", json.display()))?;
        Ok((md, json))
    }
}
