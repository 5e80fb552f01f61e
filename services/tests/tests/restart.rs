//! Restarts cost nothing: under a steady load through the gateway, each
//! service of a `valerix up` stack is stopped with SIGTERM, then killed with
//! SIGKILL, and the gateway itself stopped with SIGTERM; `valerix up` starts
//! each again. Its sockets are held by `valerix up` and passed to every
//! process of it (socket activation), so no client's connection is refused
//! or reset, no answer is a 502 or 503, every acknowledged order settles,
//! the audit is clean, and the order service's circuit breakers stay
//! closed. (A SIGKILLed gateway takes the requests it was forwarding with
//! it: nothing can answer them, so it is not killed here.)

mod common;

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::{Value, json};

/// Clients placing orders one after the other, each on its own keep-alive
/// connection to the gateway, as a shop's frontends would.
const CLIENTS: usize = 64;
/// The load the test must hold while services restart.
const MIN_ORDERS_PER_SEC: f64 = 500.0;
const PRODUCTS: [&str; 3] = ["PROD-1", "PROD-2", "PROD-3"];

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What the clients saw, by kind.
#[derive(Debug, Default)]
struct Seen {
    /// Orders answered 201 or 202, by id.
    acknowledged: Vec<String>,
    statuses: BTreeMap<u16, usize>,
    refused: usize,
    /// Connections reset or closed before the answer, and other transport
    /// errors, with a sample.
    broken: Vec<String>,
}

/// The process ids of `valerix service <command>` under `up`.
fn service_pid(up: i32, command: &str) -> Option<i32> {
    use valerix_testkit::process::{all_pids, parent_of};
    let wanted = format!("service\0{command}\0");
    all_pids()
        .into_iter()
        .filter(|&p| parent_of(p) == Some(up))
        .find(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
        })
}

async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One client: orders until `stop`, noting every outcome.
async fn client(
    http: reqwest::Client,
    url: String,
    n: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        i += CLIENTS;
        let body = json!({ "product_id": PRODUCTS[i % PRODUCTS.len()], "quantity": 1 });
        let sent = http.post(&url).json(&body).send().await;
        let outcome = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let order: Value = resp.json().await.unwrap_or(Value::Null);
                Ok((status, order["id"].as_str().map(str::to_owned)))
            }
            Err(err) => Err(err),
        };
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok((status, id)) => {
                *seen.statuses.entry(status).or_default() += 1;
                if let (201 | 202, Some(id)) = (status, id) {
                    seen.acknowledged.push(id);
                }
            }
            Err(err) if err.is_connect() => seen.refused += 1,
            Err(err) => seen.broken.push(valerix_runtime::client::error_chain(&err)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_restarted_under_load_refuse_nothing_and_lose_nothing() {
    let up = common::Up::start();
    let up_pid = up.pid();
    let gateway = up.url(up.base - 1);
    let token = up.operator_token();
    let database_url = up
        .printed
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with("postgres://"))
        .unwrap_or_else(|| panic!("no database URL in {:#?}", up.printed))
        .to_owned();
    let http = reqwest::Client::new();
    for product in PRODUCTS {
        let resp = http
            .put(format!("{gateway}/api/inventory/{product}"))
            .bearer_auth(&token)
            .json(&json!({ "name": product, "price_cents": 100, "stock": 10_000_000 }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("restock {product}: {e}"));
        assert!(
            resp.status().is_success(),
            "restock {product}: {}",
            resp.status()
        );
    }

    // The order service's breakers, every 50 ms while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let breaker_states = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let watch = {
        let (stop, states, http) = (stop.clone(), breaker_states.clone(), http.clone());
        let health = format!("{}/health", up.url(up.base));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(resp) = http.get(&health).send().await
                    && let Ok(h) = resp.json::<Value>().await
                {
                    let mut states = states.lock().unwrap_or_else(|p| p.into_inner());
                    for key in ["inventory-service-circuit", "payment-service-circuit"] {
                        if let Some(state) = h["dependencies"][key].as_str() {
                            *states.entry(format!("{key}={state}")).or_default() += 1;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let seen = Arc::new(Mutex::new(Seen::default()));
    let orders = format!("{gateway}/api/orders");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                http.clone(),
                orders.clone(),
                n,
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let acknowledged = || seen.lock().map_or(0, |s| s.acknowledged.len());
    // Warm: the load is steady before the first restart.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut restarts = Vec::new();
    let rounds = ["inventory", "payment", "order"]
        .into_iter()
        .flat_map(|c| [(c, Signal::SIGTERM), (c, Signal::SIGKILL)])
        .chain([("gateway", Signal::SIGTERM)]);
    for (command, signal) in rounds {
        let old = service_pid(up_pid, command)
            .unwrap_or_else(|| panic!("no {command} service under valerix up"));
        let before = acknowledged();
        let at = Instant::now();
        kill(Pid::from_raw(old), signal).unwrap_or_else(|e| panic!("{signal} {command}: {e}"));
        // valerix up starts it again; it serves once it is healthy.
        let port = match command {
            "order" => up.base,
            "inventory" => up.base + 1,
            "payment" => up.base + 2,
            _ => up.base - 1,
        };
        let health = format!("{}/health", up.url(port));
        wait_for(
            &format!("{command} back after {signal}"),
            Duration::from_secs(30),
            || {
                let (http, health) = (http.clone(), health.clone());
                async move {
                    let new = service_pid(up_pid, command).filter(|&p| p != old)?;
                    let resp = http.get(&health).send().await.ok()?;
                    resp.status().is_success().then_some(new)
                }
            },
        )
        .await;
        let back = at.elapsed();
        // A second of load on the new process before the next signal.
        wait_for(
            "orders on the new process",
            Duration::from_secs(30),
            || async { (acknowledged() > before + 200).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        restarts.push(format!(
            "{command} {signal}: serving again {back:.0?} later"
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let _ = watch.await;
    let took = started.elapsed();
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let rate = seen.acknowledged.len() as f64 / took.as_secs_f64();
    let breakers = breaker_states.lock().map(|s| s.clone()).unwrap_or_default();
    report(&format!(
        "restart: {} orders acknowledged in {took:.1?} ({rate:.0}/s, {CLIENTS} clients through the gateway); answers {:?}; refused {}; broken {}; breakers seen {breakers:?}",
        seen.acknowledged.len(),
        seen.statuses,
        seen.refused,
        seen.broken.len(),
    ));
    for line in &restarts {
        report(&format!("  {line}"));
    }

    assert_eq!(seen.refused, 0, "connections refused");
    assert!(
        seen.broken.is_empty(),
        "{} requests got no answer, e.g. {:?}",
        seen.broken.len(),
        seen.broken.first()
    );
    let failed: BTreeMap<_, _> = seen
        .statuses
        .iter()
        .filter(|(s, _)| !matches!(**s, 201 | 202))
        .collect();
    assert!(failed.is_empty(), "answers other than 201/202: {failed:?}");
    assert!(
        breakers.keys().all(|k| k.ends_with("=closed")),
        "a breaker left closed: {breakers:?}"
    );
    // An unoptimised build of four services and PostgreSQL on a small
    // machine carries about a fifth of the load: the rate is held to the
    // mark only in a release build (`cargo test --release`).
    if cfg!(debug_assertions) {
        report(&format!(
            "restart: a debug build; {MIN_ORDERS_PER_SEC} orders/s is checked with --release"
        ));
    } else {
        assert!(
            rate >= MIN_ORDERS_PER_SEC,
            "the load was {rate:.0} orders/s, below {MIN_ORDERS_PER_SEC}"
        );
    }

    // Every acknowledged order is there and settles.
    let pool = sqlx::PgPool::connect(&database_url)
        .await
        .unwrap_or_else(|e| panic!("connect {database_url}: {e}"));
    let ids: Vec<uuid::Uuid> = seen
        .acknowledged
        .iter()
        .map(|id| id.parse().unwrap_or_else(|e| panic!("order id {id}: {e}")))
        .collect();
    let settle = Instant::now();
    let unsettled = wait_for(
        "every acknowledged order settled",
        Duration::from_secs(60),
        || {
            let (pool, ids) = (pool.clone(), ids.clone());
            async move {
                let (found, unsettled): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE status NOT IN ('CONFIRMED', 'FAILED'))
                 FROM orders WHERE id = ANY($1)",
                )
                .bind(&ids)
                .fetch_one(&pool)
                .await
                .ok()?;
                assert_eq!(found as usize, ids.len(), "acknowledged orders missing");
                (unsettled == 0).then_some(unsettled)
            }
        },
    )
    .await;
    report(&format!(
        "restart: all {} acknowledged orders settled {:.1?} after the load ({unsettled} left)",
        ids.len(),
        settle.elapsed()
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let committed = valerix::audit::wait_for_stock_commits(&pool, deadline)
        .await
        .unwrap_or_else(|e| panic!("stock commits: {e}"));
    assert!(committed, "stock commits outstanding after 30 s");
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
        .args(["audit", "--database-url", &database_url])
        .output()
        .unwrap_or_else(|e| panic!("valerix audit: {e}"));
    assert!(
        audit.status.success(),
        "valerix audit: {}\n{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    let stopped = up.interrupt();
    assert!(stopped.success(), "valerix up exited with {stopped}");
}
