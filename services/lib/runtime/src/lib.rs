//! What every Valerix service shares, each concern in one place.
//!
//! - Contract: [`contract`] (the types of every call between services and
//!   its limits), [`domain`] (values parsed at the edge), [`topology`] (the
//!   services, names, ports, edges), [`health`], [`problem`] (errors on the
//!   wire)
//! - Serving: [`server`], [`listen`] (accept loop, connection limits),
//!   [`limits`], [`shed`], [`allow`], [`auth`], [`spec`], [`gremlin`],
//!   [`shutdown`], [`systemd`], [`config`]
//! - Calling: [`client`] (timeouts, retries, trace propagation), [`breaker`],
//!   [`upstream`]
//! - Storing: [`db`] (pool, migrations), [`group`] (grouped writes)
//! - Observing: [`telemetry`], [`observe`] (RED metrics), [`otel`],
//!   [`prometheus`], [`scrape`], [`window`]

pub mod activation;
pub mod allow;
pub mod auth;
pub mod breaker;
pub mod client;
pub mod config;
pub mod contract;
#[cfg(feature = "db")]
pub mod db;
pub mod domain;
pub mod gremlin;
pub mod group;
pub mod health;
pub mod limits;
pub mod listen;
pub mod observe;
pub mod otel;
pub mod problem;
pub mod prometheus;
pub mod scrape;
pub mod server;
pub mod shed;
pub mod shutdown;
pub mod spec;
pub mod systemd;
pub mod telemetry;
pub mod topology;
pub mod upstream;
pub mod window;

pub use problem::{Problem, ProblemResponse, Problems};
