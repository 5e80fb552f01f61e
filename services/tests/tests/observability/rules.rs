//! The Prometheus rules as part of `cargo test`: promtool checks their syntax
//! and runs their unit tests (grafana/prometheus/valerix-rules.test.yml).

use std::process::Command;

use valerix_testkit::process::require_tool;

use crate::support::repo_root;

fn promtool(args: &[&str]) {
    let promtool = require_tool("promtool", "Debian: apt-get install prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(repo_root().join("grafana/prometheus"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs promtool (Debian: prometheus); run with --include-ignored"]
fn promtool_accepts_the_rules() {
    promtool(&["check", "rules", "valerix-rules.yml"]);
}

#[test]
#[ignore = "needs promtool (Debian: prometheus); run with --include-ignored"]
fn promtool_unit_tests_of_the_rules_pass() {
    promtool(&["test", "rules", "valerix-rules.test.yml"]);
}
