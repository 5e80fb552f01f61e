//! `valerix drill failover`: the stack on a highly available PostgreSQL
//! (etcd, Patroni with a synchronous standby, HAProxy), orders at a steady
//! rate through the gateway, and the database's worst day in three acts:
//!
//! 1. the leader's Patroni and PostgreSQL are SIGKILLed together (the node
//!    is lost; its leader key expires after the ttl, a standby promotes);
//! 2. the lost node is started again and rejoins as a standby (pg_rewind);
//! 3. a planned switchover hands the primary role back.
//!
//! Then every acknowledged order is read back until it settles, and the
//! database is audited. What an operator needs to know is printed: orders
//! lost (must be 0), how long until orders were confirmed again, what the
//! clients saw in the gap, and whether a service had to be restarted.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use tokio::{sync::watch, time::Instant};
use valerix_devdb::{HaOptions, LOOP_WAIT_SECS, RETRY_TIMEOUT_SECS, TTL_SECS};
use valerix_load::{
    self as load,
    drive::{self, Arrival, Live, Plan, Until},
    follow,
    progress::{Progress, ProgressMode},
    target::{InventoryControl, OrderTarget},
};
use valerix_stack::{Ports, Service, StackBuilder};

use crate::{audit, ha};

mod report;
mod schedule;

pub use report::{FailoverReport, HealthChanges, Slot, print};
use report::{health_changes, measure};
use schedule::{run_schedule, say, watch_health};

#[derive(Debug, Subcommand)]
pub enum Drill {
    /// Lose the database's primary under load, rejoin it, switch over;
    /// exit 2 when an acknowledged order was lost or did not settle
    Failover(FailoverArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// PostgreSQL nodes under Patroni (2 or 3)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub nodes: u8,

    /// Orders per second through the gateway
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,

    /// Steady load before the first fault and after each step
    #[arg(long, default_value = "8s", value_parser = load::parse_duration)]
    pub steady: Duration,

    /// How long the acknowledged orders get to settle after the load
    #[arg(long, default_value = "60s", value_parser = load::parse_duration)]
    pub settle_within: Duration,

    /// Patroni's synchronous_mode_strict (see `valerix up --ha-strict`)
    #[arg(long)]
    pub strict: bool,
}

pub async fn failover(args: &FailoverArgs) -> anyhow::Result<FailoverReport> {
    let options = HaOptions {
        nodes: usize::from(args.nodes),
        strict: args.strict,
    };
    println!(
        "Failover drill: {} PostgreSQL nodes under Patroni (ttl {TTL_SECS} s, loop_wait {LOOP_WAIT_SECS} s, \
         retry_timeout {RETRY_TIMEOUT_SECS} s, synchronous_mode{}), etcd, HAProxy; {} orders/s through the gateway",
        args.nodes,
        if args.strict { "_strict" } else { "" },
        args.rate
    );
    let mut cluster = ha::start(&options).await?;
    println!("cluster: {}", ha::describe(&cluster).await);

    let exe = std::env::current_exe().context("locating the valerix binary")?;
    let state_dir = std::env::temp_dir().join(format!("valerix-drill-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let mut stack = StackBuilder::new(&exe)
        .all()
        .ports(Ports::Any)
        .database(&cluster.url("valerix"))
        .gremlins(false)
        .unix_sockets(&state_dir)
        .hold_sockets(true)
        .logs(&state_dir)
        .start()
        .await?;
    crate::seed::seed(&stack.get(Service::Inventory).url()).await?;

    let target = OrderTarget::new(
        &format!("{}/api", stack.get(Service::Gateway).url()),
        Duration::from_secs(10),
        4096,
    )?;
    let inventory = InventoryControl::new(&stack.get(Service::Inventory).url())?;
    let mut plan = Plan {
        arrival: Arrival::Rate(args.rate),
        // Cut short once the schedule is done.
        until: Until::Elapsed(Duration::from_secs(600)),
        products: Vec::new(),
        quantity: 1,
        idempotency_keys: true,
        max_in_flight: 4096,
    };
    plan.products = inventory
        .products()
        .await?
        .into_iter()
        .map(|p| p.product_id)
        .collect();
    // Stock for the run as scheduled, not for the 600 s bound.
    let expected = Plan {
        until: Until::Elapsed(args.steady * 6 + Duration::from_secs(60)),
        ..plan.clone()
    };
    load::restock(&expected, &inventory).await?;

    let (stop_tx, stop_rx) = watch::channel(0u32);
    let start = Instant::now();
    let live = Arc::new(Live::default());
    let load = tokio::spawn(drive::drive(
        target.clone(),
        plan.clone(),
        live.clone(),
        stop_rx.clone(),
        start,
        |_, _| {},
    ));
    let health = tokio::spawn(watch_health(
        stack.get(Service::Order).url(),
        start,
        stop_rx.clone(),
    ));
    let schedule = run_schedule(&mut cluster, args.steady, start).await;
    stop_tx.send_modify(|n| *n += 1);
    let database_seen = health.await.unwrap_or_default();
    let mut tally = load.await.context("the load task failed")?;
    let times = schedule?;
    say(
        start,
        &format!(
            "load stopped: {} orders sent, {} acknowledged",
            tally.sent, tally.acknowledged
        ),
    );

    let progress = Progress::new(ProgressMode::None, &plan, start);
    let (_, follow_stop) = watch::channel(0u32);
    let followed = follow::follow(
        &target,
        &mut tally,
        plan.quantity,
        args.settle_within,
        &progress,
        follow_stop,
    )
    .await;

    let pool = sqlx::PgPool::connect(&cluster.url("valerix")).await?;
    audit::wait_for_stock_commits(&pool, Instant::now() + Duration::from_secs(30)).await?;
    let audited = audit::audit(&pool, None).await?;
    let double_charges: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT order_id FROM payments WHERE status IN ('COMPLETED', 'REFUNDED')
                                GROUP BY order_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;

    let services_exited = stack
        .iter_mut()
        .filter_map(|p| p.is_dead().then(|| p.name.clone()))
        .collect();
    stack.stop(Duration::from_secs(15)).await;
    let mut report = measure(
        &tally,
        &times,
        followed,
        audited,
        double_charges,
        services_exited,
    );
    report.health = health_changes(&database_seen, times.killed);
    if report.passed() {
        let _ = std::fs::remove_dir_all(&state_dir);
    } else {
        println!("the services' logs are kept in {}", state_dir.display());
    }
    Ok(report)
}

/// Runs a drill from the command line; Ok(false) when it failed.
pub async fn run(drill: &Drill) -> anyhow::Result<bool> {
    match drill {
        Drill::Failover(args) => {
            let report = failover(args).await?;
            print(&report);
            Ok(report.passed())
        }
    }
}
