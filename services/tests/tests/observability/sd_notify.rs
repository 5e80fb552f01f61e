//! The systemd contract of a service process, with this test playing
//! systemd: READY=1 after the database and migrations, WATCHDOG=1 at half of
//! WATCHDOG_USEC while the process works, whether or not the database
//! answers (its state goes to STATUS= and /health), STOPPING=1 and a graceful
//! drain on SIGTERM. The database is a cluster of this test's own, stopped
//! and started again underneath the running service.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection};
use valerix_testkit::{
    devdb::Cluster,
    metrics::{parse, value},
    process::{self, NotifySocket, Service, ServiceProcess},
};

use crate::support::exe;

const WATCHDOG_USEC: u64 = 1_000_000;

fn has(msg: &[String], line: &str) -> bool {
    msg.iter().any(|l| l.starts_with(line))
}

/// The next `n` WATCHDOG=1 messages; panics unless each comes within the
/// watchdog timeout of the previous one (systemd would kill us otherwise).
async fn pings(notify: &mut NotifySocket, n: usize) -> Vec<Instant> {
    let timeout = Duration::from_micros(WATCHDOG_USEC);
    let mut at = Vec::new();
    while at.len() < n {
        let msg = notify.recv(timeout).await.unwrap_or_else(|| {
            panic!(
                "no WATCHDOG=1 within {timeout:?} (after {} pings)",
                at.len()
            )
        });
        if has(&msg, "WATCHDOG=1") {
            at.push(Instant::now());
        }
    }
    at
}

fn notify(svc: &mut ServiceProcess) -> &mut NotifySocket {
    svc.notifications().expect("started")
}

async fn with_cluster<T: Send + 'static>(
    cluster: &Arc<Mutex<Cluster>>,
    f: impl FnOnce(&mut Cluster) -> T + Send + 'static,
) -> T {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || f(&mut cluster.lock().expect("cluster lock")))
        .await
        .expect("cluster task")
}

#[tokio::test]
async fn readiness_watchdog_and_stopping_follow_the_database_and_sigterm() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("join")
        .expect("PostgreSQL");
    let url = cluster.url("valerix");
    let mut admin = PgConnection::connect(&cluster.url("postgres"))
        .await
        .expect("admin");
    sqlx::query("CREATE DATABASE valerix")
        .execute(&mut admin)
        .await
        .expect("create");
    admin.close().await.expect("close");
    let cluster = Arc::new(Mutex::new(cluster));

    let usec = WATCHDOG_USEC.to_string();
    // WATCHDOG_PID unset: sd-notify 0.5 then takes the watchdog as ours.
    // JOURNAL_STREAM set: as under systemd, but with no journald running.
    let mut svc = process::service(exe(), Service::Inventory)
        .args(["--database-url", &url, "--gremlins"])
        .env("WATCHDOG_USEC", &usec)
        .env("JOURNAL_STREAM", "8:424242");
    svc.start()
        .await
        .unwrap_or_else(|e| panic!("inventory-service: {e}"));
    let svc_url = svc.url();

    // READY=1 came last, after the start-up status, with the address.
    let startup = &svc.startup;
    assert!(
        has(&startup[0], "STATUS=connecting to the database"),
        "{startup:?}"
    );
    let ready = startup.last().expect("READY=1");
    assert!(
        has(ready, "READY=1") && has(ready, "STATUS=serving on "),
        "{ready:?}"
    );
    assert!(
        !startup[..startup.len() - 1]
            .iter()
            .any(|m| has(m, "READY=1"))
    );

    // Pings at half of WATCHDOG_USEC while the database answers.
    let at = pings(notify(&mut svc), 3).await;
    let gaps: Vec<_> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|g| *g > Duration::from_millis(250) && *g < Duration::from_millis(900)),
        "pings every ~500 ms: {gaps:?}"
    );

    // The database goes away: the status says so, and the pings go on (a
    // database restart or failover must not make systemd kill the service).
    with_cluster(&cluster, Cluster::stop_server).await;
    notify(&mut svc)
        .wait_for("STATUS=unhealthy", Duration::from_secs(5))
        .await
        .unwrap_or_else(|seen| panic!("no STATUS=unhealthy; received {seen:?}"));
    pings(notify(&mut svc), 4).await;
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/health", svc_url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);

    // It comes back: the status says so, and the pings never stopped.
    with_cluster(&cluster, Cluster::start_server)
        .await
        .expect("restart PostgreSQL");
    notify(&mut svc)
        .wait_for("STATUS=serving on ", Duration::from_secs(10))
        .await
        .unwrap_or_else(|seen| panic!("no STATUS=serving; received {seen:?}"));
    pings(notify(&mut svc), 2).await;

    // SIGTERM while a request is in flight: STOPPING=1, the request still
    // gets its answer, then a clean exit.
    let slow = http
        .post(format!("{}/gremlin/latency", svc_url))
        .json(&serde_json::json!({ "delay_ms": 1000, "enabled": true }))
        .send()
        .await
        .expect("gremlin");
    assert!(slow.status().is_success());
    let inflight = tokio::spawn({
        let (http, url) = (http.clone(), format!("{}/inventory", svc_url));
        async move { http.get(url).send().await.map(|r| r.status()) }
    });
    valerix_testkit::eventually(
        "the request to be in flight",
        Duration::from_secs(5),
        || {
            let (http, url) = (http.clone(), format!("{}/metrics", svc_url));
            async move {
                let text = http.get(url).send().await.ok()?.text().await.ok()?;
                let n = value(
                    &parse(&text),
                    "http_requests_in_flight",
                    &[("service", "inventory-service")],
                );
                (n >= Some(1.0)).then_some(())
            }
        },
    )
    .await;
    let status = svc.stop(Duration::from_secs(15)).await.unwrap_or_else(|| {
        panic!(
            "no exit within 15 s of SIGTERM; output:\n{}",
            svc.captured()
        )
    });
    let mut rest = Vec::new();
    while let Some(msg) = notify(&mut svc).recv(Duration::from_millis(100)).await {
        rest.push(msg);
    }
    assert!(rest.iter().any(|m| has(m, "STOPPING=1")), "{rest:?}");
    let answered = inflight
        .await
        .expect("join")
        .expect("the in-flight request was answered");
    assert_eq!(answered, reqwest::StatusCode::OK);
    assert!(status.success(), "{status}; output:\n{}", svc.captured());

    // Without a journald socket: the logs fell back to stderr and said why.
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("journald is present: the stderr fallback is not checked");
    } else {
        assert!(
            svc.captured().contains("journald is not reachable"),
            "{}",
            svc.captured()
        );
    }
}
