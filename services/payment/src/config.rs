use std::net::SocketAddr;

use clap::{ArgAction, Args, Parser};
use valerix_runtime::{
    config::{self, DatabaseArgs, HttpArgs},
    topology::Service,
};

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

/// When a charge is declined. There is no card network behind this service,
/// so the rule is explicit: an amount over the limit, or a user id that
/// starts with the decline prefix.
#[derive(Debug, Clone, Copy, Args)]
pub struct DeclineRule {
    /// Decline charges above this many cents
    #[arg(long, env = "VALERIX_DECLINE_ABOVE_CENTS", default_value_t = 1_000_000)]
    pub decline_above_cents: i64,
}

impl DeclineRule {
    /// User ids starting with this are always declined (test and demo users).
    pub const DECLINE_USER_PREFIX: &'static str = "decline";

    pub fn reason(&self, amount_cents: i64, user_id: Option<&str>) -> Option<&'static str> {
        if amount_cents > self.decline_above_cents {
            Some("AMOUNT_LIMIT")
        } else if user_id.is_some_and(|u| u.starts_with(Self::DECLINE_USER_PREFIX)) {
            Some("TEST_USER_DECLINED")
        } else {
            None
        }
    }
}

impl Default for DeclineRule {
    fn default() -> Self {
        config::defaults()
    }
}

impl Config {
    /// The defaults with the given database, for tests.
    pub fn with_database(url: &str) -> Self {
        config::from_args(&["--database-url", url]).expect("the defaults parse")
    }
}
