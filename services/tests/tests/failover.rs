//! Losing the database's primary loses no acknowledged order: the stack on
//! PostgreSQL under Patroni (etcd, a synchronous standby, HAProxy), as
//! `valerix up --ha` runs it and as `valerix drill failover` rehearses it.
//!
//! These need `patroni`, `etcd` and `haproxy` (Debian: `apt-get install
//! patroni etcd-server haproxy`): ignored unless asked for
//! (`--include-ignored`, as CI does).

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The two tests each run a database cluster and the whole stack; on two
/// cores, side by side, each would measure the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The processes whose command line names `dir`.
fn processes_under(dir: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(dir).then_some(cmdline)
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs patroni, etcd and haproxy (apt-get install patroni etcd-server haproxy)"]
async fn up_with_ha_serves_orders_and_removes_its_nodes_when_stopped() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let up = common::Up::start_with(common::free_base_port(), &["--ha", "--no-observability"]);
    let line = up
        .printed
        .iter()
        .find(|l| l.contains("nodes under Patroni in"))
        .unwrap_or_else(|| panic!("no HA cluster line in {:#?}", up.printed));
    assert!(
        line.contains("leader") && line.contains("sync_standby"),
        "{line}"
    );
    let dir = line
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(", HAProxy").next())
        .expect("the cluster's directory")
        .to_owned();
    assert!(std::path::Path::new(&dir).is_dir(), "{dir}");

    let http = reqwest::Client::new();
    let gateway = up.url(up.base - 1);
    let answer = http
        .post(format!("{gateway}/api/orders"))
        .json(&json!({"product_id": "PROD-1", "quantity": 1}))
        .send()
        .await
        .expect("order");
    assert_eq!(answer.status().as_u16(), 201);
    let order: Value = answer.json().await.expect("json");
    assert_eq!(order["status"], "CONFIRMED", "{order}");

    let status = up.interrupt();
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is removed");
    // Patroni stops its PostgreSQL; nothing of the cluster lingers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_under(&dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(processes_under(&dir), Vec::<String>::new());
}

/// `failover: 4012 acknowledged, 0 lost, orders confirmed again after 10.9 s`
fn parse_last_line(line: &str) -> Option<(u64, u64, f64)> {
    let rest = line.strip_prefix("failover: ")?;
    let (acked, rest) = rest.split_once(" acknowledged, ")?;
    let (lost, rest) = rest.split_once(" lost, orders confirmed again after ")?;
    let secs = rest.strip_suffix(" s")?;
    Some((acked.parse().ok()?, lost.parse().ok()?, secs.parse().ok()?))
}

#[test]
#[ignore = "needs patroni, etcd and haproxy (apt-get install patroni etcd-server haproxy)"]
fn the_failover_drill_loses_no_acknowledged_order() {
    let _alone = ONE_AT_A_TIME.blocking_lock();
    let out = Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
        .args([
            "drill",
            "failover",
            "--rate",
            "150",
            "--settle-within",
            "120s",
        ])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("run valerix drill failover");
    let printed = String::from_utf8_lossy(&out.stdout);
    eprintln!("{printed}");
    assert!(out.status.success(), "the drill failed: {}", out.status);

    let last = printed.lines().last().unwrap_or_default();
    let (acknowledged, lost, confirmed_again) =
        parse_last_line(last).unwrap_or_else(|| panic!("last line {last:?}"));
    assert_eq!(lost, 0);
    assert!(acknowledged > 1000, "{acknowledged} acknowledged");
    // Not a speed goal (that is printed: under 12 s with ttl 10): a bound
    // that only a failover that did not happen as configured misses.
    assert!(confirmed_again < 40.0, "{confirmed_again} s");

    let line = |prefix: &str| {
        printed
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line"))
            .to_owned()
    };
    assert!(line("orders:").contains(" 0 lost, 0 unsettled, 0 changed"));
    assert!(line("audit:").contains("clean; double charges: 0"));
    assert!(line("services:").contains("none exited"));
    // Clients are told to come back (503 with Retry-After), never that the
    // service failed (500) or that the gateway found nobody (502).
    let errors = line("errors, whole run:");
    for bad in ["× 500", "× 502"] {
        assert!(!errors.contains(bad), "{errors}");
    }
    assert!(
        line("in the gap:").contains("503 database-unavailable"),
        "the clients saw the database missing"
    );
    // Readiness follows the database: down in the gap, up after it.
    let health = line("health:");
    assert!(
        !health.contains("never"),
        "the order service's health did not follow the database: {health}"
    );
}
