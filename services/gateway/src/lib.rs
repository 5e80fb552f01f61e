//! The API gateway: the dashboard, the services' APIs under `/api`, and the
//! health of the whole system, behind one address.

mod api;
mod config;
mod proxied;
mod proxy;
mod routes;
mod ui;

use std::{future::Future, sync::Arc, time::Duration};

pub use api::{GatewayApi, Upstreams};
pub use config::Config;
use poem::{Endpoint, IntoEndpoint, Response, Route};
use poem_openapi::{OpenApi, OpenApiService};
pub use proxied::Proxied;
use tokio::net::TcpListener;
use valerix_runtime::observe::RouteLabels;
use valerix_runtime::{
    allow::{Allowed, with_allow},
    server, systemd, topology,
    upstream::Upstream,
};

use crate::{
    proxy::Proxy,
    routes::{ROUTES, Service},
};

pub const NAME: &str = valerix_runtime::topology::Service::Gateway.name();

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Everything the gateway documents: its own operations and the proxied ones.
pub type Apis = (
    GatewayApi,
    Proxied<order_service::OrderApi>,
    Proxied<inventory_service::InventoryApi>,
    Proxied<payment_service::PaymentApi>,
);

fn openapi(api: GatewayApi) -> OpenApiService<Apis, ()> {
    let apis = (
        api,
        Proxied::default(),
        Proxied::default(),
        Proxied::default(),
    );
    server::openapi_service(apis, "Valerix API gateway").description(
        "The entry point of the dashboard. `/api/orders`, `/api/inventory` and \
         `/api/payments` are the services' own APIs, forwarded unchanged (status, \
         body, content type; `traceparent`, `tracestate` and `Idempotency-Key` are \
         passed on); `/api/gremlin/{order,inventory,payment}` reach each service's \
         `/gremlin`. The gateway adds only 502 (service unreachable) and 504 \
         (no answer in time).",
    )
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

/// The gateway's routes: docs, its own operations, a proxy per prefix of
/// the route table, and the dashboard for everything else.
pub fn app(config: &Config) -> Result<impl Endpoint<Output = Response> + 'static, Error> {
    // One client per service: a client reaching a Unix socket sends every
    // request to it.
    let upstream = |upstream: &Upstream| -> Result<(reqwest::Url, reqwest::Client), Error> {
        let http = upstream.client(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2).min(config.upstream_timeout()))
                .pool_idle_timeout(Duration::from_secs(30)),
        )?;
        Ok((upstream.url().clone(), http))
    };
    let (order, inventory, payment) = (
        upstream(&config.order_url)?,
        upstream(&config.inventory_url)?,
        upstream(&config.payment_url)?,
    );

    let api = openapi(GatewayApi::new(Arc::new(Upstreams::new(config))));
    let mut app = server::docs(Route::new(), &api);
    let own = Arc::new(api.into_endpoint());
    for path in GatewayApi::meta().iter().flat_map(|a| &a.paths) {
        app = app.at(poem_path(&path.path), own.clone());
    }
    for route in ROUTES {
        let (base, http) = match route.service {
            Service::Order => order.clone(),
            Service::Inventory => inventory.clone(),
            Service::Payment => payment.clone(),
        };
        let proxy = Proxy::new(route, base, http, config.upstream_timeout());
        app = app.nest(route.prefix, proxy);
    }
    let app = app.nest("/", ui::endpoint(&config.ui_dir));
    Ok(with_allow(app, Allowed::of(&GatewayApi::meta())))
}

/// Runs the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let app = app(&config)?;
    // The gateway holds no state to lose: alive is serving.
    let liveness: systemd::Probe = Arc::new(|| Box::pin(async { true }));
    let routes = RouteLabels::from_openapi_json(&spec());
    server::serve_app(
        NAME,
        app,
        routes,
        None,
        listener,
        &config.http,
        liveness,
        shutdown,
    )
    .await?;
    Ok(())
}

/// The OpenAPI document, for `valerix openapi` and the drift test.
pub fn spec() -> String {
    let config = Config::with_upstreams(
        topology::Service::Order.default_address(),
        topology::Service::Inventory.default_address(),
        topology::Service::Payment.default_address(),
    );
    openapi(GatewayApi::new(Arc::new(Upstreams::new(&config)))).spec()
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
            "/api/inventory/reserve",
        ] {
            assert!(paths.contains_key(path), "{path} in {:?}", paths.keys());
        }
        assert!(!paths.keys().any(|p| p.starts_with("/orders")));
        let post = &paths["/api/orders"]["post"]["responses"];
        for status in ["201", "202", "400", "422", "502", "504"] {
            assert!(post.get(status).is_some(), "{status} documented");
        }
    }
}
