use std::net::SocketAddr;

use clap::{ArgAction, Parser};
use valerix_runtime::{
    config::{self, DatabaseArgs, HttpArgs},
    topology::Service,
};

/// Stock per product and reservations keyed by order.
#[derive(Debug, Clone, Parser)]
#[command(name = "inventory-service", version, about)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "VALERIX_LISTEN", default_value_t = Service::Inventory.default_listen())]
    pub listen: SocketAddr,

    /// Apply concurrent reserves (per product) and commits in groups, one
    /// statement and one database commit per group
    #[arg(long, env = "VALERIX_GROUP_RESERVATIONS", default_value_t = true, action = ArgAction::Set)]
    pub group_reservations: bool,

    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

impl Config {
    /// The defaults with the given database, for tests.
    pub fn with_database(url: &str) -> Self {
        config::from_args(&["--database-url", url]).expect("the defaults parse")
    }
}
