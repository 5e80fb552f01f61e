//! `valerix soak`: memory that must stay flat. Drives the stack at a fixed
//! share of its peak for a long while, the way it runs when nobody watches:
//! nothing scrapes `/metrics`, and the OTLP endpoint is a closed port, so
//! whatever is kept for a scraper or an exporter has to be bounded on its
//! own. It samples each process's resident memory (VmRSS) as the orders go
//! by and judges the growth after a warm-up: a structure that grows with
//! traffic shows as growth per order, which a short run at a few hundred
//! orders per second makes visible long before it would kill a service.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Args;
use tokio::{sync::watch, time::Instant};

use valerix_load::{
    drive::{self, Arrival, Live, Plan, Until},
    parse_duration,
    tally::Tally,
    target::OrderTarget,
};
use valerix_stack::{Service, StackBuilder, free_port};

use super::{Transport, machine, parse_env, stack::Stack};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long to drive orders once the peak is known: 30m, 300s
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub duration: Duration,

    /// Stop after this many orders instead (whichever comes first)
    #[arg(long)]
    pub orders: Option<u64>,

    /// Orders per second [default: --share of the peak, measured first]
    #[arg(long, conflicts_with = "share")]
    pub rate: Option<f64>,

    /// The share of the measured peak to drive at
    #[arg(long, default_value_t = 0.5)]
    pub share: f64,

    /// Clients of the closed-model run that measures the peak, and the most
    /// orders the soak has in flight
    #[arg(long, default_value_t = 16)]
    pub peak_clients: usize,

    /// How long the peak is measured
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub peak_for: Duration,

    /// Orders after which the processes count as warmed up (connections,
    /// caches, allocator arenas); growth is measured from there
    #[arg(long, default_value_t = 10_000)]
    pub warmup_orders: u64,

    /// Verdict: fail when any process grew by more than this after warm-up (MiB)
    #[arg(long, default_value_t = 2.0)]
    pub max_growth_mib: f64,

    /// How often the processes' memory is sampled [default: a 60th of the run, 1–30 s]
    #[arg(long, value_parser = parse_duration)]
    pub sample_every: Option<Duration>,

    /// Orders straight at the order service; by default they go through
    /// the API gateway, so its memory is judged too
    #[arg(long)]
    pub no_gateway: bool,

    /// How long the order service keeps an Idempotency-Key (every order
    /// carries one), short so that the purge runs during the soak
    #[arg(long, default_value_t = 60)]
    pub key_retention_secs: u64,

    /// How the services call each other and reach PostgreSQL
    #[arg(long, value_enum, default_value = "unix")]
    pub transport: Transport,

    /// KEY=VALUE in every service's environment (repeatable)
    #[arg(long = "service-env", value_parser = parse_env)]
    pub service_env: Vec<(String, String)>,

    /// Also write the report to this file
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A process whose memory is judged.
#[derive(Debug, Clone)]
struct Watched {
    name: &'static str,
    pid: u32,
}

/// One look at every watched process.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    /// Orders answered (or failed) so far.
    orders: u64,
    errors: u64,
    /// VmRSS in bytes, in the order of the watched processes (None: gone).
    rss: Vec<Option<u64>>,
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> Option<u64> {
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
fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn sample(watched: &[Watched], live: &Live, at: Duration) -> Sample {
    Sample {
        at,
        orders: live.done.load(Ordering::Relaxed),
        errors: live.errors.load(Ordering::Relaxed),
        rss: watched.iter().map(|w| rss(w.pid)).collect(),
    }
}

/// What became of one process after warm-up.
struct Growth {
    name: &'static str,
    warmed: f64,
    end: f64,
    /// end - warmed, bytes.
    growth: f64,
    /// growth per 100 000 orders after warm-up, bytes.
    per_100k: f64,
    /// The least-squares slope of RSS over orders after warm-up, per 100 000 orders.
    trend_per_100k: f64,
    peak: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
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
fn growth(
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
    let orders = |s: &[Sample]| median(s.iter().map(|s| s.orders as f64).collect());
    let span = (orders(last) - orders(first)).max(1.0);
    watched
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = |s: &[Sample]| -> anyhow::Result<f64> {
                let v: Option<Vec<f64>> = s.iter().map(|s| s.rss[i].map(|b| b as f64)).collect();
                v.map(median)
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

/// Runs the soak; Ok(false) when a process grew past the limit.
pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build: fewer orders per second than a release build");
    }
    // Nothing listens there: every export fails at once, as with a
    // collector that is down, and the spans must be dropped, not kept.
    let otlp = format!("http://127.0.0.1:{}", free_port()?);
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), otlp.clone()),
        (
            "VALERIX_IDEMPOTENCY_RETENTION_SECS".to_owned(),
            args.key_retention_secs.to_string(),
        ),
    ];
    env.extend(args.service_env.iter().cloned());
    eprintln!("starting a throwaway PostgreSQL and the services...");
    let stack = Stack::start(env.clone(), args.transport, false, false).await?;
    let result = soak(&args, &stack, &env, &otlp).await;
    stack.stop().await;
    let (report, pass) = result?;
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(pass)
}

/// The API gateway in front of `stack`, as a process like the others.
async fn gateway(stack: &Stack, env: &[(String, String)]) -> anyhow::Result<valerix_stack::Stack> {
    let url = |name: &str| {
        stack
            .services()
            .into_iter()
            .find(|s| s.0 == name)
            .map(|s| s.2)
            .with_context(|| format!("no {name} in the stack"))
    };
    let mut upstreams = Vec::new();
    for service in Service::Gateway.calls() {
        upstreams.extend([service.address_flag().to_owned(), url(service.name())?]);
    }
    let exe = std::env::current_exe().context("locating the valerix binary")?;
    let logs = std::env::temp_dir().join(format!("valerix-soak-{}", std::process::id()));
    let mut gw = StackBuilder::new(&exe)
        .with(Service::Gateway, 1)
        .args(Service::Gateway, upstreams)
        .logs(&logs)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        gw = gw.env(k, v);
    }
    Ok(gw.start().await?)
}

/// Orders sent with at most `in_flight` unanswered: the peak's clients.
/// The services' memory follows the most requests they ever held at once
/// (connections, buffers), and the peak run has already taken them there.
/// Without the cap, a stall of the machine (other work on the same cores)
/// would make the open model send every overdue order at once when it
/// resumes, and that burst, not the orders, would show as growth.
fn plan(arrival: Arrival, until: Until, products: &[String], in_flight: usize) -> Plan {
    Plan {
        arrival,
        until,
        products: products.to_vec(),
        quantity: 1,
        // As clients send them: each keyed order adds a row the purge must remove.
        idempotency_keys: true,
        max_in_flight: in_flight,
    }
}

async fn soak(
    args: &SoakArgs,
    stack: &Stack,
    env: &[(String, String)],
    otlp: &str,
) -> anyhow::Result<(String, bool)> {
    let products: Vec<String> = (1..=32).map(|i| format!("SOAK-{i:03}")).collect();
    stack.seed(&products).await?;
    let mut watched: Vec<Watched> = stack
        .services()
        .into_iter()
        .map(|(name, pid, _)| Watched { name, pid })
        .collect();
    let mut gw = None;
    let base = if args.no_gateway {
        stack.target.clone()
    } else {
        let g = gateway(stack, env).await?;
        let p = g.get(Service::Gateway);
        let base = format!("{}/api", p.url());
        if let Some(pid) = p.pid() {
            watched.push(Watched {
                name: Service::Gateway.name(),
                pid,
            });
        }
        gw = Some(g);
        base
    };
    let run = measure(args, stack, &watched, &base, &products).await;
    if let Some(mut g) = gw {
        g.stop(Duration::from_secs(10)).await;
    }
    report(args, &watched, &base, otlp, products.len(), &run?)
}

async fn drive_until(target: &OrderTarget, plan: Plan, live: Arc<Live>) -> Tally {
    let (_stop_tx, stop) = watch::channel(0u32);
    drive::drive(target.clone(), plan, live, stop, Instant::now(), |_, _| {}).await
}

/// What a soak measured.
struct Run {
    started: chrono::DateTime<chrono::Utc>,
    /// Load averages at the start and the end.
    load: (String, String),
    rate: f64,
    peak: f64,
    tally: Tally,
    elapsed: Duration,
    every: Duration,
    samples: Vec<Sample>,
    /// Rows left in idempotency_keys at the end.
    keys: Option<i64>,
}

/// The peak: `--peak-clients` clients back to back for `--peak-for`. Run
/// even with `--rate` given, since it also warms the services up to the
/// most requests in flight the soak will send.
async fn peak(args: &SoakArgs, target: &OrderTarget, products: &[String]) -> anyhow::Result<f64> {
    eprintln!(
        "measuring the peak: {} clients for {:?}...",
        args.peak_clients, args.peak_for
    );
    let t = Instant::now();
    let clients = args.peak_clients.max(1);
    let tally = drive_until(
        target,
        plan(
            Arrival::Clients(clients),
            Until::Elapsed(args.peak_for),
            products,
            clients,
        ),
        Arc::new(Live::default()),
    )
    .await;
    let peak = tally.acknowledged as f64 / t.elapsed().as_secs_f64().max(1e-9);
    if peak <= 0.0 {
        bail!("nothing was acknowledged while measuring the peak: is the stack healthy?");
    }
    Ok(peak)
}

/// Samples every `every` until `done`, and once more at the end.
fn spawn_sampler(
    watched: Vec<Watched>,
    live: Arc<Live>,
    start: Instant,
    every: Duration,
    mut done: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut samples = vec![sample(&watched, &live, Duration::ZERO)];
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => samples.push(sample(&watched, &live, start.elapsed())),
                _ = done.wait_for(|d| *d) => break,
            }
        }
        samples.push(sample(&watched, &live, start.elapsed()));
        samples
    })
}

/// The peak, then the soak itself with the memory samples.
async fn measure(
    args: &SoakArgs,
    stack: &Stack,
    watched: &[Watched],
    base: &str,
    products: &[String],
) -> anyhow::Result<Run> {
    let in_flight = args.peak_clients.max(1);
    let target = OrderTarget::new(base, Duration::from_secs(30), in_flight)?;
    let load_before = load_averages();
    let started = chrono::Utc::now();
    let peak = peak(args, &target, products).await?;
    let rate = args.rate.unwrap_or(peak * args.share);
    let expected = args.orders.map_or(args.duration, |n| {
        args.duration.min(Duration::from_secs_f64(n as f64 / rate))
    });
    let every = args
        .sample_every
        .unwrap_or_else(|| (expected / 60).clamp(Duration::from_secs(1), Duration::from_secs(30)));
    eprintln!(
        "soaking: {rate:.0} orders/s for up to {:?}{}, memory sampled every {every:?}...",
        args.duration,
        args.orders
            .map(|n| format!(" or {n} orders"))
            .unwrap_or_default()
    );

    let live = Arc::new(Live::default());
    let (done_tx, done) = watch::channel(false);
    let start = Instant::now();
    let sampler = spawn_sampler(watched.to_vec(), live.clone(), start, every, done);
    // With an order count the duration still caps the run.
    let (stop_tx, stop) = watch::channel(0u32);
    let until = match args.orders {
        Some(n) => Until::Orders(n),
        None => Until::Elapsed(args.duration),
    };
    let cap = args.duration;
    let cutoff = tokio::spawn(async move {
        tokio::time::sleep(cap).await;
        let _ = stop_tx.send(1);
    });
    let tally = drive::drive(
        target,
        plan(Arrival::Rate(rate), until, products, in_flight),
        live,
        stop,
        start,
        |_, _| {},
    )
    .await;
    cutoff.abort();
    let elapsed = start.elapsed();
    let _ = done_tx.send(true);
    let samples = sampler.await?;
    Ok(Run {
        started,
        load: (load_before, load_averages()),
        rate,
        peak,
        tally,
        elapsed,
        every,
        samples,
        keys: idempotency_keys(stack).await,
    })
}

/// The Markdown report, and whether every process stayed within the limit.
fn report(
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
fn samples_table(m: &mut String, watched: &[Watched], samples: &[Sample]) {
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

async fn idempotency_keys(stack: &Stack) -> Option<i64> {
    let pool = stack.pool().await.ok()?;
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .ok();
    pool.close().await;
    n
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
