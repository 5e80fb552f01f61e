use std::net::SocketAddr;

use clap::Parser;
use valerix_runtime::config::{DatabaseArgs, HttpArgs};

/// Stock per product and reservations keyed by order.
#[derive(Debug, Clone, Parser)]
#[command(name = "inventory-service", version, about)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "VALERIX_LISTEN", default_value = "127.0.0.1:5002")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

impl Config {
    /// Defaults with the given database, for tests and `valerix up`.
    pub fn with_database(url: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5002)),
            db: DatabaseArgs::from_url(url),
            http: HttpArgs::default(),
        }
    }
}
