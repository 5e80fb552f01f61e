use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use valerix_runtime::{
    client::upstream::Upstream,
    config::{self, HttpArgs},
    topology::Service,
};

/// The API gateway: the dashboard and the services' APIs behind one address.
#[derive(Debug, Clone, Parser)]
#[command(name = "api-gateway", version, about)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "VALERIX_LISTEN", default_value_t = Service::Gateway.default_listen())]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub http: HttpArgs,

    /// The order service: http://HOST:PORT, or unix:/path/to.sock (its --unix-socket)
    #[arg(long, env = "ORDER_URL", default_value_t = Service::Order.default_address())]
    pub order_url: Upstream,

    /// The inventory service: http://HOST:PORT, or unix:/path/to.sock
    #[arg(long, env = "INVENTORY_URL", default_value_t = Service::Inventory.default_address())]
    pub inventory_url: Upstream,

    /// The payment service: http://HOST:PORT, or unix:/path/to.sock
    #[arg(long, env = "PAYMENT_URL", default_value_t = Service::Payment.default_address())]
    pub payment_url: Upstream,

    /// Directory of the dashboard served at `/` (index.html and its assets)
    #[arg(long, env = "VALERIX_UI_DIR", default_value = "ui")]
    pub ui_dir: PathBuf,

    /// Longest a proxied call may take, answer body included, in milliseconds (then 504)
    #[arg(long, env = "VALERIX_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,

    /// Longest the gateway waits for a service's health, in milliseconds
    #[arg(long, env = "VALERIX_HEALTH_TIMEOUT_MS", default_value_t = 1_000)]
    pub health_timeout_ms: u64,

    /// A file holding the operator's bearer token: restocking and pricing,
    /// the order and payment lists and the gremlins need it (without it
    /// they answer 401 to everyone)
    #[arg(long, env = "VALERIX_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,
}

impl Config {
    /// The defaults, with the services at the given addresses (for tests).
    pub fn with_upstreams(order: Upstream, inventory: Upstream, payment: Upstream) -> Self {
        let (order, inventory, payment) = (
            order.to_string(),
            inventory.to_string(),
            payment.to_string(),
        );
        config::from_args(&[
            Service::Order.address_flag(),
            &order,
            Service::Inventory.address_flag(),
            &inventory,
            Service::Payment.address_flag(),
            &payment,
        ])
        .expect("the defaults parse, and the addresses are already parsed")
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.health_timeout_ms)
    }
}
