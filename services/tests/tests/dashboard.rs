//! The dashboard in a real headless Chromium, driven by Playwright
//! (`ui/tests/dashboard.test.mjs`), against the stack as a person starts
//! it: `valerix up`, the page at the gateway, first as a stranger, then
//! through the operator link it printed.
//!
//! Needs Node.js, `npm ci --prefix ui` (playwright-core) and Chromium
//! (`/usr/bin/chromium`, or `CHROMIUM`), so it is `#[ignore]`d: run it with
//! `cargo test -p valerix-tests --test dashboard -- --include-ignored` (`.ci/run`
//! installs all three and runs it); a missing one fails it. Screenshots:
//! `ui/test-results/`.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn ui_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser tests, if anything.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node (Node.js 20 or later)".to_owned());
    }
    if !ui_dir().join("node_modules/playwright-core").is_dir() {
        missing.push("ui/node_modules (run `npm ci --prefix ui`)".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!(
            "{} (apt-get install chromium, or set CHROMIUM)",
            chromium().display()
        ));
    }
    missing
}

#[test]
#[ignore = "needs Node.js, `npm ci --prefix ui` and Chromium; run with --include-ignored"]
fn the_dashboard_shows_a_gremlin_episode_in_a_real_browser() {
    let missing = missing();
    assert!(
        missing.is_empty(),
        "the browser tests cannot run: missing {}",
        missing.join(", ")
    );
    let up = common::Up::start();
    let base_url = up.url(up.base - 1);
    let shots = ui_dir().join("test-results");
    let started = Instant::now();
    let status = Command::new("node")
        .current_dir(ui_dir())
        .args(["--test", "--test-reporter=spec", "tests/"])
        .env("BASE_URL", &base_url)
        // The page signs in with the token from the link valerix up printed.
        .env(
            "OPERATOR_LINK",
            up.operator_link.clone().unwrap_or_default(),
        )
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .status()
        .expect("run node --test");
    report(&format!(
        "dashboard: browser tests against {base_url} took {:.0?}; screenshots in {}",
        started.elapsed(),
        shots.display()
    ));
    assert!(status.success(), "the browser tests failed: {status}");
    let stopped = up.interrupt();
    assert!(stopped.success(), "valerix up exited with {stopped}");
}
