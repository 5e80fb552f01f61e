//! The gateway's own operations (the proxied ones are documented in
//! `proxied`). Endpoints the dashboard needs, such as `GET /api/overview`,
//! go here: one method each, with `Upstreams` to reach the services.

use std::{sync::Arc, time::Duration};

use poem_openapi::{OpenApi, Tags};
use valerix_runtime::{
    client::{CallPolicy, Downstream},
    health::{Health, HealthResponse},
};

use crate::{NAME, config::Config, routes::Service};

#[derive(Tags)]
enum Tag {
    /// The gateway itself: health of the whole system
    Gateway,
}

/// The three services as the gateway's own operations reach them.
pub struct Upstreams {
    pub order: Downstream,
    pub inventory: Downstream,
    pub payment: Downstream,
    pub health_timeout: Duration,
}

impl Upstreams {
    pub fn new(config: &Config) -> Self {
        let policy = CallPolicy {
            timeout: config.upstream_timeout(),
            retries: 0,
            ..CallPolicy::default()
        };
        Self {
            order: Downstream::new(Service::Order.name(), &config.order_url, policy),
            inventory: Downstream::new(Service::Inventory.name(), &config.inventory_url, policy),
            payment: Downstream::new(Service::Payment.name(), &config.payment_url, policy),
            health_timeout: config.health_timeout(),
        }
    }
}

pub struct GatewayApi {
    upstreams: Arc<Upstreams>,
}

impl GatewayApi {
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Self { upstreams }
    }
}

#[OpenApi]
impl GatewayApi {
    /// Health of the whole system.
    ///
    /// Whether each service answers the gateway, and the database as the
    /// order service sees it. 503 when any is down.
    #[oai(path = "/health", method = "get", tag = "Tag::Gateway")]
    async fn health(&self) -> HealthResponse {
        let u = &self.upstreams;
        let t = u.health_timeout;
        let (order, inventory, payment) = tokio::join!(
            u.order.health(t),
            u.inventory.health(t),
            u.payment.health(t),
        );
        let database = order
            .as_ref()
            .and_then(|h| h.dependencies.get("database").cloned());
        let health = Health::new(NAME)
            .service(Service::Order.name(), order.is_some())
            .service(Service::Inventory.name(), inventory.is_some())
            .service(Service::Payment.name(), payment.is_some());
        match database {
            Some(state) => {
                let up = state == "connected";
                health.dependency("database", up, "connected", "disconnected")
            }
            // The order service did not answer, which already makes the
            // gateway unhealthy; the database is simply not known.
            None => health.info("database", "unknown"),
        }
        .into_response()
    }
}
