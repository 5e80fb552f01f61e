//! `valerix bench --gateway-only --gateway-reference`, briefly: the report
//! carries the gateway's cost beside HAProxy's in its place, every run's
//! settlement check held (the bench fails otherwise), and HAProxy is gone
//! afterwards. Needs haproxy (`apt-get install haproxy`): ignored unless
//! asked for (`--include-ignored`, as CI does). The figures themselves mean
//! nothing here (a debug build, half-second runs); `bench/README.md` has them.

use std::{process::Command, time::Duration};

#[test]
#[ignore = "needs haproxy (apt-get install haproxy)"]
fn the_gateways_cost_is_reported_beside_haproxy_in_its_place() {
    let out = std::env::temp_dir().join(format!("valerix-bench-report-{}.md", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
        .args(["bench", "--gateway-only", "--gateway-reference"])
        .args([
            "--gateway-concurrency",
            "4",
            "--mix",
            "hot,spread",
            "--spread",
            "4",
        ])
        .args(["--rounds", "1", "--duration", "500ms", "--warmup", "200ms"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("valerix bench runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}\n{stderr}", run.status);
    let report = std::fs::read_to_string(&out).expect("the report");
    let _ = std::fs::remove_file(&out);
    assert!(
        report.contains("| HAProxy in its place orders/s |"),
        "{report}"
    );
    for mix in ["hot (1 product)", "spread (4 products)"] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {mix} | 4 |")))
            .unwrap_or_else(|| panic!("no row for {mix}:\n{report}"));
        // Straight, through the gateway and through HAProxy all took orders.
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (i, what) in [(3, "straight"), (5, "gateway"), (9, "HAProxy")] {
            let per_s: f64 = cells[i]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{what} orders/s in {row}"));
            assert!(per_s > 0.0, "{what}: {row}");
        }
    }
    // Where each way's CPU went, the proxy's own share apart: a proxy that
    // costs the other processes more shows there.
    let split = stderr
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("CPU per order µs, straight: PostgreSQL")
        })
        .unwrap_or_else(|| panic!("no CPU split:\n{stderr}"));
    for way in [
        "through the gateway: PostgreSQL",
        "HAProxy: PostgreSQL",
        "switches)",
    ] {
        assert!(split.contains(way), "{way} in {split}");
    }
    // HAProxy is the bench's child and ends with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while haproxy_running_for_bench() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!haproxy_running_for_bench(), "HAProxy outlived the bench");
}

/// A HAProxy started with the bench's configuration file.
fn haproxy_running_for_bench() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmd| String::from_utf8_lossy(&cmd).contains("reference-haproxy.cfg"))
}
