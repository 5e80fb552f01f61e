//! The payment service: at most one payment per order, with a documented
//! decline rule so failure paths can be exercised on purpose.
//!
//! - `api`: the HTTP routes (charge, void, refund, read); the types are the
//!   contract's (`valerix_runtime::contract::payment`)
//! - [`charges`]: charges applied in groups
//! - [`store`]: every SQL statement
//! - `rules`: when a charge is declined, what it records, how a repeat is
//!   answered
//! - [`domain`]: the payment's states; `config`: the flags

mod api;
/// Public so tests can hold a group together and see it applied.
pub mod charges;
mod config;
pub mod domain;
mod rules;
/// Public so `valerix bench` issues exactly this SQL for its database-only bound.
pub mod store;

use std::future::Future;

pub use api::PaymentApi;
pub use config::Config;
pub use rules::DeclineRule;
use tokio::net::TcpListener;
use valerix_runtime::{db, server};

pub const NAME: &str = valerix_runtime::topology::Service::Payment.name();

pub use valerix_runtime::error::ServiceError as Error;

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let token = config.http.service_token()?;
    valerix_runtime::server::systemd::status("connecting to the database");
    let pool = db::connect_and_migrate(&config.db).await?;
    // Nothing is open when the services share a token: charges, voids and
    // refunds are the saga's, the payment reads the operator's.
    let api = server::openapi(
        PaymentApi::new(pool.clone(), config.decline, config.group_writes),
        "Valerix payment service",
    )
    .with_service_token(NAME, token, &[]);
    server::serve(
        NAME,
        api,
        listener,
        &config.http,
        db::liveness(pool),
        shutdown,
    )
    .await?;
    Ok(())
}

pub fn spec() -> String {
    server::openapi(PaymentApi::spec_only(), "Valerix payment service").spec()
}
