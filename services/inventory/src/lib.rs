//! The inventory service: stock per product and reservations keyed by order.
//!
//! - `api`: the HTTP routes (products, reservations); the reservations'
//!   types are the contract's (`valerix_runtime::contract::inventory`)
//! - [`group`]: reserves and commits applied in groups, per product
//! - [`store`]: every SQL statement, with the allocation a group applies
//! - [`domain`]: the reservation's states; `config`: the flags

mod api;
mod config;
pub mod domain;
/// Public so tests can hold a product's row while requests queue.
pub mod group;
/// Public so `valerix bench` issues exactly this SQL for its database-only bound.
pub mod store;

use std::future::Future;

pub use api::InventoryApi;
pub use config::Config;
use poem::http::Method;
use tokio::net::TcpListener;
use valerix_runtime::{db, server};

pub const NAME: &str = valerix_runtime::topology::Service::Inventory.name();

pub use valerix_runtime::error::ServiceError as Error;

/// What anyone may call when the services share a token: the catalog.
/// Reservations are the saga's, restocking and pricing the operator's.
const OPEN: &[(Method, &str)] = &[
    (Method::GET, "/inventory"),
    (Method::GET, "/inventory/{product_id}"),
];

/// Runs the service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let token = config.http.service_token()?;
    valerix_runtime::server::systemd::status("connecting to the database");
    let pool = db::connect_and_migrate(&config.db).await?;
    let api = server::openapi(
        InventoryApi::new(pool.clone(), config.group_reservations),
        "Valerix inventory service",
    )
    .with_service_token(NAME, token, OPEN);
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

/// The OpenAPI document, for `valerix openapi` and the drift test.
pub fn spec() -> String {
    server::openapi(InventoryApi::spec_only(), "Valerix inventory service").spec()
}
