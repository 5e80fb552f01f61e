//! `valerix bench`: how close the services come to what the database alone
//! can do. On one PostgreSQL, for a hot product and for a spread of
//! products, at a few concurrency levels:
//!
//! - the database-only bound: the SQL one order costs, issued directly;
//! - end to end: `POST /orders` through the HTTP services;
//!
//! and their ratio, each mix also through the API gateway at the highest
//! level. Then, per mix, the latency at half of the end-to-end peak (open
//! model, from when each order was due) and what happens past saturation
//! (open model at a multiple of the peak: shed with 503, or queued). Prints
//! a Markdown report that ends its main table with the flash-sale objectives
//! judged against the run; meaningful only in a release build.
//!
//! - `stack`: what it measures against; `dbonly`: the database-only bound
//! - `cpu`: CPU and context switches per process; `objectives`: the
//!   flash-sale objectives judged against the run
//! - [`soak`]: `valerix soak`, memory over a long run

mod cpu;
mod dbonly;
mod objectives;
pub mod soak;
mod stack;

use std::{fmt::Write as _, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tokio::{sync::watch, time::Instant};

use valerix_load::{
    drive::{self, Arrival, Live, Plan, Until},
    parse_duration,
    tally::{Percentiles, Tally},
    target::OrderTarget,
};

use self::{
    cpu::{CpuTime, Roles},
    stack::Stack,
};
use valerix_stack::process::{WORKER_THREADS, colocated_worker_threads};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// Every order for one product: they all contend for its row
    Hot,
    /// Orders round-robin over --spread products
    Spread,
}

/// How the services reach each other and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Unix domain sockets, as `valerix up` runs them
    Unix,
    /// Loopback TCP, as services on separate hosts would
    Tcp,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Concurrency levels (clients, and connections for the database-only bound)
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub concurrency: Vec<usize>,

    /// Product mixes
    #[arg(long, value_delimiter = ',', value_enum, default_value = "hot,spread")]
    pub mix: Vec<Mix>,

    /// Products in the spread mix
    #[arg(long, default_value_t = 32)]
    pub spread: usize,

    /// Measured time of each cell
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,

    /// Measurements of each cell; the table shows the median and the range
    /// (a shared virtual machine varies from run to run)
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Unmeasured time before each cell (connections, caches)
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,

    /// Past saturation: the open model at this multiple of the peak (0: skip)
    #[arg(long, default_value_t = 2.0)]
    pub overload: f64,

    /// Also run the overload with shedding off (services restarted with VALERIX_MAX_IN_FLIGHT=0)
    #[arg(long)]
    pub compare_unshed: bool,

    /// PostgreSQL flushes every commit to disk (fsync, synchronous_commit and
    /// full_page_writes on in the throwaway cluster), as production runs it;
    /// without it the cluster never waits for the disk
    #[arg(long)]
    pub durable: bool,

    /// Skip the API gateway; by default each mix is also measured through it
    /// end to end at the highest --concurrency and at half of the peak (a
    /// fifth HTTP exchange per order; the bench's own stack only)
    #[arg(long)]
    pub no_gateway: bool,

    /// How the services call each other and reach PostgreSQL; the
    /// database-only bound uses the same way to PostgreSQL
    #[arg(long, value_enum, default_value = "unix")]
    pub transport: Transport,

    /// KEY=VALUE in every service's environment, e.g. VALERIX_DB_POOL_SIZE=32 (repeatable)
    #[arg(long = "service-env", value_parser = parse_env)]
    pub service_env: Vec<(String, String)>,

    /// Measure a running stack instead: its base URL whose /orders takes orders
    /// (e.g. the gateway's base with /api); needs --database-url
    #[arg(long, requires = "database_url")]
    pub target: Option<String>,

    /// The running stack's database, for the database-only bound (bench products are added to it)
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Also write the report to this file
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

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
    fn new(latency: Histogram<u64>, elapsed: Duration, errors: u64) -> Self {
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

    pub fn per_s(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn pct(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }
}

/// The rounds of one measurement, sorted by throughput.
#[derive(Clone)]
struct Runs(Vec<Measured>);

impl Runs {
    fn new(mut runs: Vec<Measured>) -> Self {
        runs.sort_by(|a, b| a.per_s().total_cmp(&b.per_s()));
        Self(runs)
    }

    fn median(&self) -> &Measured {
        &self.0[self.0.len() / 2]
    }

    fn cell(&self) -> String {
        let m = self.median().per_s();
        match (self.0.first(), self.0.last()) {
            (Some(lo), Some(hi)) if self.0.len() > 1 => {
                format!("{m:.0} ({:.0}–{:.0})", lo.per_s(), hi.per_s())
            }
            _ => format!("{m:.0}"),
        }
    }

    fn errors(&self) -> u64 {
        self.0.iter().map(|m| m.errors).sum()
    }
}

struct Cell {
    mix: Mix,
    /// End to end through the API gateway (a fifth HTTP exchange).
    via_gateway: bool,
    concurrency: usize,
    db: Runs,
    e2e: Runs,
}

impl Cell {
    /// Of the medians.
    fn ratio(&self) -> f64 {
        self.e2e.median().per_s() / self.db.median().per_s().max(1e-9)
    }
}

/// An open-model run: its rate and what came of it.
struct OpenRun {
    mix: Mix,
    via_gateway: bool,
    rate: f64,
    peak: f64,
    shedding: bool,
    tally: Tally,
    elapsed: Duration,
    /// The p99 (ms, of 2xx answers) of every round this one is the median
    /// of, lowest first; one entry for a single run.
    p99_of_rounds: Vec<f64>,
}

impl OpenRun {
    fn at_half_of_peak(&self) -> bool {
        (self.rate - self.peak / 2.0).abs() < 1e-6
    }

    fn p99(&self) -> f64 {
        Percentiles::of(&self.tally.ok).p99
    }

    /// The round with the median p99, knowing the others'.
    fn median_of(mut rounds: Vec<OpenRun>) -> Option<OpenRun> {
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

/// The 1-minute load average, to state how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn products(mix: Mix, spread: usize) -> Vec<String> {
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
async fn e2e(
    target: &OrderTarget,
    products: &[String],
    concurrency: usize,
    args: &BenchArgs,
    roles: &Roles,
) -> Measured {
    let arrival = Arrival::Clients(concurrency);
    drive_plan(target, quiet_plan(arrival, args.warmup, products.to_vec())).await;
    let before = roles.sample();
    let (tally, _) = drive_plan(
        target,
        quiet_plan(arrival, args.duration, products.to_vec()),
    )
    .await;
    let after = roles.sample();
    let confirmed = tally.statuses.get("CONFIRMED").copied().unwrap_or(0);
    let mut m = Measured::new(tally.ok, tally.last_answer, tally.sent - confirmed);
    m.cpu = after.zip(before).map(|(a, b)| a - b);
    m
}

async fn open_run(
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

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("? GiB".to_owned(), |kb| {
            format!("{:.0} GiB", kb as f64 / 1048576.0)
        });
    format!("{cpus} CPUs ({model}), {mem} RAM")
}

fn mix_name(mix: Mix, spread: usize) -> String {
    match mix {
        Mix::Hot => "hot (1 product)".to_owned(),
        Mix::Spread => format!("spread ({spread} products)"),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs levels of at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; the figures mean little (cargo run --release -p valerix -- bench)"
        );
    }
    let mut stack = match (&args.target, &args.database_url) {
        (Some(t), Some(db)) => Stack::existing(t.clone(), db.clone()),
        (Some(_), None) => bail!("--target needs --database-url (the bound runs on that database)"),
        _ => {
            eprintln!("starting a throwaway PostgreSQL and the services...");
            Stack::start(
                args.service_env.clone(),
                args.transport,
                args.durable,
                !args.no_gateway,
            )
            .await?
        }
    };
    let result = measure_all(&args, &mut stack).await;
    stack.stop().await;
    let report = result?;
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(())
}

async fn measure_all(args: &BenchArgs, stack: &mut Stack) -> anyhow::Result<String> {
    let mixes: Vec<(Mix, Vec<String>)> = args
        .mix
        .iter()
        .map(|&m| (m, products(m, args.spread)))
        .collect();
    for (_, p) in &mixes {
        stack.seed(p).await?;
    }
    let started = chrono::Utc::now();
    let load_at_start = load_average();
    let pg = stack.postgres_version().await;
    // Plenty of idle connections, so the client never pays for new ones.
    let target = OrderTarget::new(&stack.target, Duration::from_secs(30), 20_000)?;

    let mut cells = Vec::new();
    for (mix, products) in &mixes {
        for &c in &args.concurrency {
            let (mut db, mut e2e_runs) = (Vec::new(), Vec::new());
            // Alternating, so a slow spell of the machine hits both sides.
            for _ in 0..args.rounds.max(1) {
                stack.reset().await?;
                db.push(
                    dbonly::measure(&stack.database_url, products, c, args, &stack.roles()).await?,
                );
                stack.reset().await?;
                e2e_runs.push(e2e(&target, products, c, args, &stack.roles()).await);
                stack.check_settled().await?;
            }
            let cell = Cell {
                mix: *mix,
                via_gateway: false,
                concurrency: c,
                db: Runs::new(db),
                e2e: Runs::new(e2e_runs),
            };
            let (d, e) = (cell.db.median(), cell.e2e.median());
            eprintln!(
                "{:<20} x{c:<3} database-only {:>18}/s (p99 {:>6.1} ms)   end-to-end {:>18}/s (p99 {:>6.1} ms, {} not confirmed)   {:>4.0}%",
                mix_name(*mix, args.spread),
                cell.db.cell(),
                d.pct().p99,
                cell.e2e.cell(),
                e.pct().p99,
                cell.e2e.errors(),
                cell.ratio() * 100.0
            );
            cells.push(cell);
        }
    }

    let gateway = match &stack.gateway {
        Some(url) => Some(OrderTarget::new(url, Duration::from_secs(30), 20_000)?),
        None => None,
    };
    if let Some(via) = &gateway {
        let top = args.concurrency.iter().copied().max().unwrap_or(1);
        for (mix, products) in &mixes {
            let Some(direct) = cells.iter().find(|c| c.mix == *mix && c.concurrency == top) else {
                continue;
            };
            let mut runs = Vec::new();
            for _ in 0..args.rounds.max(1) {
                stack.reset().await?;
                runs.push(e2e(via, products, top, args, &stack.roles()).await);
                stack.check_settled().await?;
            }
            let cell = Cell {
                mix: *mix,
                via_gateway: true,
                concurrency: top,
                // The bound does not depend on the route: the same run's.
                db: direct.db.clone(),
                e2e: Runs::new(runs),
            };
            eprintln!(
                "{:<20} x{top:<3} through the gateway {:>18}/s (p99 {:>6.1} ms)   {:>4.0}%",
                mix_name(*mix, args.spread),
                cell.e2e.cell(),
                cell.e2e.median().pct().p99,
                cell.ratio() * 100.0
            );
            cells.push(cell);
        }
    }

    let mut open = Vec::new();
    for (mix, products) in &mixes {
        let peak = cells
            .iter()
            .filter(|c| c.mix == *mix && !c.via_gateway)
            .map(|c| c.e2e.median().per_s())
            .fold(0.0, f64::max);
        if peak <= 0.0 {
            continue;
        }
        // Rounds like the closed model's (a spell of the machine moves a
        // tail the most), direct and through the gateway alternating.
        let (mut direct, mut via_gateway) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds.max(1) {
            stack.reset().await?;
            let half = open_run(&target, args, *mix, products, peak / 2.0, peak, true).await;
            stack.check_settled().await?;
            direct.push(half);
            if let Some(via) = &gateway {
                stack.reset().await?;
                let mut half = open_run(via, args, *mix, products, peak / 2.0, peak, true).await;
                half.via_gateway = true;
                stack.check_settled().await?;
                via_gateway.push(half);
            }
        }
        for half in [direct, via_gateway]
            .into_iter()
            .filter_map(OpenRun::median_of)
        {
            eprintln!(
                "{:<20} half of peak{}: {:.0}/s, p99 {:.1} ms",
                mix_name(*mix, args.spread),
                if half.via_gateway {
                    " through the gateway"
                } else {
                    ""
                },
                half.rate,
                half.p99()
            );
            open.push(half);
        }
        if args.overload > 0.0 {
            stack.reset().await?;
            let over = open_run(
                &target,
                args,
                *mix,
                products,
                peak * args.overload,
                peak,
                true,
            )
            .await;
            stack.check_settled().await?;
            eprintln!(
                "{:<20} {}x peak: {} of {} shed",
                mix_name(*mix, args.spread),
                args.overload,
                over.tally.shed,
                over.tally.sent
            );
            open.push(over);
        }
    }
    if args.compare_unshed && args.overload > 0.0 && stack.is_own() {
        let mut env = args.service_env.clone();
        env.push(("VALERIX_MAX_IN_FLIGHT".into(), "0".into()));
        stack.restart_services(env).await?;
        // The services came back on new ports.
        let target = OrderTarget::new(&stack.target, Duration::from_secs(30), 20_000)?;
        for (mix, products) in &mixes {
            let Some(peak) = open.iter().find(|r| r.mix == *mix).map(|r| r.peak) else {
                continue;
            };
            stack.reset().await?;
            let over = open_run(
                &target,
                args,
                *mix,
                products,
                peak * args.overload,
                peak,
                false,
            )
            .await;
            stack.check_settled().await?;
            eprintln!(
                "{:<20} {}x peak without shedding: p99 {:.0} ms",
                mix_name(*mix, args.spread),
                args.overload,
                Percentiles::of(&over.tally.all).p99
            );
            open.push(over);
        }
    }

    let load = (load_at_start, load_average());
    Ok(markdown(args, stack, &pg, (started, load), &cells, &open))
}

fn markdown(
    args: &BenchArgs,
    stack: &Stack,
    pg: &str,
    (started, load): (chrono::DateTime<chrono::Utc>, (Option<f64>, Option<f64>)),
    cells: &[Cell],
    open: &[OpenRun],
) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "## Valerix benchmark, {}\n",
        started.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        m,
        "- machine: {}; PostgreSQL {pg}{}; {} build",
        machine(),
        match (stack.is_own(), args.durable) {
            (true, true) => {
                " (throwaway cluster, durable: fsync, synchronous_commit and full_page_writes on; `--durable`)"
            }
            (true, false) => " (throwaway cluster: fsync off, synchronous_commit off)",
            (false, _) => "",
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    if let (Some(at_start), Some(at_end)) = load {
        // The benchmark's own processes raise it: a durable run counts every
        // process waiting for a flush.
        let _ = writeln!(
            m,
            "- machine load (1-minute average, `/proc/loadavg`): {at_start:.1} when the run started, {at_end:.1} when it ended"
        );
    }
    let _ = writeln!(
        m,
        "- end to end: `POST {}/orders` (order service → inventory and payment over HTTP), closed model: N clients back to back",
        stack.target
    );
    let _ = writeln!(
        m,
        "- database-only: the same SQL through the services' store code (create, reserve, charge, commit, settle), N tasks on N connections, no HTTP"
    );
    if stack.is_own() {
        // What a service process sees: --service-env, else our environment
        // (inherited), else the default.
        let setting = |key: &str, default: String| {
            args.service_env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(key).ok())
                .unwrap_or(default)
        };
        let workers = setting(WORKER_THREADS, colocated_worker_threads().to_string());
        let pool = setting(
            "VALERIX_DB_POOL_SIZE",
            valerix_runtime::config::DEFAULT_POOL_SIZE.to_string(),
        );
        let _ = writeln!(
            m,
            "- each service process: {workers} tokio worker thread(s) (`{WORKER_THREADS}`), a pool of up to {pool} database connections (`VALERIX_DB_POOL_SIZE`)"
        );
        let _ = writeln!(
            m,
            "- the services call each other and reach PostgreSQL (as does the bound) over {}",
            match args.transport {
                Transport::Unix => "Unix domain sockets (`--transport unix`)",
                Transport::Tcp => "loopback TCP (`--transport tcp`)",
            }
        );
    }
    let _ = writeln!(
        m,
        "- each measurement: {:.1} s warm-up, {:.1} s measured, {}; orders of 1 unit; every service and the load generator share the machine{}\n",
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
        // `reset` empties only a cluster of our own.
        if stack.is_own() {
            "from empty tables"
        } else {
            "on the running stack's tables as they are (not emptied)"
        },
        if args.service_env.is_empty() {
            String::new()
        } else {
            format!(
                "; service environment: {}",
                args.service_env
                    .iter()
                    .map(|(k, v)| format!("`{k}={v}`"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    let _ = writeln!(
        m,
        "| mix | N | database-only orders/s | p50 / p99 ms | end-to-end orders/s | p50 / p99 ms | not confirmed | ratio |\n|---|---|---|---|---|---|---|---|"
    );
    for c in cells {
        let (d, e) = (c.db.median().pct(), c.e2e.median().pct());
        let _ = writeln!(
            m,
            "| {}{} | {} | {} | {:.1} / {:.1} | {} | {:.1} / {:.1} | {} | **{:.0}%** |",
            mix_name(c.mix, args.spread),
            if c.via_gateway {
                ", through the gateway"
            } else {
                ""
            },
            c.concurrency,
            c.db.cell(),
            d.p50,
            d.p99,
            c.e2e.cell(),
            e.p50,
            e.p99,
            c.e2e.errors(),
            c.ratio() * 100.0
        );
    }
    let _ = writeln!(
        m,
        "\nOrders/s: the median of {} rounds (lowest–highest); latencies and CPU from the median round.{}",
        args.rounds.max(1),
        if stack.is_own() {
            " After every end-to-end and open-model measurement the benchmark checked (else it fails): every order settled, nothing left reserved, each product's stock moved by exactly its confirmed orders' quantities."
        } else {
            ""
        }
    );
    let closed: Vec<objectives::Closed> = cells
        .iter()
        .map(|c| objectives::Closed {
            mix: c.mix,
            via_gateway: c.via_gateway,
            clients: c.concurrency,
            ratio: c.ratio(),
            p99_ms: c.e2e.median().pct().p99,
        })
        .collect();
    let half: Vec<objectives::Half> = open
        .iter()
        .filter(|r| r.at_half_of_peak())
        .map(|r| objectives::Half {
            mix: r.mix,
            via_gateway: r.via_gateway,
            p99_ms: r.p99(),
        })
        .collect();
    if let Some(table) = objectives::table(&closed, &half) {
        let _ = writeln!(
            m,
            "\nThe flash-sale objectives, judged against this run (the half-of-peak figures are the open model's, below):\n\n{table}"
        );
    }
    if cells.iter().any(|c| c.db.median().cpu.is_some()) {
        let _ = writeln!(
            m,
            "\nCPU per confirmed order (µs), from /proc: where the time goes.\n\n| mix | N | database-only: PostgreSQL | client | total | end-to-end: PostgreSQL | services | client | total |\n|---|---|---|---|---|---|---|---|---|"
        );
        for c in cells.iter().filter(|c| !c.via_gateway) {
            let (Some(d), Some(e)) = (
                c.db.median().cpu_per_order(),
                c.e2e.median().cpu_per_order(),
            ) else {
                continue;
            };
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                mix_name(c.mix, args.spread),
                c.concurrency,
                d.0,
                d.2,
                d.0 + d.1 + d.2,
                e.0,
                e.1,
                e.2,
                e.0 + e.1 + e.2
            );
        }
        let _ = writeln!(
            m,
            "\nContext switches per confirmed order, from /proc (a thread put to sleep to wait for a message and woken again, or preempted): the hand-overs.\n\n| mix | N | database-only: PostgreSQL | client | end-to-end: PostgreSQL | services | client |\n|---|---|---|---|---|---|---|"
        );
        for c in cells.iter().filter(|c| !c.via_gateway) {
            let (Some(d), Some(e)) = (
                c.db.median().switches_per_order(),
                c.e2e.median().switches_per_order(),
            ) else {
                continue;
            };
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                mix_name(c.mix, args.spread),
                c.concurrency,
                d.0,
                d.2,
                e.0,
                e.1,
                e.2
            );
        }
    }
    if !open.is_empty() {
        let _ = writeln!(
            m,
            "\nOpen model (orders arrive at a fixed rate; latency from when each was due, so queueing counts):\n\n| mix | load | offered/s | confirmed/s | answered 202 (pending) | shed (503) | other errors | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in open {
            let p = Percentiles::of(&r.tally.ok);
            let confirmed = r.tally.statuses.get("CONFIRMED").copied().unwrap_or(0);
            let load = if r.at_half_of_peak() {
                if r.via_gateway {
                    "half of peak, through the gateway".to_owned()
                } else {
                    "half of peak".to_owned()
                }
            } else {
                format!(
                    "{:.1}x peak{}",
                    r.rate / r.peak,
                    if r.shedding { "" } else { ", shedding off" }
                )
            };
            let pending: u64 = r
                .tally
                .statuses
                .iter()
                .filter(|(s, _)| s.starts_with("PENDING"))
                .map(|(_, n)| n)
                .sum();
            let p99 = match (r.p99_of_rounds.first(), r.p99_of_rounds.last()) {
                (Some(lo), Some(hi)) if r.p99_of_rounds.len() > 1 => {
                    format!("{:.1} ({lo:.1}–{hi:.1})", p.p99)
                }
                _ => format!("{:.1}", p.p99),
            };
            let _ = writeln!(
                m,
                "| {} | {load} | {:.0} | {:.0} | {pending} | {} ({:.0}%) | {} | {:.1} | {p99} | {:.1} | {:.1} |",
                mix_name(r.mix, args.spread),
                r.rate,
                confirmed as f64 / r.elapsed.as_secs_f64().max(1e-9),
                r.tally.shed,
                r.tally.shed as f64 * 100.0 / r.tally.sent.max(1) as f64,
                r.tally.errors - r.tally.shed,
                p.p50,
                p.p99_9,
                p.max
            );
        }
        let _ = writeln!(
            m,
            "\n(latency columns: 2xx answers, from when each order was due; a shed request is answered at once; confirmed/s over the time until the last answer; at half of the peak, the round with the median p99 of {} (lowest–highest p99))",
            args.rounds.max(1)
        );
    }
    m
}
