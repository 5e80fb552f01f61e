use std::net::SocketAddr;

use clap::Parser;
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
