use std::{net::SocketAddr, time::Duration};

use clap::{ArgAction, Parser};
use valerix_runtime::{
    client::{CallPolicy, breaker::BreakerPolicy, upstream::Upstream},
    config::{self, DatabaseArgs, HttpArgs},
    topology::Service,
};

/// Orders: takes them, reserves stock, charges, and settles every one.
#[derive(Debug, Clone, Parser)]
#[command(name = "order-service", version, about)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "VALERIX_LISTEN", default_value_t = Service::Order.default_listen())]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// The inventory service: http://HOST:PORT, or unix:/path/to.sock (its --unix-socket)
    #[arg(long, env = "INVENTORY_URL", default_value_t = Service::Inventory.default_address())]
    pub inventory_url: Upstream,

    /// The payment service: http://HOST:PORT, or unix:/path/to.sock (its --unix-socket)
    #[arg(long, env = "PAYMENT_URL", default_value_t = Service::Payment.default_address())]
    pub payment_url: Upstream,

    /// Store concurrent new orders, and concurrent settlements, in groups:
    /// one statement and one database commit per group
    #[arg(long, env = "VALERIX_GROUP_WRITES", default_value_t = true, action = ArgAction::Set)]
    pub group_writes: bool,

    /// Timeout of one call to inventory or payment, in milliseconds
    #[arg(long, env = "VALERIX_CALL_TIMEOUT_MS", default_value_t = 2000)]
    pub call_timeout_ms: u64,

    /// Retries of a call that timed out or failed in transit
    #[arg(long, env = "VALERIX_CALL_RETRIES", default_value_t = 1)]
    pub call_retries: usize,

    /// Seconds after which an unsettled order is given up (compensated, FAILED/EXPIRED)
    #[arg(long, env = "VALERIX_ORDER_DEADLINE_SECS", default_value_t = 300)]
    pub order_deadline_secs: u64,

    /// How often the reconciler looks for unsettled orders, in milliseconds
    #[arg(long, env = "VALERIX_RECONCILE_INTERVAL_MS", default_value_t = 500)]
    pub reconcile_interval_ms: u64,

    /// Use a circuit breaker per downstream (fail fast while it is down)
    #[arg(long, env = "VALERIX_CIRCUIT_BREAKER", default_value_t = true, action = ArgAction::Set)]
    pub circuit_breaker: bool,

    /// Consecutive failed calls that open a downstream's breaker
    #[arg(long, env = "VALERIX_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,

    /// How long an open breaker refuses calls before a probe, in milliseconds
    #[arg(long, env = "VALERIX_BREAKER_OPEN_MS", default_value_t = 5000)]
    pub breaker_open_ms: u64,

    /// Confirm a paid order at once and commit its stock (held until then)
    /// in batches after the answer; false: commit it before confirming
    #[arg(long, env = "VALERIX_DEFER_STOCK_COMMIT", default_value_t = true, action = ArgAction::Set)]
    pub defer_stock_commit: bool,

    /// Run the reconciler in this process (every replica may: claims do not overlap)
    #[arg(long, env = "VALERIX_RECONCILER", default_value_t = true, action = ArgAction::Set)]
    pub reconciler: bool,

    /// How long an Idempotency-Key is remembered, in seconds; older keys are
    /// deleted by the reconciler, and a request reusing one places a new order
    #[arg(
        long,
        env = "VALERIX_IDEMPOTENCY_RETENTION_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub idempotency_retention_secs: u64,
}

impl Config {
    /// The defaults with the given database, for tests.
    pub fn with_database(url: &str) -> Self {
        config::from_args(&["--database-url", url]).expect("the defaults parse")
    }

    pub fn idempotency_retention(&self) -> Duration {
        Duration::from_secs(self.idempotency_retention_secs)
    }

    pub fn call_policy(&self) -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_millis(self.call_timeout_ms),
            retries: self.call_retries,
            breaker: self.circuit_breaker.then_some(BreakerPolicy {
                failure_threshold: self.breaker_failures,
                open_for: Duration::from_millis(self.breaker_open_ms),
            }),
            ..CallPolicy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn downstream_addresses_are_checked_when_the_service_starts() {
        let parse = |flags: &[&str]| {
            Config::try_parse_from(["order-service"].iter().chain(flags)).map(|c| {
                (
                    c.inventory_url.to_string(),
                    c.payment_url.socket().is_some(),
                )
            })
        };
        assert_eq!(
            parse(&["--payment-url", "unix:/run/valerix/payment/http.sock"]).ok(),
            Some(("http://127.0.0.1:5002".to_owned(), true))
        );
        let err = parse(&["--inventory-url", "127.0.0.1:5002"])
            .expect_err("a host:port without a scheme is not an address")
            .to_string();
        assert!(err.contains("--inventory-url"), "{err}");
        assert!(parse(&["--payment-url", "unix:payment.sock"]).is_err());
    }
}
