//! The operator's verbs, as a library so the tests drive the same code.
//!
//! - [`cli`]: the command line, what the `valerix` binary runs
//! - [`up`]: the dev stack; [`observe`]: Prometheus, Grafana and Jaeger beside it
//! - [`audit`]: the order flow's invariants, checked in the database
//! - [`chaos`]: the fault schedule; [`seed`]: demo products; [`token`]: the operator token
//! - [`ha`]: the highly available PostgreSQL of `up --ha`; [`drill`]: the failover drill
//! - [`openapi`]: the committed specs; [`backup`]: pgBackRest backups and restores
//! - `valerix load` and `valerix bench` live in their own crates (`valerix_load`,
//!   `valerix_bench`)

pub mod audit;
pub mod backup;
pub mod chaos;
pub mod cli;
pub mod drill;
pub mod ha;
pub mod observe;
pub mod openapi;
pub mod seed;
pub mod token;
pub mod up;
