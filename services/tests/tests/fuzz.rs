//! Schema-driven fuzzing: schemathesis generates requests from each running
//! service's spec (valid ones and deliberately invalid ones) and checks every
//! answer against that spec, with all of its checks: any 5xx, undocumented
//! status, header or content type, body that breaks its schema, a request
//! the spec allows that is refused as malformed, or one it forbids that is
//! accepted, fails the run. The gateway runs twice: with the operator token
//! that `valerix up` printed, and without it, where every operator operation
//! must answer 401 (and a 2xx without the token, or with a wrong one, fails
//! `ignored_auth`).
//!
//! The seed changes with every run, so that runs together cover more than
//! one would; it is printed, and `VALERIX_FUZZ_SEED=<seed>` replays a run.
//!
//! Needs schemathesis, so it is `#[ignore]`d: run it with
//! `cargo test -p valerix-tests --test fuzz -- --include-ignored` (`.ci/run`
//! installs schemathesis and runs it); without schemathesis it fails.

mod common;

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

/// Pinned with `.ci/run`'s `pip install`.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Test cases per operation and phase: enough to find the bugs it found,
/// while the whole run stays under two minutes on two cores.
const EXAMPLES: &str = "300";
/// The stranger's run of the gateway: its public operations were fuzzed in
/// the operator's run; this one is about the 401s, which need fewer.
const ANONYMOUS_EXAMPLES: &str = "100";
/// Every check, on the services and the gateway alike.
const CHECKS: &str = "all";
/// Checks that do not apply to the gateway: it answers 404, not 405 with
/// `Allow`, for a method it does not route (it names no operations of the
/// services it does not offer; `docs/CONTRACT.md`).
const GATEWAY_EXCLUDED: &str = "unsupported_method,allow_header_conformance";
/// The statuses each check accepts where the defaults do not fit the API:
/// a well-formed request may name an order or product that does not exist
/// (422 `unknown-order`, `unknown-product`, as documented).
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");

/// `VALERIX_FUZZ_SEED`, or a new one for this run.
fn seed() -> String {
    std::env::var("VALERIX_FUZZ_SEED").unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        (nanos % 1_000_000_000).to_string()
    })
}
/// Fault injection is for people, not fuzzers (and changes what others see).
const EXCLUDE: &str = "/gremlin";

fn find_schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VALERIX_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("st"), dir.join("schemathesis")])
        .find(|candidate| candidate.is_file())
}

/// Straight to stderr, past the test harness' capture, so CI logs show the
/// numbers of a passing run too.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// "N generated, ..." from schemathesis' summary.
fn cases_generated(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let (n, _) = l.trim().split_once(" generated,")?;
        n.parse().ok()
    })
}

fn operations_tested(output: &str) -> Option<u64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: ")?.parse().ok())
}

#[test]
#[ignore = "needs schemathesis (pip install schemathesis==4.32.5); run with --include-ignored"]
fn schemathesis_finds_nothing_wrong_with_any_service() {
    let st = find_schemathesis().unwrap_or_else(|| {
        panic!("schemathesis is not installed: pip install {SCHEMATHESIS} (as .ci/run does)")
    });
    let version = Command::new(&st).arg("--version").output().map_or_else(
        |e| format!("cannot run {}: {e}", st.display()),
        |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
    );
    let seed = seed();
    report(&format!(
        "fuzz: {version} (pinned: {SCHEMATHESIS}), seed {seed} (replay: VALERIX_FUZZ_SEED={seed})"
    ));
    let up = common::Up::start();
    let workdir = std::env::temp_dir().join(format!("valerix-fuzz-{}", up.base));
    std::fs::create_dir_all(&workdir).expect("work dir");
    let operator = format!("Authorization: Bearer {}", up.operator_token());
    // The gateway twice: as the operator (every operation), and as a
    // stranger (the operator's operations answer 401, as documented).
    let runs = [
        ("order-service", up.base, None, None, EXAMPLES),
        ("inventory-service", up.base + 1, None, None, EXAMPLES),
        ("payment-service", up.base + 2, None, None, EXAMPLES),
        (
            "api-gateway (operator)",
            up.base - 1,
            Some(GATEWAY_EXCLUDED),
            Some(operator.as_str()),
            EXAMPLES,
        ),
        (
            "api-gateway (anonymous)",
            up.base - 1,
            Some(GATEWAY_EXCLUDED),
            None,
            ANONYMOUS_EXAMPLES,
        ),
    ];
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    for (name, port, excluded, header, examples) in runs {
        let started = Instant::now();
        let mut st_run = Command::new(&st);
        st_run
            .current_dir(&workdir)
            .args(["--config-file", CONFIG])
            .args(["run", &format!("{}/openapi.json", up.url(port))]);
        if let Some(header) = header {
            st_run.args(["--header", header]);
        }
        if let Some(excluded) = excluded {
            st_run.args(["--exclude-checks", excluded]);
        }
        let out = st_run
            .args([
                "--checks",
                CHECKS,
                "--seed",
                &seed,
                "--max-examples",
                examples,
            ])
            .args(["--exclude-path-regex", EXCLUDE])
            // One worker: reproducible, and CPython 3.11's parser is not
            // thread-safe under hypothesis' lambda introspection.
            .args(["--workers", "1", "--generation-database", "none"])
            .args(["--request-timeout", "15", "--no-color"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run schemathesis");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = format!(
            "fuzz: {name}: {} operations, {} test cases, {:.0?}: {}",
            operations_tested(&text).map_or("?".into(), |n| n.to_string()),
            cases_generated(&text).map_or("?".into(), |n| n.to_string()),
            started.elapsed(),
            if out.status.success() { "ok" } else { "FAILED" },
        );
        report(&line);
        summary.push(line);
        if !out.status.success() {
            failed.push(format!("{name}:\n{text}"));
        }
    }
    let _ = std::fs::remove_dir_all(&workdir);
    assert!(
        failed.is_empty(),
        "schemathesis found problems (seed {seed}; replay with VALERIX_FUZZ_SEED={seed} cargo test -p valerix-tests --test fuzz -- --include-ignored):\n{}\n\n{}",
        summary.join("\n"),
        failed.join("\n\n")
    );
    // The 401s were really tried: calls without the token and with a wrong
    // one (ignored_auth's probes, the stranger's run), each refused and
    // counted by the gateway.
    let url = format!("{}/metrics", up.url(up.base - 1));
    let metrics = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async { reqwest::get(&url).await?.text().await })
        .expect("the gateway's metrics");
    let samples = valerix_testkit::metrics::parse(&metrics);
    for reason in ["missing", "wrong"] {
        let refused = valerix_testkit::metrics::value(
            &samples,
            "valerix_auth_failures_total",
            &[("service", "api-gateway"), ("reason", reason)],
        );
        report(&format!(
            "fuzz: api-gateway refused {refused:?} calls ({reason} token)"
        ));
        assert!(
            refused.is_some_and(|n| n > 0.0),
            "no call with a {reason} token was refused"
        );
    }
    let status = up.interrupt();
    assert!(status.success(), "valerix up exited {status}");
}
