//! The API gateway: the dashboard, the services' APIs under `/api`, and the
//! health of the whole system, behind one address.
//!
//! - `routes`: the route table, which the proxy and the spec both read
//! - `proxy`: forwarding one routed request to its service, over `client`;
//!   the shop's operations in the runtime's express lane, the rest in poem's
//! - `spec`: the gateway's OpenAPI document, composed from the services'
//! - `api`: the gateway's own operations (health, overview, activity)
//! - `activity`: the dashboard's chart, read from the order service's metrics
//! - `lifetimes`: each service's restarts, seen through its health
//! - `ui`: the dashboard's static files; `config`: the flags

mod activity;
mod api;
mod client;
mod config;
mod lifetimes;
mod proxy;
mod routes;
mod spec;
mod ui;

use std::{future::Future, sync::Arc, time::Duration};

pub use api::{GatewayApi, Upstreams};
pub use config::Config;
use poem::{Endpoint, IntoEndpoint, Response, Route};
use poem_openapi::{OpenApi, OpenApiService};
use tokio::net::TcpListener;
use valerix_runtime::{
    auth::{Guard, Token, TokenError},
    client::upstream::Upstream,
    server::{
        self,
        allow::{Allowed, with_allow},
        systemd,
    },
    telemetry::requests::{RouteLabels, Spans},
    topology,
};

pub use crate::spec::{COMMITTED as COMMITTED_SERVICE_SPECS, ServiceSpecs, SpecError};
use crate::{
    client::Http,
    proxy::{Credentials, Proxy, Routed, Shop},
    routes::{ROUTES, Service},
};

pub const NAME: &str = valerix_runtime::topology::Service::Gateway.name();

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot build the gateway's spec: {0}")]
    Spec(#[from] SpecError),
}

fn openapi(api: GatewayApi) -> OpenApiService<GatewayApi, ()> {
    server::openapi_service(api, "Valerix API gateway").description(
        "The entry point of the dashboard and the shop. Anyone may place an order \
         (`POST /api/orders`), read one by its id and read the catalog \
         (`/api/inventory`). The operator's actions (restocking and pricing, the \
         order and payment lists, the gremlins under \
         `/api/gremlin/{order,inventory,payment}`) take the operator token as \
         `Authorization: Bearer`. The services' calls to each other (reserve, \
         commit, release, charge, void, refund) are not routed. The operations \
         under `/api` are the services' own, forwarded unchanged (status, body, \
         content type; `traceparent`, `tracestate`, `Idempotency-Key` and `Order-Id` \
         are passed on; an order placed with neither of the last two gets an \
         `Order-Id` from the gateway); the gateway adds only 401, 502 (service \
         unreachable) and 504 (no answer in time).",
    )
}

/// What the gateway reads once at start: its credentials.
struct Secrets {
    operator: Guard,
    service: Option<Token>,
}

impl Secrets {
    fn read(config: &Config) -> Result<Self, TokenError> {
        let operator = Token::read(config.operator_token_file.as_deref())?;
        if operator.is_none() {
            tracing::warn!(
                "no --operator-token-file: the operator's routes answer 401 to everyone"
            );
        }
        Ok(Self {
            operator: Guard::new(NAME, "operator", operator),
            service: config.http.service_token()?,
        })
    }

    fn upstreams(&self, config: &Config) -> Arc<Upstreams> {
        Arc::new(Upstreams::new(config, self.service.as_ref()))
    }
}

/// A poem route path from an OpenAPI one: `/a/{b}` is `/a/:b`.
fn poem_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// `/docs` (Swagger UI), `/openapi.json` and `/openapi.yaml` for the
/// composed spec. poem-openapi's Swagger UI page embeds its own spec: the
/// gateway's own part is swapped for the whole.
fn docs(route: Route, own: &OpenApiService<GatewayApi, ()>, spec: &str) -> Route {
    valerix_runtime::server::spec::docs(route, &own.swagger_ui_html(), &own.spec(), spec)
}

/// The gateway's routes: docs, its own operations, a proxy per prefix of
/// the route table (only the routed operations pass), and the dashboard
/// for everything else; and the shop's operations for the express lane.
fn app(
    config: &Config,
    secrets: &Secrets,
    upstreams: Arc<Upstreams>,
    spec: &str,
) -> Result<(impl Endpoint<Output = Response> + 'static, Shop), Error> {
    // One client per service: a client reaching a Unix socket sends every
    // request to it. A second one keeps no connection: a request sent again
    // after its connection broke goes out on a new one, never on another
    // kept connection to the process that went away.
    let connect_timeout = Duration::from_secs(2).min(config.upstream_timeout());
    let upstream = |upstream: &Upstream| {
        let url = upstream.url();
        let authority = format!(
            "{}:{}",
            url.host_str().unwrap_or("localhost"),
            url.port_or_known_default().unwrap_or(80)
        );
        proxy::Upstream {
            base: url.clone(),
            http: Http::pooled(&authority, upstream.socket(), connect_timeout),
            fresh: Http::new(&authority, upstream.socket(), connect_timeout, 0),
        }
    };
    let (order, inventory, payment) = (
        upstream(&config.order_url),
        upstream(&config.inventory_url),
        upstream(&config.payment_url),
    );
    let credentials = Credentials {
        operator: secrets.operator.clone(),
        service: secrets.service.as_ref().map(Token::authorization),
    };

    let api = openapi(GatewayApi::new(upstreams, secrets.operator.clone()));
    let mut app = docs(Route::new(), &api, spec);
    let own = Arc::new(api.into_endpoint());
    for path in GatewayApi::meta().iter().flat_map(|a| &a.paths) {
        app = app.at(poem_path(&path.path), own.clone());
    }
    let mut shop = Vec::new();
    for route in ROUTES {
        let client = match route.service {
            Service::Order => order.clone(),
            Service::Inventory => inventory.clone(),
            Service::Payment => payment.clone(),
            Service::Gateway => unreachable!("no route leads to the gateway (routes::tests)"),
        };
        let proxy = Arc::new(Proxy::new(
            route,
            client,
            config.upstream_timeout(),
            credentials.clone(),
        ));
        shop.push(proxy.clone());
        app = app.nest(route.prefix, Routed(proxy));
    }
    let app = app.nest("/", ui::endpoint(&config.ui_dir));
    Ok((
        with_allow(app, Allowed::of(&GatewayApi::meta())),
        Shop(shop),
    ))
}

/// A task aborted when this is dropped.
struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let secrets = Secrets::read(&config)?;
    let spec = spec_from(&COMMITTED_SERVICE_SPECS)?;
    let upstreams = secrets.upstreams(&config);
    // Watches for as long as the gateway serves: stopped when `run` returns.
    let _watching = Watching(tokio::spawn(upstreams.clone().watch()));
    let (app, shop) = app(&config, &secrets, upstreams, &spec)?;
    // The gateway holds no state to lose: alive is serving.
    let liveness: systemd::Probe = Arc::new(|| Box::pin(async { true }));
    let routes = RouteLabels::from_openapi_json(&spec);
    server::serve_app(
        NAME,
        app,
        Some(Arc::new(shop)),
        routes,
        None,
        Spans::WhenExported,
        listener,
        &config.http,
        liveness,
        shutdown,
    )
    .await?;
    Ok(())
}

/// The gateway's OpenAPI document over the given service specs, for
/// `valerix openapi` (the services' fresh specs) and the drift test.
pub fn spec_from(services: &ServiceSpecs) -> Result<String, SpecError> {
    let config = Config::with_upstreams(
        topology::Service::Order.default_address(),
        topology::Service::Inventory.default_address(),
        topology::Service::Payment.default_address(),
    );
    let api = GatewayApi::new(
        Arc::new(Upstreams::new(&config, None)),
        Guard::new(NAME, "operator", None),
    );
    spec::compose(&openapi(api).spec(), services)
        .map(|composed| valerix_runtime::server::spec::strict_requests(&composed))
}

/// The OpenAPI document the gateway serves (over the committed specs).
pub fn spec() -> String {
    spec_from(&COMMITTED_SERVICE_SPECS).unwrap_or_else(|err| panic!("{err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poem_paths() {
        assert_eq!(poem_path("/health"), "/health");
        assert_eq!(poem_path("/api/x/{id}/y"), "/api/x/:id/y");
    }

    #[test]
    fn the_spec_documents_the_proxied_operations_under_api() {
        let spec: serde_json::Value = serde_json::from_str(&spec()).expect("json");
        let paths = spec["paths"].as_object().expect("paths");
        for path in [
            "/health",
            "/api/orders",
            "/api/orders/{id}",
            "/api/inventory/{product_id}",
        ] {
            assert!(paths.contains_key(path), "{path} in {:?}", paths.keys());
        }
        assert!(!paths.keys().any(|p| p.starts_with("/orders")));
        assert!(!paths.contains_key("/api/inventory/reserve"));
        let post = &paths["/api/orders"]["post"]["responses"];
        for status in ["201", "202", "400", "422", "502", "504"] {
            assert!(post.get(status).is_some(), "{status} documented");
        }
    }
}
