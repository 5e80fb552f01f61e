//! The restore drill, with real PostgreSQL, real pgBackRest and the real
//! services as processes: orders under load (some through a gremlin
//! window), the daily backup and off-site upload, more orders, the data
//! directory deleted, a restore to the latest archived WAL, and the shop
//! open again with every order it acknowledged before the last archived
//! segment. Also a restore to a point in time between two orders, and
//! `valerix backup`/`restore` against `valerix up --backup-dir`.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use valerix::backup::{
    self,
    dev::{self, BackedUpCluster},
    dir::BackupDir,
};
use valerix_devdb::{Cluster, Options};
use valerix_runtime::{config::DatabaseArgs, db, topology::Service};
use valerix_stack::{Stack, StackBuilder};
use valerix_testkit::eventually;

const VALERIX: &str = env!("CARGO_BIN_EXE_valerix-under-test");

/// pgBackRest is what is under test: the tests that need it are
/// `#[ignore]`d (run with `--include-ignored`, as `.ci/run` does, which
/// installs it), and fail without it.
fn require_pgbackrest() {
    if let Err(e) = backup::find_pgbackrest() {
        panic!("{e}");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("valerix-{name}-{}", uuid::Uuid::new_v4().simple()))
}

/// `valerix ARGS`, its output shown (it says what it ran).
fn valerix(args: &[&str]) -> Output {
    let out = Command::new(VALERIX)
        .args(args)
        .output()
        .expect("run valerix");
    println!(
        "valerix {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn valerix_ok(args: &[&str]) -> Output {
    let out = valerix(args);
    assert!(out.status.success(), "valerix {} failed", args.join(" "));
    out
}

/// A throwaway cluster archiving into `dir` (what `valerix up
/// --backup-dir` starts), with the `valerix` database migrated and the
/// first full backup taken by `valerix backup`.
async fn backed_up_cluster(dir: &BackupDir, archive_timeout: Duration) -> BackedUpCluster {
    let d = dir.clone();
    let started =
        tokio::task::spawn_blocking(move || dev::start_cluster(&d, None, archive_timeout))
            .await
            .expect("join")
            .expect("cluster with backups");
    let mut admin = PgConnection::connect(&started.cluster.url("postgres"))
        .await
        .expect("connect");
    sqlx::query("CREATE DATABASE valerix")
        .execute(&mut admin)
        .await
        .expect("create database");
    db::connect_and_migrate(&DatabaseArgs::from_url(started.cluster.url("valerix")))
        .await
        .expect("migrate")
        .close()
        .await;
    let root = dir.root().display().to_string();
    valerix_ok(&["backup", "--backup-dir", &root, "--type", "full"]);
    started
}

async fn start_stack(database_url: &str) -> Stack {
    let stack = StackBuilder::new(Path::new(VALERIX))
        .all()
        .database(database_url)
        .gremlins(true)
        .capture_output()
        .env("RUST_LOG", "warn")
        .start()
        .await
        .expect("stack");
    valerix::seed::seed(&stack.get(Service::Inventory).url())
        .await
        .expect("seed");
    stack
}

/// An order the shop acknowledged (201 or 202) and the status it answered.
#[derive(Debug, Clone)]
struct Acked {
    id: String,
    answered: String,
}

/// `n` orders, eight at a time, across three products (PROD-3 has little
/// stock, so some fail). Only acknowledged ones are returned; anything
/// else the shop answers is a failure of the drill.
async fn place_orders(http: &reqwest::Client, order_url: &str, n: usize) -> Vec<Acked> {
    stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let url = format!("{order_url}/orders");
            async move {
                let product = ["PROD-1", "PROD-2", "PROD-3"][i % 3];
                let resp = http
                    .post(&url)
                    .json(&json!({ "product_id": product, "quantity": 1 }))
                    .send()
                    .await
                    .expect("POST /orders");
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.expect("order JSON");
                assert!(
                    status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
                    "{status}: {body}"
                );
                Acked {
                    id: body["id"].as_str().expect("id").to_owned(),
                    answered: body["status"].as_str().expect("status").to_owned(),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

async fn statuses(pool: &PgPool) -> BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>("SELECT id::text, status FROM orders")
        .fetch_all(pool)
        .await
        .expect("orders")
        .into_iter()
        .collect()
}

/// Closes the current WAL segment and waits until pgBackRest has archived
/// it: from here on, everything committed so far survives the disk.
async fn switch_and_archive(pool: &PgPool) -> String {
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(pool)
        .await
        .expect("pg_switch_wal");
    wait_archived(pool, &segment).await;
    segment
}

async fn wait_archived(pool: &PgPool, segment: &str) {
    eventually(
        &format!("WAL segment {segment} archived"),
        Duration::from_secs(30),
        || async {
            let (archived, failed): (Option<String>, Option<String>) =
                sqlx::query_as("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
                    .fetch_one(pool)
                    .await
                    .ok()?;
            assert!(
                failed.is_none(),
                "archiving failed for {failed:?}: see the server log"
            );
            archived.filter(|a| a.as_str() >= segment)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs pgbackrest (Debian: pgbackrest); run with --include-ignored"]
async fn drill_the_shop_survives_losing_the_database_disk() {
    require_pgbackrest();
    let dir = BackupDir::new(&temp_dir("backup"));
    let offsite = temp_dir("offsite");
    let root = dir.root().display().to_string();
    // The production setting: the drill forces WAL switches where it needs
    // them instead of waiting.
    let mut db = backed_up_cluster(&dir, backup::ARCHIVE_TIMEOUT).await;
    let url = db.cluster.url("valerix");
    let pool = PgPool::connect(&url).await.expect("pool");
    let mut stack = start_stack(&db.cluster.socket_url("valerix")).await;
    let http = reqwest::Client::new();
    let order_url = stack.get(Service::Order).url();
    let inventory_url = stack.get(Service::Inventory).url();

    // Orders under load, some through a window where inventory answers
    // after the order service's call timeout (they are acknowledged
    // PENDING_INVENTORY and settled by the reconciler).
    let mut acked = place_orders(&http, &order_url, 120).await;
    let gremlin = http
        .post(format!("{inventory_url}/gremlin/latency"))
        .json(&json!({ "delay_ms": 3000, "enabled": true }))
        .send()
        .await
        .expect("gremlin");
    assert!(gremlin.status().is_success(), "{}", gremlin.status());
    let slow = place_orders(&http, &order_url, 8).await;
    http.delete(format!("{inventory_url}/gremlin"))
        .send()
        .await
        .expect("clear gremlin");
    assert!(
        slow.iter().any(|o| o.answered.starts_with("PENDING")),
        "the gremlin window left orders pending: {slow:?}"
    );
    acked.extend(slow);

    // The daily backup and the day's one off-site upload; a second upload
    // the same day is refused (exit 3) and copies nothing.
    let in_daily_backup: Vec<String> = acked.iter().map(|o| o.id.clone()).collect();
    valerix_ok(&["backup", "--backup-dir", &root, "--type", "diff"]);
    let repo = dir.repo().display().to_string();
    let target = offsite.display().to_string();
    valerix_ok(&["upload-offsite", "--repo", &repo, "--target", &target]);
    assert!(
        offsite.join("backup/valerix/backup.info").is_file(),
        "the off-site copy is a pgBackRest repository"
    );
    let again = valerix(&["upload-offsite", "--repo", &repo, "--target", &target]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "a second upload today is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("refused"));

    acked.extend(place_orders(&http, &order_url, 120).await);

    // Everything settles; what the shop then shows is what must survive.
    let before = eventually("every order settled", Duration::from_secs(60), || async {
        let now = statuses(&pool).await;
        acked
            .iter()
            .all(|o| {
                now.get(&o.id)
                    .is_some_and(|s| s == "CONFIRMED" || s == "FAILED")
            })
            .then_some(now)
    })
    .await;
    let segment = switch_and_archive(&pool).await;
    let archived_at = Instant::now();
    // Acknowledged after the last archived segment: what the disk takes
    // with it, at most archive_timeout's worth in production.
    let at_risk = place_orders(&http, &order_url, 10).await;

    // The disk is gone: the data directory deleted under the running
    // server, which then stops.
    stack.stop(Duration::from_secs(10)).await;
    let data_dir = db.cluster.data_dir();
    std::fs::remove_dir_all(&data_dir).expect("rm -rf the data directory");
    let lost_at = Instant::now();
    let exposed = lost_at - archived_at;
    db.cluster.stop_server();
    assert!(!data_dir.exists());

    valerix_ok(&["restore", "--backup-dir", &root, "--to", "latest"]);
    assert!(data_dir.join("PG_VERSION").is_file(), "restored");
    db.cluster
        .start_server()
        .expect("start the restored cluster");
    dev::wait_promoted(&db.cluster.url("postgres"), Duration::from_secs(60))
        .await
        .expect("recovery finished");
    let pool = PgPool::connect(&url).await.expect("pool after restore");
    let mut stack = start_stack(&db.cluster.socket_url("valerix")).await;
    let order_url = stack.get(Service::Order).url();
    let fresh = place_orders(&http, &order_url, 3).await;
    let rto = lost_at.elapsed();

    // Every order acknowledged before the last archived segment is there,
    // with the status it had.
    let after = statuses(&pool).await;
    for (id, status) in &before {
        assert_eq!(
            after.get(id),
            Some(status),
            "order {id} came back as it was"
        );
    }
    let lost = at_risk
        .iter()
        .filter(|o| !after.contains_key(&o.id))
        .count();
    assert_eq!(fresh.len(), 3, "the restored shop takes new orders");
    let audit = valerix(&["audit", "--database-url", &url]);
    assert!(
        audit.status.success(),
        "valerix audit is clean after the restore"
    );

    println!(
        "RESTORE DRILL: {} orders before the last archived segment ({segment}), all restored with their status; \
         {lost} of {} orders acknowledged in the {:.1}s after it were lost (RPO promised: archive_timeout = {}s); \
         from the disk lost to new orders accepted: {:.1}s (RTO, restore of a {} database)",
        before.len(),
        at_risk.len(),
        exposed.as_secs_f64(),
        backup::ARCHIVE_TIMEOUT.as_secs(),
        rto.as_secs_f64(),
        sqlx::query_scalar::<_, String>("SELECT pg_size_pretty(pg_database_size('valerix'))")
            .fetch_one(&pool)
            .await
            .expect("size"),
    );

    stack.stop(Duration::from_secs(10)).await;
    pool.close().await;
    drop(db);

    // The whole host lost, local repository included: the day's off-site
    // copy alone brings back every order of the daily backup.
    std::fs::remove_dir_all(dir.repo()).expect("rm -rf the local repository");
    let mut spare = Cluster::empty(&Options::default()).expect("a cluster directory");
    let spare_data = spare.data_dir().display().to_string();
    valerix_ok(&[
        "restore",
        "--backup-dir",
        &root,
        "--to",
        "latest",
        "--repo",
        &target,
        "--data-dir",
        &spare_data,
    ]);
    spare
        .start_on_free_port()
        .expect("start from the off-site copy");
    dev::wait_promoted(&spare.url("postgres"), Duration::from_secs(60))
        .await
        .expect("recovery from the off-site copy");
    let spare_pool = PgPool::connect(&spare.url("valerix")).await.expect("pool");
    let from_offsite = statuses(&spare_pool).await;
    for id in &in_daily_backup {
        assert!(
            from_offsite.contains_key(id),
            "order {id} of the daily backup is in the off-site copy"
        );
    }
    println!(
        "OFF-SITE COPY: restored alone, {} orders (all {} of the daily backup)",
        from_offsite.len(),
        in_daily_backup.len()
    );
    spare_pool.close().await;
    drop(spare);
    let _ = std::fs::remove_dir_all(dir.root());
    let _ = std::fs::remove_dir_all(offsite);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pgbackrest (Debian: pgbackrest); run with --include-ignored"]
async fn restore_to_a_point_in_time_between_two_orders() {
    require_pgbackrest();
    let dir = BackupDir::new(&temp_dir("backup-pitr"));
    let root = dir.root().display().to_string();
    // A short archive_timeout: this case also shows that a quiet server
    // archives the segment holding the last commit on its own (what bounds
    // the data lost in production).
    let mut db = backed_up_cluster(&dir, Duration::from_secs(2)).await;
    let url = db.cluster.url("valerix");
    let pool = PgPool::connect(&url).await.expect("pool");
    let mut stack = start_stack(&db.cluster.socket_url("valerix")).await;
    let http = reqwest::Client::new();
    let order_url = stack.get(Service::Order).url();

    // pgBackRest picks the backup to start from by its stop time, which it
    // records in whole seconds: the target must lie in a later second.
    let next_second: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT date_trunc('second', clock_timestamp()) + interval '1 second'")
            .fetch_one(&pool)
            .await
            .expect("clock");
    eventually(
        "the server's clock in the second after the backup",
        Duration::from_secs(5),
        || async {
            sqlx::query_scalar::<_, bool>("SELECT clock_timestamp() > $1")
                .bind(next_second)
                .fetch_one(&pool)
                .await
                .ok()?
                .then_some(())
        },
    )
    .await;
    let first = place_orders(&http, &order_url, 1).await.remove(0);
    // The server's clock, after the first order's commit and before the
    // second's.
    let between: String = sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(&pool)
    .await
    .expect("clock");
    let second = place_orders(&http, &order_url, 1).await.remove(0);
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .fetch_one(&pool)
        .await
        .expect("current WAL segment");
    // No pg_switch_wal(): archive_timeout closes the segment.
    wait_archived(&pool, &segment).await;
    stack.stop(Duration::from_secs(10)).await;
    pool.close().await;
    db.cluster.stop_server();

    valerix_ok(&["restore", "--backup-dir", &root, "--to", &between]);
    db.cluster.start_server().expect("start");
    dev::wait_promoted(&db.cluster.url("postgres"), Duration::from_secs(60))
        .await
        .expect("recovery finished");
    let pool = PgPool::connect(&url).await.expect("pool");
    let after = statuses(&pool).await;
    assert!(
        after.contains_key(&first.id),
        "the order before {between} is back"
    );
    assert!(
        !after.contains_key(&second.id),
        "the order after {between} is not"
    );
    pool.close().await;
    drop(db);
    let _ = std::fs::remove_dir_all(dir.root());
}

#[tokio::test]
#[ignore = "needs pgbackrest (Debian: pgbackrest); run with --include-ignored"]
async fn backup_and_restore_against_valerix_up_with_backups() {
    require_pgbackrest();
    let dir = temp_dir("backup-up");
    let root = dir.display().to_string();
    let up = common::Up::start_with(
        common::free_base_port(),
        &["--backup-dir", &root, "--no-observability"],
    );
    assert!(
        up.printed
            .iter()
            .any(|l| l.contains("backups") && l.contains(&root)),
        "{:#?}",
        up.printed
    );
    let http = reqwest::Client::new();
    let order = place_orders(&http, &up.url(up.base), 1).await.remove(0);

    let out = valerix_ok(&["backup", "--backup-dir", &root]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("pgbackrest") && printed.contains("backup --type=full"));
    assert!(printed.contains("full backup:"), "pgbackrest info is shown");

    let refused = valerix(&["restore", "--backup-dir", &root, "--to", "latest"]);
    assert!(
        !refused.status.success(),
        "no restore under a running server"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it before a restore"));

    // The cluster goes with `valerix up`; the backups bring it back.
    assert!(up.interrupt().success());
    let up = common::Up::start_with(
        common::free_base_port(),
        &[
            "--backup-dir",
            &root,
            "--restore",
            "latest",
            "--no-observability",
        ],
    );
    let read: serde_json::Value = http
        .get(format!("{}/orders/{}", up.url(up.base), order.id))
        .send()
        .await
        .expect("GET order")
        .json()
        .await
        .expect("json");
    assert_eq!(read["status"], "CONFIRMED", "{read}");
    assert!(up.interrupt().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_pgbackrest_is_named() {
    let out = Command::new(VALERIX)
        .args(["backup", "--backup-dir", "/nonexistent"])
        .env("PATH", "/nonexistent")
        .output()
        .expect("run valerix");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pgbackrest not found") && err.contains("apt-get install pgbackrest"),
        "{err}"
    );
}
