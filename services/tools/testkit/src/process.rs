//! Services as real processes for tests, through the one launcher
//! (`valerix_stack`), started the way systemd starts them: tests wait on
//! the service's own READY=1, never on a sleep. Nothing from the test's
//! own environment decides what is tested.

use std::path::{Path, PathBuf};

pub use valerix_stack::{
    Output, Service, ServiceProcess, StackBuilder,
    notify::{NotifySocket, TempDir, serving_addr},
};

const NOT_INHERITED: [&str; 7] = [
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "DATABASE_URL",
];

/// One service on a free port, its output captured.
pub fn service(exe: &Path, service: Service) -> ServiceProcess {
    NOT_INHERITED.iter().fold(
        ServiceProcess::new(exe, service, ([127, 0, 0, 1], 0).into())
            .env("RUST_LOG", "info")
            .output(Output::Capture),
        |p, key| p.env_remove(key),
    )
}

/// A stack on free ports, the services' output captured.
pub fn stack(exe: &Path) -> StackBuilder {
    NOT_INHERITED.iter().fold(
        StackBuilder::new(exe)
            .env("RUST_LOG", "info")
            .capture_output(),
        |b, key| b.env_remove(key),
    )
}

/// Says whether the test may use `tool` (e.g. `prometheus`): on PATH, or,
/// when it is not, a printed skip (None) — except under CI=true, where a
/// missing tool fails the test instead of silently skipping it.
pub fn require_tool(tool: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "{tool} is not installed, and CI=true: not skipping");
        eprintln!("SKIPPED: {tool} is not on PATH ({install_hint})");
    }
    found
}
