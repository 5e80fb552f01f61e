//! The stack as processes: one launcher, wired from the topology in
//! `valerix_runtime::topology`.
//!
//! - [`launch`]: the stack's processes, wired from the topology
//! - [`process`]: one service as a child process; [`notify`]: its sd_notify socket;
//!   `held`: its listening sockets, held across restarts
//! - [`supervise`]: restarts with backoff, as systemd would
//! - [`across`]: the operator's SQL that reads more than one service's tables

pub mod across;
mod held;
pub mod launch;
pub mod notify;
pub mod process;
pub mod supervise;

pub use launch::{Ports, Stack, StackBuilder, StackError, free_port, wiring};
pub use process::{LaunchError, Output, ServiceProcess, die_with_parent};
pub use supervise::{Event, RestartPolicy, Supervisor};
pub use valerix_runtime::topology::Service;
