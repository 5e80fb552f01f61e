//! The soak's Markdown report: the run, each process's memory after the
//! warm-up against the limit, and the samples.

use std::fmt::Write as _;

use super::{
    super::machine,
    Run, SoakArgs,
    memory::{MIB, Sample, Watched, growth},
};

/// The Markdown report, and whether every process stayed within the limit.
pub(super) fn report(
    args: &SoakArgs,
    watched: &[Watched],
    base: &str,
    otlp: &str,
    products: usize,
    run: &Run,
) -> anyhow::Result<(String, bool)> {
    let growth = growth(watched, &run.samples, args.warmup_orders)?;
    let limit = args.max_growth_mib * MIB;
    let pass = growth.iter().all(|g| g.growth <= limit);
    let tally = &run.tally;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "## Valerix soak, {}\n",
        run.started.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        m,
        "- machine: {}; {} build; load averages (1, 5, 15 min) {} at the start, {} at the end",
        machine(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        run.load.0,
        run.load.1
    );
    let _ = writeln!(
        m,
        "- {} orders in {:.0} s at {:.0}/s ({:.0}% of the peak of {:.0}/s measured with {} clients; open model, at most {} in flight), {products} products, each order with an Idempotency-Key (kept {} s); {}",
        tally.sent,
        run.elapsed.as_secs_f64(),
        run.rate,
        run.rate / run.peak * 100.0,
        run.peak,
        args.peak_clients,
        args.peak_clients.max(1),
        args.key_retention_secs,
        if args.no_gateway {
            format!("straight at the order service (`{base}/orders`)")
        } else {
            format!("through the API gateway (`{base}/orders`)")
        }
    );
    let confirmed = tally.statuses.get("CONFIRMED").copied().unwrap_or(0);
    let errors: Vec<String> = tally
        .codes
        .iter()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(code, n)| format!("{n} `{code}`"))
        .collect();
    let _ = writeln!(
        m,
        "- nothing scraped `/metrics`; traces exported to `{otlp}`, where nothing listens; answers: {confirmed} confirmed, {} other 2xx, {} errors{}",
        tally.acknowledged - confirmed,
        tally.errors,
        if errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", errors.join(", "))
        }
    );
    let _ = writeln!(
        m,
        "- resident memory (VmRSS) sampled every {:.0} s; warmed up after {} orders\n",
        run.every.as_secs_f64(),
        args.warmup_orders
    );
    samples_table(&mut m, watched, &run.samples);
    let _ = writeln!(
        m,
        "\n| process | warmed up MiB | end MiB | peak MiB | growth after warm-up | per 100 000 orders | trend per 100 000 orders | verdict |\n|---|---|---|---|---|---|---|---|"
    );
    for g in &growth {
        let _ = writeln!(
            m,
            "| {} | {:.1} | {:.1} | {:.1} | {:+.2} MiB | {:+.2} MiB | {:+.2} MiB | {} |",
            g.name,
            g.warmed / MIB,
            g.end / MIB,
            g.peak / MIB,
            g.growth / MIB,
            g.per_100k / MIB,
            g.trend_per_100k / MIB,
            if g.growth <= limit { "ok" } else { "GREW" }
        );
    }
    let _ = writeln!(
        m,
        "\n(warmed up and end: the median of three samples; trend: the least-squares slope of every sample after warm-up)\n"
    );
    if let Some(keys) = run.keys {
        let _ = writeln!(
            m,
            "idempotency_keys rows at the end: {keys} (keys older than {} s are purged)\n",
            args.key_retention_secs
        );
    }
    let _ = writeln!(
        m,
        "**{}: {} process grew by more than {} MiB after warm-up**",
        if pass { "OK" } else { "FAIL" },
        if pass { "no" } else { "a" },
        args.max_growth_mib
    );
    Ok((m, pass))
}

/// About 30 rows of samples, the first and the last always.
pub(super) fn samples_table(m: &mut String, watched: &[Watched], samples: &[Sample]) {
    let _ = write!(m, "| t (s) | orders | errors |");
    for w in watched {
        let _ = write!(m, " {} MiB |", w.name);
    }
    let _ = writeln!(m, "\n|---|---|---|{}", "---|".repeat(watched.len()));
    let step = samples.len().div_ceil(30).max(1);
    for (i, s) in samples.iter().enumerate() {
        if i % step != 0 && i + 1 != samples.len() {
            continue;
        }
        let _ = write!(
            m,
            "| {:.0} | {} | {} |",
            s.at.as_secs_f64(),
            s.orders,
            s.errors
        );
        for r in &s.rss {
            let _ = match r {
                Some(b) => write!(m, " {:.1} |", *b as f64 / MIB),
                None => write!(m, " gone |"),
            };
        }
        let _ = writeln!(m);
    }
}
