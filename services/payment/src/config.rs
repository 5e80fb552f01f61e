use std::net::SocketAddr;

use clap::{ArgAction, Parser};
use valerix_runtime::{
    config::{self, DatabaseArgs, HttpArgs},
    topology::Service,
};

use crate::rules::DeclineRule;

/// Payments, at most one per order.
#[derive(Debug, Clone, Parser)]
#[command(name = "payment-service", version, about)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "VALERIX_LISTEN", default_value_t = Service::Payment.default_listen())]
    pub listen: SocketAddr,

    /// Record concurrent charges in groups: one statement and one database
    /// commit per group
    #[arg(long, env = "VALERIX_GROUP_WRITES", default_value_t = true, action = ArgAction::Set)]
    pub group_writes: bool,

    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub decline: DeclineRule,
}

impl Config {
    /// The defaults with the given database, for tests.
    pub fn with_database(url: &str) -> Self {
        config::from_args(&["--database-url", url]).expect("the defaults parse")
    }
}
