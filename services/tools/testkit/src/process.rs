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

/// Where `tool` (e.g. `prometheus`) is on PATH. The tests that need a
/// tool outside Rust and PostgreSQL are `#[ignore]`d with the tool named,
/// so a machine without it reports them as ignored, never as passed; run
/// with `--include-ignored` (as `.ci/run` does), a missing tool fails them.
pub fn require_tool(tool: &str, install_hint: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{tool} is not on PATH ({install_hint})"))
}

/// The parent of process `pid`, from `/proc/<pid>/stat`; None once it is gone.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its
    // last `)` do not: state, then the parent's id.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The ids of every process running now.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}
