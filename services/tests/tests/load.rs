//! `valerix load` as a user runs it, against the real services: a few
//! hundred orders with an inventory latency window in the middle. Every
//! affected order must settle and nothing may be lost: correctness, not
//! speed (the speed figures are `valerix bench`'s).

use std::time::Duration;

use serde_json::Value;
use valerix_testkit::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_a_gremlin_window_settles_every_affected_order_and_loses_none() {
    let stack = Stack::start_with(StackOptions {
        gremlins: true,
        // Short timeouts and a short breaker, so the window bites and heals quickly.
        order: Box::new(|c| {
            c.call_timeout_ms = 300;
            c.breaker_open_ms = 1000;
            c.reconcile_interval_ms = 100;
        }),
        ..StackOptions::default()
    })
    .await;
    for p in ["LOAD-1", "LOAD-2", "LOAD-3"] {
        stack.product(p, 1250, 1000).await;
    }
    // Some answers are lost on the way back (500 after the order was stored):
    // the load tool must find those orders with their Idempotency-Keys.
    let noise = stack
        .http
        .post(format!("{}/gremlin/noise", stack.order.url))
        .json(&serde_json::json!({ "enabled": true, "every_nth": 25 }))
        .send()
        .await
        .expect("noise gremlin");
    assert!(noise.status().is_success());
    let report_dir = std::env::temp_dir().join(format!("valerix-load-test-{}", std::process::id()));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
        .args(["load", "--target", &stack.order.url])
        .args(["--inventory-url", &stack.inventory.url])
        .args(["--rate", "60", "--orders", "300"])
        .args([
            "--scenario",
            "gremlin",
            "--gremlin-at",
            "1s",
            "--gremlin-for",
            "2s",
        ])
        .args(["--gremlin-delay-ms", "800", "--settle-within", "25s"])
        .args(["--progress", "lines", "--report-dir"])
        .arg(&report_dir)
        .output()
        .await
        .expect("run valerix load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "valerix load exited {}", out.status);

    let json = std::fs::read_dir(&report_dir)
        .expect("report dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("read report")).expect("JSON");
    assert_eq!(report["verdict"]["ok"], true, "{}", report["verdict"]);
    assert_eq!(report["totals"]["sent"], 300);
    assert_eq!(report["followed"]["lost"], 0);
    assert_eq!(report["followed"]["stuck"], 0);
    assert_eq!(report["followed"]["changed"], 0);
    let affected = report["affected"].as_array().expect("affected list");
    assert!(
        affected
            .iter()
            .any(|a| a["first_answer"] == "202 PENDING_INVENTORY"),
        "the slow inventory left orders pending: {affected:#?}"
    );
    let hidden: Vec<_> = affected
        .iter()
        .filter(|a| {
            a["first_answer"]
                .as_str()
                .is_some_and(|f| f.starts_with("500"))
        })
        .collect();
    assert!(!hidden.is_empty(), "the noise gremlin hid some answers");
    assert_eq!(report["followed"]["resolved"], hidden.len());
    for a in &hidden {
        assert_eq!(a["resolved_by_retry"], true, "{a}");
        assert_eq!(
            a["existed_before_retry"], true,
            "the 500 hid a stored order: {a}"
        );
    }
    for a in affected {
        assert_eq!(a["outcome"], "settled", "{a}");
        assert!(
            matches!(a["final_status"].as_str(), Some("CONFIRMED" | "FAILED")),
            "{a}"
        );
    }
    assert!(stdout.contains("## Affected orders"), "{stdout}");

    // The database agrees: nothing pending (the stock commits, queued after
    // the answers, included), every invariant holds.
    let committed = valerix::audit::wait_for_stock_commits(
        &stack.pool,
        tokio::time::Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("count outstanding stock commits");
    assert!(committed, "stock commits still queued 30 s after the load");
    let audit = valerix::audit::audit(&stack.pool, Some(Duration::ZERO))
        .await
        .expect("audit");
    assert!(audit.is_clean(), "{:#?}", audit.violations);
    let _ = std::fs::remove_dir_all(report_dir);
}
