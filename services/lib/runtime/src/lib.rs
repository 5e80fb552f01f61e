//! What every Valerix service shares, each concern in one place. The
//! folders depend on each other in one direction only, from the bottom up:
//!
//! - [`contract`]: what the services agree on over HTTP, a crate of its own
//!   (`valerix-contract`, re-exported under this name) that depends on
//!   nothing here: the request and answer types of every call between
//!   services and their limits, [`contract::domain`] (values parsed at the
//!   edge), [`contract::health`] (the health document), [`contract::problem`]
//!   (errors on the wire)
//! - [`telemetry`]: logs, traces ([`telemetry::otel`]), the Prometheus
//!   registry, the RED metrics of served requests ([`telemetry::requests`]),
//!   reading another service's metrics ([`telemetry::scrape`])
//! - [`auth`]: the bearer token a server checks and a client sends
//! - [`config`]: the settings every service flattens into its own `Config`
//! - [`client`]: calls to other services (timeouts, retries, trace
//!   propagation), [`client::breaker`], [`client::upstream`] (where a
//!   service is reached)
//! - [`topology`]: the stack's services, names, ports and edges
//! - [`server`]: serving a service: the accept loop and its limits
//!   ([`server::listen`]), socket activation, body limits, load shedding,
//!   gremlins, systemd readiness and watchdog, the drain on shutdown
//! - [`quiet_unix`]: a Unix stream that is woken for writing only when a
//!   write found it full (the services' and the gateway's Unix sockets)
//! - [`db`] (feature `db`): the pool and migrations; [`group`]: grouped writes
//! - [`error`]: why a service stopped
//!
//! [`Problem`], [`ProblemResponse`] and [`Problems`] are re-exported here:
//! every handler of every service answers with them.

pub mod auth;
pub mod client;
pub mod config;
pub use valerix_contract as contract;
pub use valerix_contract::problem_set;
#[cfg(feature = "db")]
pub mod db;
pub mod error;
pub mod group;
pub mod quiet_unix;
pub mod server;
pub mod telemetry;
pub mod topology;

pub use contract::problem::{Problem, ProblemResponse, Problems};
