//! The gateway's own operations (the proxied ones are documented in
//! `proxied`): the health of the whole system, and `GET /api/overview`,
//! everything the dashboard shows besides orders and stock in one call.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use poem::http::Method;
use poem_openapi::{Object, OpenApi, Tags, payload::Json};
use valerix_runtime::{
    client::{CallPolicy, Downstream},
    gremlin::GremlinSettings,
    health::{Health, HealthResponse},
};

use crate::{NAME, config::Config, routes::Service};

#[derive(Tags)]
enum Tag {
    /// The gateway itself: health of the whole system
    Gateway,
    /// What the dashboard shows
    Dashboard,
}

/// The SLA, as the order service measures it.
pub const SLA_GAUGE: &str = "order_service_avg_latency_30s";
/// The SLA's limit in seconds: breached above it (the OrderServiceSLABreach rule).
pub const SLA_LIMIT_SECONDS: f64 = 1.0;

/// What the dashboard shows besides orders and stock, in one call.
#[derive(Debug, Clone, Object)]
pub struct Overview {
    /// Each part of the system: `api-gateway` (`healthy`), the three
    /// services (`reachable` | `unreachable`, as the gateway reaches them)
    /// and `database` (`connected` | `disconnected`, as the order service
    /// sees it; `unknown` when the order service does not answer).
    pub services: BTreeMap<String, String>,
    pub sla: Sla,
    /// The order service's circuit breaker per downstream service:
    /// `closed` | `open` | `half-open`. Empty when the order service does
    /// not answer.
    pub breakers: BTreeMap<String, String>,
    /// Per service, whether it accepts gremlins (it was started with
    /// `--gremlins`); false also when it does not answer.
    pub gremlins: BTreeMap<String, bool>,
}

/// The order service's SLA: placing an order takes under a second on
/// average over the last 30 s.
#[derive(Debug, Clone, Object)]
pub struct Sla {
    /// `order_service_avg_latency_30s`: mean seconds taken by `POST /orders`
    /// over the last 30 s (0 when idle). Absent when the order service's
    /// metrics could not be read.
    #[oai(skip_serializing_if_is_none)]
    pub avg_latency_30s: Option<f64>,
    /// The limit in seconds.
    pub limit: f64,
    /// Whether `avg_latency_30s` is above the limit.
    pub breached: bool,
}

impl Sla {
    fn new(avg_latency_30s: Option<f64>) -> Self {
        Self {
            avg_latency_30s,
            limit: SLA_LIMIT_SECONDS,
            breached: avg_latency_30s.is_some_and(|v| v > SLA_LIMIT_SECONDS),
        }
    }
}

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge_value(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
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

    fn all(&self) -> [&Downstream; 3] {
        [&self.order, &self.inventory, &self.payment]
    }

    /// The whole system's health, and the order service's own document
    /// (which also carries its breaker states).
    async fn health(&self) -> (Health, Option<Health>) {
        let t = self.health_timeout;
        let (order, inventory, payment) = tokio::join!(
            self.order.health(t),
            self.inventory.health(t),
            self.payment.health(t),
        );
        let database = order
            .as_ref()
            .and_then(|h| h.dependencies.get("database").cloned());
        let health = Health::new(NAME)
            .service(Service::Order.name(), order.is_some())
            .service(Service::Inventory.name(), inventory.is_some())
            .service(Service::Payment.name(), payment.is_some());
        let health = match database {
            Some(state) => {
                let up = state == "connected";
                health.dependency("database", up, "connected", "disconnected")
            }
            // The order service did not answer, which already makes the
            // gateway unhealthy; the database is simply not known.
            None => health.info("database", "unknown"),
        };
        (health, order)
    }

    /// The SLA gauge from the order service's `/metrics`.
    async fn sla_seconds(&self) -> Option<f64> {
        let exposition = self.order.text("/metrics", self.health_timeout).await?;
        gauge_value(&exposition, SLA_GAUGE)
    }

    /// Whether the service accepts gremlins: its `GET /gremlin` answers
    /// (403 when it was started without `--gremlins`).
    async fn gremlins_enabled(&self, service: &Downstream) -> bool {
        service
            .attempt::<(), GremlinSettings>(Method::GET, "/gremlin", None, self.health_timeout)
            .await
            .is_ok_and(|answer| answer.body.enabled)
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
        self.upstreams.health().await.0.into_response()
    }

    /// The dashboard's view of the system.
    ///
    /// Health per part (green/red), the SLA against its 1 s limit, the
    /// order service's breaker per downstream and which services accept
    /// gremlins. Always 200: a part that does not answer shows as down.
    #[oai(path = "/api/overview", method = "get", tag = "Tag::Dashboard")]
    async fn overview(&self) -> Json<Overview> {
        let u = &self.upstreams;
        let [order, inventory, payment] = u.all();
        let ((health, order_health), sla, g_order, g_inventory, g_payment) = tokio::join!(
            u.health(),
            u.sla_seconds(),
            u.gremlins_enabled(order),
            u.gremlins_enabled(inventory),
            u.gremlins_enabled(payment),
        );
        let mut services = BTreeMap::from([(NAME.to_owned(), "healthy".to_owned())]);
        services.extend(health.dependencies);
        let breakers = [Service::Inventory, Service::Payment]
            .into_iter()
            .filter_map(|s| {
                let state = order_health
                    .as_ref()?
                    .dependencies
                    .get(&format!("{}-circuit", s.name()))?;
                Some((s.name().to_owned(), state.clone()))
            })
            .collect();
        let gremlins = BTreeMap::from([
            (order.name().to_owned(), g_order),
            (inventory.name().to_owned(), g_inventory),
            (payment.name().to_owned(), g_payment),
        ]);
        Json(Overview {
            services,
            sla: Sla::new(sla),
            breakers,
            gremlins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sla_gauge_from_an_exposition() {
        let text = "# TYPE order_service_avg_latency_30s gauge\n\
                    order_service_avg_latency_30s_other 7\n\
                    order_service_avg_latency_30s 1.25\n";
        assert_eq!(gauge_value(text, SLA_GAUGE), Some(1.25));
        assert_eq!(gauge_value("", SLA_GAUGE), None);
        assert_eq!(
            gauge_value("order_service_avg_latency_30s NaNx", SLA_GAUGE),
            None
        );
    }

    #[test]
    fn the_sla_is_breached_above_its_limit_only() {
        assert!(!Sla::new(Some(0.999)).breached);
        assert!(!Sla::new(Some(1.0)).breached);
        assert!(Sla::new(Some(1.001)).breached);
        assert!(!Sla::new(None).breached);
    }
}
