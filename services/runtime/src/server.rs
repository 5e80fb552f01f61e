//! Serving a service: the OpenAPI routes with Swagger UI, the edge error
//! mapping, body limits, readiness and a graceful drain on shutdown.

use std::{future::Future, time::Duration};

use poem::{EndpointExt, Route, Server, listener::TcpAcceptor};
use poem_openapi::{OpenApi, OpenApiService};
use tokio::net::TcpListener;

use crate::{
    config::HttpArgs,
    gremlin::{GremlinApi, Gremlins},
    limits::limit_body,
    problem::error_to_problem,
    shed,
    systemd::{self, Probe},
};

/// Why a service stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// A service's API with the gremlin controls every service carries.
pub struct ServiceApi<T> {
    spec: OpenApiService<(T, GremlinApi), ()>,
    gremlins: Gremlins,
}

impl<T: OpenApi> ServiceApi<T> {
    /// The OpenAPI document, as committed under `openapi/`.
    pub fn spec(&self) -> String {
        self.spec.spec()
    }
}

/// Builds a service's API and its spec.
pub fn openapi<T: OpenApi>(api: T, title: &str) -> ServiceApi<T> {
    let gremlins = Gremlins::default();
    let spec = OpenApiService::new(
        (api, GremlinApi(gremlins.clone())),
        title,
        env!("CARGO_PKG_VERSION"),
    );
    ServiceApi { spec, gremlins }
}

/// Serves `api` (plus `/docs`, `/openapi.json`, `/openapi.yaml`) on `listener`
/// until `shutdown` resolves, then drains for at most `http.drain_secs`.
pub async fn serve<T>(
    service: &'static str,
    api: ServiceApi<T>,
    listener: TcpListener,
    http: &HttpArgs,
    liveness: Probe,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    T: OpenApi + 'static,
{
    let ServiceApi { spec, gremlins } = api;
    gremlins.set_enabled(http.gremlins);
    if http.gremlins {
        tracing::warn!(service, "gremlins enabled: /gremlin can inject faults");
    }
    let app = Route::new()
        .nest("/docs", spec.swagger_ui())
        .at("/openapi.json", spec.spec_endpoint())
        .at("/openapi.yaml", spec.spec_endpoint_yaml())
        .nest("/", spec);
    let app = limit_body(gremlins.wrap(app), http.max_body_bytes).catch_all_error(error_to_problem);
    let app = shed::limit_in_flight(app, http.max_in_flight, http.shed_after());

    let addr = listener.local_addr()?;
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    tracing::info!(%addr, service, "serving");
    systemd::spawn_watchdog(liveness);
    systemd::ready(&format!("serving on {addr}"));
    Server::new_with_acceptor(acceptor)
        .name(service)
        .run_with_graceful_shutdown(
            app,
            async move {
                shutdown.await;
                systemd::stopping();
            },
            Some(Duration::from_secs(http.drain_secs)),
        )
        .await
}

/// What a service binary's `main` does: logs, bind, run until SIGTERM.
/// Binding happens here, before `run`, so tests can hand `run` a port-0 socket.
pub async fn main<F, Fut, E>(
    service: &'static str,
    listen: std::net::SocketAddr,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    crate::telemetry::init(service);
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(err) => {
            tracing::error!(%err, %listen, "cannot bind");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(listener).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "{service} failed");
            std::process::ExitCode::FAILURE
        }
    }
}
