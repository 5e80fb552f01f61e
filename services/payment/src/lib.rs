//! The payment service: at most one payment per order, with a documented
//! decline rule so failure paths can be exercised on purpose.

mod api;
mod config;
mod store;

use std::{future::Future, sync::Arc, time::Duration};

pub use api::PaymentApi;
pub use config::{Config, DeclineRule};
use tokio::net::TcpListener;
use valerix_runtime::{db, server};

pub const NAME: &str = "payment-service";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
}

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    valerix_runtime::systemd::status("connecting to the database");
    let pool = db::connect_and_migrate(&config.db).await?;
    let probe_pool = pool.clone();
    let liveness: valerix_runtime::systemd::Probe = Arc::new(move || {
        let pool = probe_pool.clone();
        Box::pin(async move { db::ping(&pool, Duration::from_secs(1)).await })
    });
    let api = server::openapi(
        PaymentApi::new(pool, config.decline),
        "Valerix payment service",
    );
    server::serve(NAME, api, listener, &config.http, liveness, shutdown).await?;
    Ok(())
}

pub fn spec() -> String {
    server::openapi(PaymentApi::spec_only(), "Valerix payment service").spec()
}
