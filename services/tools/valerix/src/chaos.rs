//! The fault schedule: the services as separate processes (two order
//! replicas), concurrent clients placing orders, while inventory and payment
//! are SIGKILLed and restarted, crash-after-commit and noise gremlins are on
//! and latency gremlins come and go. Then the faults stop and the system gets
//! a bounded time to settle. Used by the chaos test and by `valerix chaos`,
//! which runs it with the cure (retries, breaker, reconciler) off and on.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use order_service::domain::OrderStatus;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use valerix_stack::{Service, ServiceProcess, StackBuilder};

use crate::audit::{self, Violation};

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The `valerix` binary whose `service` subcommand runs each service.
    pub exe: PathBuf,
    pub database_url: String,
    pub orders: usize,
    /// Orders per second across all clients (the faults need time to act).
    pub rate: f64,
    pub clients: usize,
    pub products: usize,
    pub stock_per_product: i32,
    /// Retries, circuit breaker and reconciler on (true) or all off.
    pub cure: bool,
    /// How long the healed system gets to settle every order.
    pub settle_within: Duration,
    pub seed: u64,
    /// Where the services' logs go.
    pub log_dir: PathBuf,
}

impl ChaosConfig {
    pub fn new(exe: PathBuf, database_url: String, log_dir: PathBuf) -> Self {
        Self {
            exe,
            database_url,
            orders: 2000,
            rate: 100.0,
            clients: 16,
            products: 3,
            stock_per_product: 1000,
            cure: true,
            settle_within: Duration::from_secs(90),
            seed: 7,
            log_dir,
        }
    }
}

#[derive(Debug, Default)]
pub struct ChaosReport {
    pub cure: bool,
    pub attempted: usize,
    /// Orders a client got a 2xx for.
    pub acknowledged: usize,
    /// Acknowledged orders the database does not have.
    pub missing: usize,
    pub confirmed: i64,
    pub failed: i64,
    /// Orders still unsettled when the settle time ran out.
    pub stuck: i64,
    /// Settled orders that no invariant check names.
    pub consistent: i64,
    pub oversold_units: i64,
    pub double_charges: i64,
    /// Units held by reservations of orders that never settled.
    pub held_units: i64,
    /// Completed payments of orders that are not CONFIRMED.
    pub charged_unconfirmed: i64,
    pub violations: Vec<Violation>,
    pub kills: usize,
    pub restarts: usize,
    pub load_time: Duration,
    pub settle_time: Duration,
}

impl ChaosReport {
    pub fn table(reports: &[ChaosReport]) -> String {
        let mut t = String::from(
            "| cure | orders acknowledged | consistent | stuck | lost | oversold units | double charges | units held by stuck orders | charged, not confirmed | invariant violations | SIGKILLs | restarts |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in reports {
            t.push_str(&format!(
                "| {} | {} of {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                if r.cure { "on" } else { "off" },
                r.acknowledged,
                r.attempted,
                r.consistent,
                r.stuck,
                r.missing,
                r.oversold_units,
                r.double_charges,
                r.held_units,
                r.charged_unconfirmed,
                r.violations.len(),
                r.kills,
                r.restarts,
            ));
        }
        t
    }
}

/// Noise and crash-after-commit, re-applied whenever a process restarts
/// (gremlins live in memory). Every Nth write, so the run is repeatable.
async fn arm_gremlins(http: &reqwest::Client, url: &str) {
    let _ = http
        .post(format!("{url}/gremlin/noise"))
        .json(&json!({ "enabled": true, "every_nth": 13 }))
        .send()
        .await;
    let _ = http
        .post(format!("{url}/gremlin/crash"))
        .json(&json!({ "enabled": true, "every_nth": 157 }))
        .send()
        .await;
}

async fn set_latency(http: &reqwest::Client, url: &str, on: bool) {
    let _ = http
        .post(format!("{url}/gremlin/latency"))
        .json(&json!({ "delay_ms": 900, "jitter_ms": 300, "enabled": on }))
        .send()
        .await;
}

/// Runs the whole schedule against a migrated, empty database.
pub async fn run(cfg: &ChaosConfig) -> anyhow::Result<ChaosReport> {
    std::fs::create_dir_all(&cfg.log_dir)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut order_args = vec![
        "--call-timeout-ms",
        "500",
        "--breaker-open-ms",
        "1000",
        "--reconcile-interval-ms",
        "200",
    ];
    if !cfg.cure {
        order_args.extend([
            "--call-retries",
            "0",
            "--circuit-breaker",
            "false",
            "--reconciler",
            "false",
        ]);
    }
    // Over Unix sockets, as `valerix up` runs them: a killed service leaves
    // its socket file behind, and its restart must replace it.
    let mut stack = StackBuilder::new(&cfg.exe)
        .with(Service::Inventory, 1)
        .with(Service::Payment, 1)
        .with(Service::Order, 2)
        .database(&cfg.database_url)
        .gremlins(true)
        .logs(&cfg.log_dir)
        .unix_sockets(&cfg.log_dir)
        .env("RUST_LOG", "warn")
        .args(Service::Order, order_args)
        .start()
        .await?;
    let (inventory_url, payment_url) = (
        stack.get(Service::Inventory).url(),
        stack.get(Service::Payment).url(),
    );

    let products: Vec<String> = (1..=cfg.products).map(|i| format!("CHAOS-{i}")).collect();
    for p in &products {
        let resp = http
            .put(format!("{inventory_url}/inventory/{p}"))
            .json(&json!({ "name": p, "price_cents": 250, "stock": cfg.stock_per_product }))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "seeding {p}: {}", resp.status());
    }
    arm_gremlins(&http, &inventory_url).await;
    arm_gremlins(&http, &payment_url).await;

    // The load: clients share one counter of orders to place.
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let order_urls: Vec<String> = stack
        .replicas(Service::Order)
        .map(ServiceProcess::url)
        .collect();
    let load_start = Instant::now();
    let clients: Vec<_> = (0..cfg.clients)
        .map(|c| {
            let (next, acked, http, urls, products) = (
                next.clone(),
                acked.clone(),
                http.clone(),
                order_urls.clone(),
                products.clone(),
            );
            let total = cfg.orders;
            let interval = Duration::from_secs_f64(1.0 / cfg.rate.max(0.001));
            let seed = cfg.seed.wrapping_add(c as u64);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    tokio::time::sleep_until((load_start + interval * i as u32).into()).await;
                    let mut body = json!({
                        "product_id": products[rng.random_range(0..products.len())],
                        "quantity": rng.random_range(1..=3),
                    });
                    // Some buyers are declined, so compensation runs too.
                    if i % 20 == 0 {
                        body["user_id"] = json!(format!("decline-{i}"));
                    }
                    let answer = http
                        .post(format!("{}/orders", urls[i % urls.len()]))
                        .json(&body)
                        .send()
                        .await;
                    let Ok(resp) = answer else { continue };
                    if !resp.status().is_success() {
                        continue;
                    }
                    if let Ok(o) = resp.json::<serde_json::Value>().await
                        && let Some(id) = o["id"].as_str().and_then(|s| s.parse().ok())
                        && let Ok(mut a) = acked.lock()
                    {
                        a.push(id);
                    }
                }
            })
        })
        .collect();

    // The faults, until the load is done.
    let load_done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let load_done = load_done.clone();
        tokio::spawn(async move {
            for c in clients {
                let _ = c.await;
            }
            load_done.store(true, Ordering::Relaxed);
        })
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (mut kills, mut restarts) = (0, 0);
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(800..2000));
    let mut next_latency = Instant::now() + Duration::from_millis(rng.random_range(1000..3000));
    let mut latency_on: Option<(Service, Instant)> = None;
    while !load_done.load(Ordering::Relaxed) {
        let now = Instant::now();
        let victims = [Service::Inventory, Service::Payment];
        if now >= next_kill {
            stack
                .get(victims[rng.random_range(0..victims.len())])
                .sigkill();
            kills += 1;
            next_kill = now + Duration::from_millis(rng.random_range(1000..2500));
            // Stay down a moment, so callers see it gone, not just restarted.
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        }
        for service in victims {
            let svc = stack.get_mut(service);
            if svc.is_dead() {
                svc.start().await?;
                restarts += 1;
                arm_gremlins(&http, &svc.url()).await;
            }
        }
        match latency_on {
            Some((victim, until)) if now >= until => {
                set_latency(&http, &stack.get(victim).url(), false).await;
                latency_on = None;
                next_latency = now + Duration::from_millis(rng.random_range(1000..3000));
            }
            None if now >= next_latency => {
                let victim = victims[rng.random_range(0..victims.len())];
                set_latency(&http, &stack.get(victim).url(), true).await;
                latency_on = Some((
                    victim,
                    now + Duration::from_millis(rng.random_range(1000..2500)),
                ));
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = watcher.await;
    let load_time = load_start.elapsed();

    // Heal: everything up, every gremlin gone.
    for service in [Service::Inventory, Service::Payment] {
        let svc = stack.get_mut(service);
        if svc.is_dead() {
            svc.start().await?;
            restarts += 1;
        }
        let _ = http.delete(format!("{}/gremlin", svc.url())).send().await;
    }

    let pool = PgPool::connect(&cfg.database_url).await?;
    let settle_start = Instant::now();
    loop {
        let unsettled: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE status IN {}",
            OrderStatus::unsettled_sql()
        ))
        .fetch_one(&pool)
        .await?;
        // Settled includes the stock of the CONFIRMED orders committed: a
        // commit that failed while inventory was down waits for the order
        // service's sweep (every 5 s), and the stack stops right after this.
        let uncommitted = audit::outstanding_stock_commits(&pool).await?;
        if unsettled + uncommitted == 0 || settle_start.elapsed() > cfg.settle_within {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settle_time = settle_start.elapsed();

    let mut report = measure(
        &pool,
        cfg,
        acked.lock().map(|a| a.clone()).unwrap_or_default(),
    )
    .await?;
    report.kills = kills;
    report.restarts = restarts;
    report.load_time = load_time;
    report.settle_time = settle_time;
    stack.stop(Duration::from_secs(10)).await;
    pool.close().await;
    Ok(report)
}

async fn measure(
    pool: &PgPool,
    cfg: &ChaosConfig,
    acked: Vec<Uuid>,
) -> anyhow::Result<ChaosReport> {
    let unique: HashSet<Uuid> = acked.iter().copied().collect();
    let ids: Vec<Uuid> = unique.into_iter().collect();
    let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(pool)
        .await?;
    let count = |status: OrderStatus| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM orders WHERE status = $1")
            .bind(status)
            .fetch_one(pool)
    };
    let confirmed = count(OrderStatus::Confirmed).await?;
    let failed = count(OrderStatus::Failed).await?;
    let stuck: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM orders WHERE status IN {}",
        OrderStatus::unsettled_sql()
    ))
    .fetch_one(pool)
    .await?;
    let oversold_units: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(GREATEST(sold - $1, 0)), 0)::BIGINT FROM
           (SELECT product_id, SUM(quantity) AS sold FROM reservations WHERE status IN ('COMMITTED', 'RESERVED') GROUP BY product_id) s",
    )
    .bind(i64::from(cfg.stock_per_product))
    .fetch_one(pool)
    .await?;
    let double_charges: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT order_id FROM payments WHERE status IN ('COMPLETED', 'REFUNDED')
                                GROUP BY order_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(pool)
    .await?;
    let held_units: i64 = sqlx::query_scalar(&format!(
        "SELECT COALESCE(SUM(r.quantity), 0)::BIGINT FROM reservations r JOIN orders o ON o.id = r.order_id
         WHERE r.status = 'RESERVED' AND o.status IN {}",
        OrderStatus::unsettled_sql()
    ))
    .fetch_one(pool)
    .await?;
    let charged_unconfirmed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id
         WHERE p.status = 'COMPLETED' AND o.status <> 'CONFIRMED'",
    )
    .fetch_one(pool)
    .await?;
    let audit = audit::audit(pool, None).await?;
    let order_violations = audit
        .violations
        .iter()
        .filter(|v| v.detail.starts_with("order "))
        .count() as i64;
    Ok(ChaosReport {
        cure: cfg.cure,
        attempted: cfg.orders,
        acknowledged: acked.len(),
        missing: ids.len() - found as usize,
        confirmed,
        failed,
        stuck,
        consistent: confirmed + failed - order_violations,
        oversold_units,
        double_charges,
        held_units,
        charged_unconfirmed,
        violations: audit.violations,
        ..ChaosReport::default()
    })
}

/// `valerix chaos`: the schedule with the cure off and on, each on a fresh
/// database of a throwaway cluster, and the table of what happened.
pub async fn demo(orders: usize, rate: f64, cures: &[bool]) -> anyhow::Result<Vec<ChaosReport>> {
    let cluster = tokio::task::spawn_blocking(valerix_devdb::Cluster::start).await??;
    let exe = std::env::current_exe().context("locating the valerix binary")?;
    let mut reports = Vec::new();
    for &cure in cures {
        let name = if cure {
            "chaos_cure_on"
        } else {
            "chaos_cure_off"
        };
        let mut admin =
            <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let url = cluster.url(name);
        valerix_runtime::db::connect_and_migrate(&valerix_runtime::config::DatabaseArgs::from_url(
            &url,
        ))
        .await?
        .close()
        .await;
        let mut cfg = ChaosConfig::new(exe.clone(), url, cluster.dir().join("logs"));
        cfg.orders = orders;
        cfg.rate = rate;
        cfg.cure = cure;
        // Without a reconciler nothing settles later: do not wait long for it.
        cfg.settle_within = if cure {
            Duration::from_secs(90)
        } else {
            Duration::from_secs(15)
        };
        eprintln!(
            "running the fault schedule with the cure {}...",
            if cure { "on" } else { "off" }
        );
        reports.push(run(&cfg).await?);
    }
    Ok(reports)
}
