//! The order service: takes orders and drives each to CONFIRMED or FAILED
//! through inventory and payment, surviving their timeouts and crashes.
//!
//! An order's path: `api` (`POST /orders`) stores it through [`writes`]
//! (grouped into [`store`]), then `saga` reserves, charges and settles it
//! through `clients`; what the request could not finish, `reconciler`
//! does later, and `stock_commit` commits a confirmed order's units after
//! the answer.
//!
//! - `api`: the HTTP routes; `sla`: `GET /sla`
//! - `saga`: the order flow, one idempotent step after another; what it
//!   does after each answer is decided in `saga::flow`, without I/O
//! - `clients`: inventory and payment, their answers as the saga's outcomes
//! - `writes`: creates and settlements, grouped; `store`: every SQL statement
//! - `reconciler`: settles stuck orders, sweeps lost stock commits
//! - `stock_commit`: confirmed orders' stock commits, batched after the answer
//! - `domain`: statuses and reasons; `telemetry`: the service's metrics; `config`

mod api;
mod clients;
mod config;
pub mod domain;
mod reconciler;
mod saga;
mod sla;
mod stock_commit;
/// Public so `valerix bench` issues exactly this SQL for its database-only bound.
pub mod store;
mod telemetry;
/// Public so tests can hold a group together and see it applied.
pub mod writes;

use std::{future::Future, sync::Arc, time::Duration};

pub use api::OrderApi;
pub use config::Config;
use poem::http::Method;
use tokio::net::TcpListener;
use valerix_runtime::{
    auth::Token,
    db,
    server::{self, systemd},
    telemetry::requests::LatencyGauge,
};

use crate::{
    clients::{Inventory, Payments},
    saga::Saga,
    sla::SlaApi,
    stock_commit::{Committer, StockCommits},
    store::Store,
    writes::Writes,
};

pub const NAME: &str = valerix_runtime::topology::Service::Order.name();

pub use valerix_runtime::error::ServiceError as Error;

/// How long a stopping order service spends sending its queued stock
/// commits: one call to inventory with its retry.
const STOCK_COMMIT_DRAIN: Duration = Duration::from_secs(5);

/// What anyone may call when the services share a token; the rest (the
/// order list, the gremlins) is the operator's, through the gateway.
const OPEN: &[(Method, &str)] = &[
    (Method::POST, "/orders"),
    (Method::GET, "/orders/{id}"),
    (Method::GET, "/sla"),
];

/// The saga, and the task committing its confirmed orders' stock when
/// that is deferred (`--defer-stock-commit`).
fn saga(config: &Config, pool: sqlx::PgPool, token: Option<&Token>) -> (Saga, Option<Committer>) {
    let policy = config.call_policy();
    let inventory = Inventory::new(&config.inventory_url, policy, token);
    let (stock_commits, committer) = config
        .defer_stock_commit
        .then(|| StockCommits::spawn(inventory.clone()))
        .unzip();
    let store = Store::new(pool);
    let saga = Saga {
        writes: Writes::new(store.clone(), config.group_writes),
        store,
        inventory,
        payments: Payments::new(&config.payment_url, policy, token),
        deadline: Duration::from_secs(config.order_deadline_secs),
        stock_commits,
    };
    (saga, committer)
}

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let token = config.http.service_token()?;
    systemd::status("connecting to the database");
    let pool = db::connect_and_migrate(&config.db).await?;
    telemetry::register();
    let (saga, committer) = saga(&config, pool.clone(), token.as_ref());
    let saga = Arc::new(saga);
    let reconciler = config.reconciler.then(|| {
        reconciler::spawn(
            saga.clone(),
            Duration::from_millis(config.reconcile_interval_ms),
            config.idempotency_retention(),
        )
    });
    let pending_gauge = telemetry::spawn_pending_gauge(saga.store.clone());
    let gauge = latency_gauge();
    let api = server::openapi((OrderApi::new(saga), SlaApi::new(gauge.clone())), TITLE)
        .with_avg_latency_gauge(gauge)
        .with_service_token(NAME, token, OPEN);
    let served = server::serve(
        NAME,
        api,
        listener,
        &config.http,
        db::liveness(pool),
        shutdown,
    )
    .await;
    // Every saga step is idempotent, so stopping one midway is safe.
    if let Some(committer) = committer {
        committer.finish(STOCK_COMMIT_DRAIN).await;
    }
    for task in reconciler.into_iter().chain([pending_gauge]) {
        task.abort();
    }
    served?;
    Ok(())
}

const TITLE: &str = "Valerix order service";

fn latency_gauge() -> LatencyGauge {
    LatencyGauge::new(
        telemetry::AVG_LATENCY_GAUGE,
        valerix_runtime::contract::sla::SLA_WINDOW,
        Method::POST,
        telemetry::AVG_LATENCY_ROUTE,
    )
}

pub fn spec() -> String {
    let mut config = Config::with_database("postgres://localhost/spec");
    // No committer task: the spec needs none.
    config.defer_stock_commit = false;
    let api = OrderApi::new(Arc::new(saga(&config, db::lazy_pool(), None).0));
    server::openapi((api, SlaApi::new(latency_gauge())), TITLE).spec()
}
