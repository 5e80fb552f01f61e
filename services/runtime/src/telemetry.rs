//! Logging and tracing, set up once per process.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Human-readable logs to stderr, level from RUST_LOG (default info).
/// Safe to call more than once (tests start several services in one process).
pub fn init(_service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr))
        .try_init();
}
