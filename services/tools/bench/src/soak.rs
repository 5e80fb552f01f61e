//! `valerix soak`: memory that must stay flat. Drives the stack at a fixed
//! share of its peak for a long while, the way it runs when nobody watches:
//! nothing scrapes `/metrics`, and the OTLP endpoint is a closed port, so
//! whatever is kept for a scraper or an exporter has to be bounded on its
//! own. It samples each process's resident memory (VmRSS) as the orders go
//! by and judges the growth after a warm-up: a structure that grows with
//! traffic shows as growth per order, which a short run at a few hundred
//! orders per second makes visible long before it would kill a service.

use std::{path::PathBuf, sync::Arc, time::Duration};

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

use super::{Transport, parse_env, stack::Stack};

mod memory;
mod report;

use memory::{Sample, Watched, load_averages, sample};

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
    report::report(args, &watched, &base, otlp, products.len(), &run?)
}

async fn drive_until(target: &OrderTarget, plan: Plan, live: Arc<Live>) -> Tally {
    let (_stop_tx, stop) = watch::channel(0u32);
    drive::drive(target.clone(), plan, live, stop, Instant::now(), |_, _| {}).await
}

/// What a soak measured.
pub(super) struct Run {
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

async fn idempotency_keys(stack: &Stack) -> Option<i64> {
    let pool = stack.pool().await.ok()?;
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .ok();
    pool.close().await;
    n
}
