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
//! - `measure`: one measurement and its rounds; `schedule`: the order of a
//!   run's measurements; `gateway`: the API gateway's cost, through it
//!   against straight at the order service
//! - `reference`: HAProxy in the gateway's place, the bound on its cost
//! - `cpu`: CPU and context switches per process; `objectives`: the
//!   flash-sale objectives judged against the run; `report`: the Markdown
//! - [`soak`]: `valerix soak`, memory over a long run

mod cpu;
mod dbonly;
mod gateway;
mod measure;
mod objectives;
mod reference;
mod report;
mod schedule;
pub mod soak;
mod stack;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use valerix_load::parse_duration;

use self::stack::Stack;
pub(crate) use self::{
    measure::{Measured, histogram},
    report::machine,
};

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
    /// fifth HTTP exchange per order; the bench's own stack only), and its
    /// cost at --gateway-concurrency
    #[arg(long)]
    pub no_gateway: bool,

    /// Client counts at which the gateway's cost is measured: straight at
    /// the order service and through the gateway, alternating
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub gateway_concurrency: Vec<usize>,

    /// Measure only the gateway's cost (no bound, no open model)
    #[arg(long, conflicts_with = "no_gateway")]
    pub gateway_only: bool,

    /// With the gateway's cost, also HAProxy in the gateway's place (one
    /// thread, the prefix taken off, a key added): what forwarding alone
    /// costs on this machine (needs haproxy installed)
    #[arg(long, conflicts_with = "no_gateway")]
    pub gateway_reference: bool,

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

/// The middle value (of an even count, the mean of the middle two); 0 of none.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs levels of at least 1");
    }
    if args.gateway_concurrency.contains(&0) {
        bail!("--gateway-concurrency needs levels of at least 1");
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
    let result = schedule::measure_all(&args, &mut stack).await;
    stack.stop().await;
    let report = result?;
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[0.9]), 0.9);
        assert!((median(&[1.0, 0.8, 0.9, 1.2]) - 0.95).abs() < 1e-9);
    }
}
