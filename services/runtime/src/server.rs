//! Serving a service: the OpenAPI routes with Swagger UI, the edge error
//! mapping, body limits, readiness and a graceful drain on shutdown.

use std::{future::Future, time::Duration};

use poem::{EndpointExt, IntoEndpoint, Route, Server, listener::TcpAcceptor};
use poem_openapi::{OpenApi, OpenApiService};
use tokio::net::TcpListener;

use crate::{
    allow::{Allowed, with_allow},
    config::HttpArgs,
    limits::limit_body,
    problem::error_to_problem,
    systemd::{self, Probe},
};

/// The spec of a service's API, also used to write `openapi/*.json`.
pub fn openapi<T: OpenApi>(api: T, title: &str) -> OpenApiService<T, ()> {
    OpenApiService::new(api, title, env!("CARGO_PKG_VERSION"))
}

/// `/docs` (Swagger UI), `/openapi.json` and `/openapi.yaml` for `api`.
pub fn docs<T: OpenApi>(route: Route, api: &OpenApiService<T, ()>) -> Route {
    route
        .nest("/docs", api.swagger_ui())
        .at("/openapi.json", api.spec_endpoint())
        .at("/openapi.yaml", api.spec_endpoint_yaml())
}

/// Serves `api` (plus `/docs`, `/openapi.json`, `/openapi.yaml`) on `listener`
/// until `shutdown` resolves, then drains for at most `http.drain_secs`.
pub async fn serve<T>(
    service: &'static str,
    api: OpenApiService<T, ()>,
    listener: TcpListener,
    http: &HttpArgs,
    liveness: Probe,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    T: OpenApi + 'static,
{
    let allowed = Allowed::of(&T::meta());
    let app = with_allow(docs(Route::new(), &api).nest("/", api), allowed);
    serve_app(service, app, listener, http, liveness, shutdown).await
}

/// Serves any routes with the same edge as [`serve`]: body limits, errors as
/// problem JSON, readiness, watchdog and a graceful drain. For a service whose
/// routes are more than one OpenAPI object (the gateway).
pub async fn serve_app(
    service: &'static str,
    app: impl IntoEndpoint<Endpoint: 'static> + 'static,
    listener: TcpListener,
    http: &HttpArgs,
    liveness: Probe,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = limit_body(app, http.max_body_bytes).catch_all_error(error_to_problem);

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
