//! The inventory service: stock per product and reservations keyed by order.

mod api;
mod config;
mod store;

use std::{future::Future, sync::Arc, time::Duration};

pub use api::InventoryApi;
pub use config::Config;
use tokio::net::TcpListener;
use valerix_runtime::{db, server};

pub const NAME: &str = "inventory-service";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Runs the service on `listener` until `shutdown` resolves.
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
    let api = server::openapi(InventoryApi::new(pool), "Valerix inventory service");
    server::serve(NAME, api, listener, &config.http, liveness, shutdown).await?;
    Ok(())
}

/// The OpenAPI document, for `valerix openapi` and the drift test.
pub fn spec() -> String {
    server::openapi(InventoryApi::spec_only(), "Valerix inventory service").spec()
}
