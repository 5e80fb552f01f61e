//! The gateway's own operations (the proxied ones are documented in
//! `proxied`): the health of the whole system, `GET /api/overview`,
//! everything the dashboard shows besides orders and stock in one call, and
//! `GET /api/activity`, its chart.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use poem::{Request, http::Method};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, param::Query, payload::Json};
use valerix_runtime::{
    Problem, Problems,
    auth::{Denied, Guard, Token},
    client::{CallPolicy, Downstream},
    contract::{
        Wire,
        health::{Health, HealthResponse},
        problem::INVALID_PARAMS,
        sla::Sla,
    },
    problem_set,
    server::gremlin::GremlinSettings,
};

use crate::{
    NAME,
    activity::{self, Activity, Recorder},
    config::Config,
    lifetimes::{Lifetime, Lifetimes},
    routes::Service,
};

#[derive(Tags)]
enum Tag {
    /// The gateway itself: health of the whole system
    Gateway,
    /// What the dashboard shows
    Dashboard,
}

/// What the dashboard shows besides orders and stock, in one call. Anyone
/// sees health and the SLA; the breakers and which services take gremlins
/// are the operator's (sent with the operator token).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Overview {
    /// Each part of the system: `api-gateway` (`healthy`), the three
    /// services (`reachable` | `unreachable`, as the gateway reaches them)
    /// and `database` (`connected` | `disconnected`, as the order service
    /// sees it; `unknown` when the order service does not answer).
    pub services: BTreeMap<String, String>,
    /// Each of the three services' process as the gateway has seen it:
    /// since when it runs and how often it was restarted (a new process
    /// answered) since the gateway started.
    pub processes: BTreeMap<String, Lifetime>,
    pub sla: Sla,
    /// With the operator token: the order service's circuit breaker per
    /// downstream service: `closed` | `open` | `half-open`. Empty when the
    /// order service does not answer.
    pub breakers: Option<BTreeMap<String, String>>,
    /// With the operator token: per service, whether it accepts gremlins
    /// (it was started with `--gremlins`); false also when it does not
    /// answer.
    pub gremlins: Option<BTreeMap<String, bool>>,
}

#[derive(ApiResponse)]
enum OverviewResponse {
    /// The overview; the operator's part only with the operator token.
    #[oai(status = 200)]
    Ok(Json<Overview>),
    /// An operator token was sent, and it is wrong (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
}

impl From<Denied> for OverviewResponse {
    fn from(denied: Denied) -> Self {
        Self::Unauthorized(Json(denied.problem()), denied.challenge().to_owned())
    }
}

/// The three services as the gateway's own operations reach them: one
/// attempt each, no retries and no circuit breaker (a probe that fails
/// shows as down; there is nothing to protect by not asking).
pub struct Upstreams {
    pub order: Downstream,
    pub inventory: Downstream,
    pub payment: Downstream,
    pub health_timeout: Duration,
    lifetimes: Lifetimes,
    activity: Recorder,
}

impl Upstreams {
    /// `token`: the services' shared token, for reading their gremlin
    /// settings when they require it.
    pub fn new(config: &Config, token: Option<&Token>) -> Self {
        let policy = CallPolicy {
            timeout: config.health_timeout(),
            retries: 0,
            breaker: None,
            ..CallPolicy::default()
        };
        let downstream = |service: Service, upstream| {
            Downstream::new(service.name(), upstream, policy).with_bearer(token)
        };
        Self {
            order: downstream(Service::Order, &config.order_url),
            inventory: downstream(Service::Inventory, &config.inventory_url),
            payment: downstream(Service::Payment, &config.payment_url),
            health_timeout: config.health_timeout(),
            lifetimes: Lifetimes::default(),
            activity: Recorder::default(),
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
        for (service, health) in [
            (&self.order, &order),
            (&self.inventory, &inventory),
            (&self.payment, &payment),
        ] {
            self.lifetimes.observe(service.name(), health.as_ref());
        }
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

    /// One second of watching, whether or not anyone looks: each service's
    /// health (so a restart is counted even while no page is open) and the
    /// order service's metrics for the chart.
    async fn watch_once(&self) {
        let at = Utc::now();
        let (_, metrics) = tokio::join!(self.health(), self.order.metrics(self.health_timeout));
        self.activity.record(at, metrics.as_deref());
    }

    /// Watches until dropped, one round a second.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(activity::INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.watch_once().await;
        }
    }

    /// The order service's `GET /sla`.
    async fn sla(&self) -> Sla {
        self.order
            .attempt::<(), Wire<Sla>>(Method::GET, "/sla", None, self.health_timeout)
            .await
            .map_or_else(|_| Sla::unknown(), |answer| answer.body.0)
    }

    /// Whether the service accepts gremlins: its `GET /gremlin` answers
    /// (403 when it was started without `--gremlins`).
    async fn gremlins_enabled(&self, service: &Downstream) -> bool {
        service
            .attempt::<(), GremlinSettings>(Method::GET, "/gremlin", None, self.health_timeout)
            .await
            .is_ok_and(|answer| answer.body.enabled)
    }

    /// The operator's part of the overview.
    async fn gremlins(&self) -> BTreeMap<String, bool> {
        let [order, inventory, payment] = self.all();
        let (o, i, p) = tokio::join!(
            self.gremlins_enabled(order),
            self.gremlins_enabled(inventory),
            self.gremlins_enabled(payment),
        );
        BTreeMap::from([
            (order.name().to_owned(), o),
            (inventory.name().to_owned(), i),
            (payment.name().to_owned(), p),
        ])
    }
}

fn breakers(order_health: Option<&Health>) -> BTreeMap<String, String> {
    [Service::Inventory, Service::Payment]
        .into_iter()
        .filter_map(|s| {
            let state = order_health?
                .dependencies
                .get(&format!("{}-circuit", s.name()))?;
            Some((s.name().to_owned(), state.clone()))
        })
        .collect()
}

problem_set!(ActivityErrors { 400 => INVALID_PARAMS });

pub struct GatewayApi {
    upstreams: Arc<Upstreams>,
    operator: Guard,
}

impl GatewayApi {
    pub fn new(upstreams: Arc<Upstreams>, operator: Guard) -> Self {
        Self {
            upstreams,
            operator,
        }
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
    /// Health per part (green/red) and the SLA against its 1 s limit for
    /// anyone; with the operator token also the order service's breaker per
    /// downstream and which services accept gremlins. 200 even when parts
    /// do not answer (they show as down); 401 only for a wrong token.
    #[oai(path = "/api/overview", method = "get", tag = "Tag::Dashboard")]
    async fn overview(&self, req: &Request) -> OverviewResponse {
        let operator = req
            .headers()
            .contains_key(poem::http::header::AUTHORIZATION);
        if operator && let Err(denied) = self.operator.admit(req) {
            return denied.into();
        }
        let u = &self.upstreams;
        let ((health, order_health), sla, gremlins) = tokio::join!(u.health(), u.sla(), async {
            match operator {
                true => Some(u.gremlins().await),
                false => None,
            }
        },);
        let mut services = BTreeMap::from([(NAME.to_owned(), "healthy".to_owned())]);
        services.extend(health.dependencies);
        OverviewResponse::Ok(Json(Overview {
            services,
            processes: u.lifetimes.snapshot(),
            sla,
            breakers: operator.then(|| breakers(order_health.as_ref())),
            gremlins,
        }))
    }

    /// The dashboard's chart: orders per second and order latency.
    ///
    /// One point a second over the last five minutes, read from the order
    /// service's own metrics: orders ending CONFIRMED and FAILED and
    /// answered 202 (pending) per second, the median and 99th percentile
    /// of placing an order, and the SLA's 30 s mean. `after` (milliseconds
    /// since the Unix epoch, a point's `t`) returns only newer points.
    #[oai(path = "/api/activity", method = "get", tag = "Tag::Dashboard")]
    async fn activity(
        &self,
        /// Only the points after this one (its `t`).
        after: Query<Option<i64>>,
    ) -> Result<Json<Activity>, Problems<ActivityErrors>> {
        Ok(Json(self.upstreams.activity.activity(after.0)))
    }
}
