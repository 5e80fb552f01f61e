use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use valerix_runtime::config::HttpArgs;

/// The API gateway: the dashboard and the services' APIs behind one address.
#[derive(Debug, Clone, Parser)]
#[command(name = "api-gateway", version, about)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "VALERIX_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub http: HttpArgs,

    /// Base URL of the order service
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:5001")]
    pub order_url: String,

    /// Base URL of the inventory service
    #[arg(long, env = "INVENTORY_URL", default_value = "http://127.0.0.1:5002")]
    pub inventory_url: String,

    /// Base URL of the payment service
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:5003")]
    pub payment_url: String,

    /// Directory of the dashboard served at `/` (index.html and its assets)
    #[arg(long, env = "VALERIX_UI_DIR", default_value = "ui")]
    pub ui_dir: PathBuf,

    /// Longest a proxied call may take, answer body included, in milliseconds (then 504)
    #[arg(long, env = "VALERIX_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,

    /// Longest the gateway waits for a service's health, in milliseconds
    #[arg(long, env = "VALERIX_HEALTH_TIMEOUT_MS", default_value_t = 1_000)]
    pub health_timeout_ms: u64,
}

impl Config {
    /// The defaults, with the services at the given base URLs (for tests).
    pub fn with_upstreams(order: &str, inventory: &str, payment: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            http: HttpArgs::default(),
            order_url: order.to_owned(),
            inventory_url: inventory.to_owned(),
            payment_url: payment.to_owned(),
            ui_dir: PathBuf::from("ui"),
            upstream_timeout_ms: 10_000,
            health_timeout_ms: 1_000,
        }
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.health_timeout_ms)
    }
}
