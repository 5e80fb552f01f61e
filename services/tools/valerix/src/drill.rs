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

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio::{sync::watch, time::Instant};
use valerix_devdb::{HaCluster, HaOptions, LOOP_WAIT_SECS, Member, RETRY_TIMEOUT_SECS, TTL_SECS};
use valerix_load::{
    self as load,
    drive::{self, Arrival, Live, Plan, Until},
    follow::{self, Followed},
    progress::{Progress, ProgressMode},
    tally::Tally,
    target::{InventoryControl, OrderTarget},
};
use valerix_stack::{Ports, Service, StackBuilder};

use crate::{audit, ha};

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

/// What the drill measured.
#[derive(Debug, Default)]
pub struct FailoverReport {
    pub sent: u64,
    /// Orders answered 201 or 202.
    pub acknowledged: u64,
    pub followed: Followed,
    /// From the SIGKILL until the first order sent after it was answered CONFIRMED.
    pub confirmed_again_after: Option<Duration>,
    /// From the SIGKILL until a standby led.
    pub promoted_after: Duration,
    /// From starting the lost node again until it streamed from the new leader.
    pub rejoined_after: Duration,
    /// The longest time without a CONFIRMED answer around the switchover.
    pub switchover_pause: Option<Duration>,
    /// Answers that were not 201/202 (status and problem type, or the
    /// transport failure), during the failover and over the whole run.
    pub gap_errors: BTreeMap<String, u64>,
    pub all_errors: BTreeMap<String, u64>,
    pub audit_violations: Vec<String>,
    pub double_charges: i64,
    /// Services whose process exited during the drill (each would have
    /// needed a restart).
    pub services_exited: Vec<String>,
    /// Confirmed orders and error answers by when the orders were due.
    pub timeline: Vec<Slot>,
    /// When the order service's health said the database went and came
    /// back, since the kill.
    pub health: HealthChanges,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct HealthChanges {
    pub disconnected_after: Option<Duration>,
    pub connected_again_after: Option<Duration>,
}

/// Polls the order service's `/health` until the load stops: when its
/// database dependency was seen connected or not, since the start.
async fn watch_health(
    order_url: String,
    start: Instant,
    mut stop: watch::Receiver<u32>,
) -> Vec<(Duration, bool)> {
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    while *stop.borrow_and_update() == 0 {
        let asked_at = start.elapsed();
        let connected = match http
            .get(format!("{order_url}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(answer) => answer.json::<serde_json::Value>().await.ok().and_then(|h| {
                h["dependencies"]["database"]
                    .as_str()
                    .map(|s| s == "connected")
            }),
            Err(_) => None,
        };
        if let Some(connected) = connected {
            seen.push((asked_at, connected));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
    seen
}

/// The first "disconnected" after the kill, and the first "connected"
/// after that.
fn health_changes(seen: &[(Duration, bool)], killed: Duration) -> HealthChanges {
    let down = seen
        .iter()
        .find(|(at, up)| *at >= killed && !up)
        .map(|(at, _)| *at);
    let up = down.and_then(|d| {
        seen.iter()
            .find(|(at, up)| *at > d && *up)
            .map(|(at, _)| *at)
    });
    HealthChanges {
        disconnected_after: down.map(|d| d - killed),
        connected_again_after: up.map(|u| u - killed),
    }
}

impl FailoverReport {
    pub fn passed(&self) -> bool {
        self.followed.is_clean()
            && self.confirmed_again_after.is_some()
            && self.audit_violations.is_empty()
            && self.double_charges == 0
            && self.services_exited.is_empty()
    }

    /// The drill's last line.
    pub fn last_line(&self) -> String {
        format!(
            "failover: {} acknowledged, {} lost, orders confirmed again after {}",
            self.acknowledged,
            self.followed.lost,
            match self.confirmed_again_after {
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
                None => "never".to_owned(),
            }
        )
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn say(start: Instant, what: &str) {
    println!("{:>7.1}s  {what}", start.elapsed().as_secs_f64());
}

/// Waits until `check` yields something, polling every 100 ms.
async fn wait_for<T>(
    what: &str,
    within: Duration,
    cluster: &HaCluster,
    check: impl AsyncFn(&HaCluster) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check(cluster).await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: not within {}; cluster: {}",
                secs(within),
                ha::describe(cluster).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn member(members: &[Member], name: &str) -> Option<Member> {
    members.iter().find(|m| m.name == name).cloned()
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

/// When the schedule's steps happened, since the start of the load.
#[derive(Debug, Default)]
struct Times {
    killed: Duration,
    promoted: Duration,
    rejoin_started: Duration,
    rejoined: Duration,
    switch_started: Duration,
    switched: Duration,
}

async fn run_schedule(
    cluster: &mut HaCluster,
    steady: Duration,
    start: Instant,
) -> anyhow::Result<Times> {
    let mut t = Times::default();
    tokio::time::sleep(steady).await;
    let old = cluster
        .leader()
        .await
        .context("no leader before the kill")?;
    t.killed = start.elapsed();
    cluster.kill_node(&old)?;
    say(
        start,
        &format!("SIGKILL {old} (the leader): its Patroni and PostgreSQL"),
    );
    let new = wait_for(
        "a standby to take over",
        Duration::from_secs(60),
        cluster,
        {
            let old = old.clone();
            async move |c| c.leader().await.filter(|l| *l != old)
        },
    )
    .await?;
    t.promoted = start.elapsed();
    say(
        start,
        &format!(
            "{new} leads ({} after the kill)",
            secs(t.promoted - t.killed)
        ),
    );

    tokio::time::sleep(steady).await;
    t.rejoin_started = start.elapsed();
    cluster.rejoin(&old)?;
    say(start, &format!("{old} started again"));
    wait_for(
        "the old leader to rejoin",
        Duration::from_secs(60),
        cluster,
        {
            let old = old.clone();
            async move |c| member(&c.members().await, &old).filter(|m| m.is_up() && !m.is_leader())
        },
    )
    .await?;
    t.rejoined = start.elapsed();
    say(
        start,
        &format!(
            "{old} follows {new} ({} after it started)",
            secs(t.rejoined - t.rejoin_started)
        ),
    );
    let candidate = wait_for(
        "a synchronous standby",
        Duration::from_secs(30),
        cluster,
        async |c| {
            c.members()
                .await
                .into_iter()
                .find(Member::is_sync_standby)
                .map(|m| m.name)
        },
    )
    .await?;

    tokio::time::sleep(steady).await;
    t.switch_started = start.elapsed();
    say(start, &format!("switchover {new} -> {candidate} (planned)"));
    cluster.switchover(&new, &candidate).await?;
    wait_for("the switchover", Duration::from_secs(60), cluster, {
        let candidate = candidate.clone();
        async move |c| c.leader().await.filter(|l| *l == candidate)
    })
    .await?;
    t.switched = start.elapsed();
    say(
        start,
        &format!(
            "{candidate} leads ({} after the switchover began)",
            secs(t.switched - t.switch_started)
        ),
    );
    tokio::time::sleep(steady).await;
    Ok(t)
}

fn measure(
    tally: &Tally,
    t: &Times,
    followed: Followed,
    audited: audit::Report,
    double_charges: i64,
    services_exited: Vec<String>,
) -> FailoverReport {
    // The first order sent after the kill that was confirmed.
    let confirmed_again = tally
        .confirmations
        .iter()
        .filter(|(due, _)| *due >= t.killed)
        .map(|(_, answered)| *answered)
        .min();
    let confirmed_again_after = confirmed_again.map(|at| at.saturating_sub(t.killed));
    let gap_end = confirmed_again.unwrap_or(t.rejoin_started);
    let mut gap_errors = BTreeMap::new();
    let mut timeline = Vec::new();
    for a in tally
        .affected
        .iter()
        .filter(|a| !a.first_answer.starts_with('2'))
    {
        let at = Duration::from_secs_f64(a.at_s);
        if at >= t.killed && at <= gap_end {
            *gap_errors.entry(a.first_answer.clone()).or_default() += 1;
        }
        slot(&mut timeline, at).errors += 1;
    }
    for (due, _) in &tally.confirmations {
        slot(&mut timeline, *due).confirmed += 1;
    }
    let all_errors = tally
        .codes
        .iter()
        .filter(|(code, _)| !matches!(code.as_str(), "201" | "202"))
        .map(|(code, n)| (code.clone(), *n))
        .collect();
    // Around the switchover: the longest wait between two confirmations.
    let mut answers: Vec<Duration> = tally
        .confirmations
        .iter()
        .map(|(_, answered)| *answered)
        .filter(|at| *at >= t.switch_started && *at <= t.switched + Duration::from_secs(5))
        .collect();
    answers.sort();
    let switchover_pause = answers.windows(2).map(|w| w[1] - w[0]).max();
    FailoverReport {
        sent: tally.sent,
        acknowledged: tally.acknowledged,
        followed,
        confirmed_again_after,
        promoted_after: t.promoted - t.killed,
        rejoined_after: t.rejoined - t.rejoin_started,
        switchover_pause,
        gap_errors,
        all_errors,
        audit_violations: audited
            .violations
            .iter()
            .map(|v| format!("[{}] {}", v.invariant, v.detail))
            .collect(),
        double_charges,
        services_exited,
        timeline,
        health: HealthChanges::default(),
    }
}

/// Seconds per row of the timeline.
const SLOT_SECS: f64 = 2.0;

/// What the orders due in one slot of the run came to.
#[derive(Debug, Default, Clone, Copy)]
pub struct Slot {
    pub confirmed: u64,
    pub errors: u64,
}

fn slot(timeline: &mut Vec<Slot>, due: Duration) -> &mut Slot {
    let i = (due.as_secs_f64() / SLOT_SECS) as usize;
    if timeline.len() <= i {
        timeline.resize(i + 1, Slot::default());
    }
    &mut timeline[i]
}

fn counts(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(label, n)| format!("{n} × {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the report; its last line is [`FailoverReport::last_line`].
pub fn print(r: &FailoverReport) {
    println!();
    println!("orders due at   confirmed  errors");
    for (i, s) in r.timeline.iter().enumerate() {
        println!(
            "  {:>5.0}-{:<3.0}s {:>9} {:>7}",
            i as f64 * SLOT_SECS,
            (i + 1) as f64 * SLOT_SECS,
            s.confirmed,
            s.errors
        );
    }
    println!();
    println!(
        "orders:       {} sent, {} acknowledged (201/202); {} lost, {} unsettled, {} changed after a settled answer",
        r.sent, r.acknowledged, r.followed.lost, r.followed.stuck, r.followed.changed
    );
    println!(
        "failover:     a standby led {} after the kill; orders confirmed again {} (goal: under 12 s)",
        secs(r.promoted_after),
        r.confirmed_again_after
            .map_or("never".to_owned(), |d| format!("{} after it", secs(d)))
    );
    println!("  in the gap: {}", counts(&r.gap_errors));
    println!(
        "  health:     the order service's /health said the database was disconnected {}, connected again {}",
        r.health
            .disconnected_after
            .map_or("never".to_owned(), |d| format!(
                "{} after the kill",
                secs(d)
            )),
        r.health
            .connected_again_after
            .map_or("never".to_owned(), |d| format!("{} after it", secs(d))),
    );
    println!(
        "rejoin:       the old leader followed the new one {} after it was started",
        secs(r.rejoined_after)
    );
    println!(
        "switchover:   longest wait between two confirmed orders {}",
        r.switchover_pause.map_or("n/a".to_owned(), secs)
    );
    println!("errors, whole run: {}", counts(&r.all_errors));
    println!(
        "errors resolved by a retry with the same Idempotency-Key: {}",
        r.followed.resolved
    );
    println!(
        "audit:        {}; double charges: {}",
        if r.audit_violations.is_empty() {
            "clean".to_owned()
        } else {
            format!("{} violation(s)", r.audit_violations.len())
        },
        r.double_charges
    );
    for v in r.audit_violations.iter().take(10) {
        println!("  {v}");
    }
    println!(
        "services:     {}",
        if r.services_exited.is_empty() {
            "none exited, none restarted".to_owned()
        } else {
            format!("exited: {}", r.services_exited.join(", "))
        }
    );
    println!("{}", r.last_line());
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
