//! Schrödinger's warehouse, proven with real processes: thousands of orders
//! while inventory and payment are killed, crash after commit, answer 500
//! after commit and slow down. After the faults stop, nothing is lost,
//! everything settles, and every invariant holds.

use valerix::chaos::{ChaosConfig, ChaosReport, run};
use valerix_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_under_kills_crashes_noise_and_latency() {
    let db = TestDb::new().await;
    let log_dir = std::env::temp_dir().join(format!("valerix-chaos-{}", std::process::id()));
    let cfg = ChaosConfig::new(
        env!("CARGO_BIN_EXE_valerix-under-test").into(),
        db.url.clone(),
        log_dir.clone(),
    );
    let report = run(&cfg).await.expect("chaos run");
    println!("{}", ChaosReport::table(std::slice::from_ref(&report)));
    println!(
        "load {:?}, settled in {:?}, confirmed {}, failed {}",
        report.load_time, report.settle_time, report.confirmed, report.failed
    );

    assert!(
        report.kills >= 3,
        "the schedule killed services: {report:?}"
    );
    assert!(
        report.restarts > report.kills,
        "crash gremlins fired too: {report:?}"
    );
    assert!(
        report.acknowledged > cfg.orders / 2,
        "most orders were acknowledged: {report:?}"
    );
    assert_eq!(report.missing, 0, "every acknowledged order exists");
    assert_eq!(
        report.stuck, 0,
        "every order settled within {:?}",
        cfg.settle_within
    );
    assert!(
        report.violations.is_empty(),
        "invariants: {:#?}",
        report.violations
    );
    assert_eq!((report.oversold_units, report.double_charges), (0, 0));
    assert!(report.confirmed > 0 && report.failed > 0, "{report:?}");

    // The operator's tool agrees.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
        .args([
            "audit",
            "--database-url",
            &db.url,
            "--max-pending-secs",
            "0",
        ])
        .output()
        .expect("valerix audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(log_dir);
}
