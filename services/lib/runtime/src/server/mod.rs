//! Serving a service: the OpenAPI routes with Swagger UI, `/metrics`, the
//! request telemetry, the edge error mapping, body limits, readiness and a
//! graceful drain on shutdown.
//!
//! [`serve`] puts the pieces together, outermost first: the request
//! telemetry, [`shed`] (a bound on requests at once), [`limits`] (body
//! size), errors as problem JSON, [`gremlin`] (fault injection), [`allow`]
//! (the `Allow` header on 405), the bearer-token guard, the routes and
//! [`spec`] (the OpenAPI documents); beside it, for the gateway, the
//! [`express`] lane, which gives the requests it takes the same edge without
//! poem's layers. Under it [`listen`] is the accept loop
//! and its connection limits, on sockets bound here or passed in
//! ([`activation`]); [`systemd`] says when the service is ready, alive and
//! stopping, and [`shutdown`] when to stop.

pub mod activation;
pub mod allow;
pub mod express;
pub mod gremlin;
pub mod limits;
pub mod listen;
pub mod shed;
pub mod shutdown;
pub mod spec;
pub mod systemd;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use poem::{EndpointExt, IntoEndpoint, Route, get, http::Method};
use poem_openapi::{OpenApi, OpenApiService};
use tokio::net::TcpListener;

use crate::{
    auth::{Guard, Token},
    config::HttpArgs,
    contract::problem::error_to_problem,
    telemetry::{
        prometheus,
        requests::{self, LatencyGauge, RouteLabels, Spans},
    },
};
use allow::{Allowed, with_allow};
use express::{Express, Lane};
use gremlin::{GremlinApi, Gremlins};
use limits::limit_body;
use listen::{Limits, Listeners, UnixSocket};
use systemd::Probe;

/// A service's API with the gremlin controls every service carries.
pub struct ServiceApi<T> {
    spec: OpenApiService<(T, GremlinApi), ()>,
    gremlins: Gremlins,
    latency_gauge: Option<LatencyGauge>,
    guard: Option<(Guard, &'static [(Method, &'static str)])>,
}

impl<T: OpenApi> ServiceApi<T> {
    /// The OpenAPI document, as served and committed under `openapi/`.
    pub fn spec(&self) -> String {
        spec::strict_requests(&self.spec.spec())
    }

    /// Also publish the mean latency of the gauge's operation (0 when idle).
    pub fn with_avg_latency_gauge(mut self, gauge: LatencyGauge) -> Self {
        self.latency_gauge = Some(gauge);
        self
    }

    /// With a service token (`--service-token-file`), every operation but
    /// those in `open` (and `/health`) answers only to callers that send
    /// it: the saga's steps and the operator's actions. Without one they
    /// stay open, reachable only where the service listens (loopback, its
    /// Unix socket). `/metrics`, `/docs` and the spec are never guarded.
    pub fn with_service_token(
        mut self,
        service: &'static str,
        token: Option<Token>,
        open: &'static [(Method, &'static str)],
    ) -> Self {
        self.guard = token.map(|t| (Guard::new(service, "service", Some(t)), open));
        self
    }
}

/// Open on every service whatever its token: what load balancers,
/// systemd's watchdog and people check first.
const ALWAYS_OPEN: &[(Method, &str)] = &[(Method::GET, "/health")];

/// A plain OpenAPI service (no gremlins), e.g. for the gateway.
pub fn openapi_service<T: OpenApi>(api: T, title: &str) -> OpenApiService<T, ()> {
    OpenApiService::new(api, title, env!("CARGO_PKG_VERSION"))
}

/// `/docs` (Swagger UI), `/openapi.json` and `/openapi.yaml` for `api`,
/// with the request schemas as strict as the service is
/// ([`spec::strict_requests`]).
pub fn docs<T: OpenApi>(route: Route, api: &OpenApiService<T, ()>) -> Route {
    let generated = api.spec();
    spec::docs(
        route,
        &api.swagger_ui_html(),
        &generated,
        &spec::strict_requests(&generated),
    )
}

/// Builds a service's API and its spec.
pub fn openapi<T: OpenApi>(api: T, title: &str) -> ServiceApi<T> {
    let gremlins = Gremlins::default();
    let spec = openapi_service((api, GremlinApi(gremlins.clone())), title);
    ServiceApi {
        spec,
        gremlins,
        latency_gauge: None,
        guard: None,
    }
}

/// Serves `api` (plus `/docs`, `/openapi.json`, `/openapi.yaml`, `/metrics`)
/// on `listener` until `shutdown` resolves, then drains for at most
/// `http.drain_secs`.
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
    let ServiceApi {
        spec,
        gremlins,
        latency_gauge,
        guard,
    } = api;
    gremlins.set_enabled(http.gremlins);
    if http.gremlins {
        tracing::warn!(service, "gremlins enabled: /gremlin can inject faults");
    }
    let routes = RouteLabels::from_openapi_json(&spec.spec());
    let allowed = Allowed::of(&<(T, GremlinApi)>::meta());
    let docs = docs(Route::new(), &spec);
    let app = match guard {
        Some((guard, open)) => {
            let open = [open, ALWAYS_OPEN].concat();
            docs.nest("/", guard.protect(spec.into_endpoint(), open))
        }
        None => docs.nest("/", spec),
    };
    let app = with_allow(app, allowed);
    serve_app(
        service,
        gremlins.wrap(app),
        None,
        routes,
        latency_gauge,
        Spans::Always,
        listener,
        http,
        liveness,
        shutdown,
    )
    .await
}

/// Serves any routes with the same edge as [`serve`]: `/metrics` and the
/// request telemetry, body limits, errors as problem JSON, readiness,
/// watchdog and a graceful drain. For a service whose routes are more than
/// one OpenAPI object (the gateway), with an express lane for the requests
/// it serves most ([`express`]).
#[allow(clippy::too_many_arguments)]
pub async fn serve_app(
    service: &'static str,
    app: impl IntoEndpoint<Endpoint: 'static> + 'static,
    express: Option<Arc<dyn Express>>,
    routes: RouteLabels,
    latency_gauge: Option<LatencyGauge>,
    spans: Spans,
    listener: TcpListener,
    http: &HttpArgs,
    liveness: Probe,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    prometheus::install();
    crate::contract::health::started_at();
    let app = Route::new()
        .at(prometheus::PATH, get(prometheus::endpoint))
        .nest("/", app);
    let app = limit_body(app, http.max_body_bytes).catch_all_error(error_to_problem);
    let slots = shed::Slots::new(http.max_in_flight, http.shed_after());
    let app = shed::shed(app, slots.clone());
    let app = requests::requests(service, routes, latency_gauge.clone(), spans, app);
    let lane = express.map(|express| {
        Arc::new(Lane {
            express,
            service,
            slots,
            spans,
            max_body_bytes: http.max_body_bytes,
            latency_gauge: latency_gauge.clone(),
        })
    });

    let addr = listener.local_addr()?;
    let socket = match activation::take_unix() {
        Some(passed) => Some(passed_unix(passed, http.unix_socket.as_deref())?),
        None => http.unix_socket.as_deref().map(bind_unix).transpose()?,
    };
    let limits = fit_to_descriptors(service, Limits::from(http));

    // Requests publish the gauge as they end; the timer lets it decay to 0.
    let gauge_timer = latency_gauge.map(|g| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                g.publish();
            }
        })
    });

    let serving = match &socket {
        Some(unix) => format!("serving on {addr} and {}", unix.path.display()),
        None => format!("serving on {addr}"),
    };
    tracing::info!(service, "{serving}");
    // By now the socket is bound and the caller has connected to the
    // database and applied the migrations: ready in systemd's sense.
    systemd::ready(&serving);
    let watchdog = systemd::spawn_watchdog(liveness, serving.clone());
    let shutdown = async move {
        shutdown.await;
        systemd::stopping();
    };
    let drain = Duration::from_secs(http.drain_secs);
    let listeners = Listeners {
        tcp: listener,
        unix: socket,
    };
    let served = listen::serve(listeners, app, lane, limits, shutdown, drain).await;
    for task in [gauge_timer, watchdog].into_iter().flatten() {
        task.abort();
    }
    served
}

/// Raises the soft limit on open files to the hard one (as servers commonly
/// do: systemd's default soft limit is 1024) and keeps the connection cap
/// within it, with room for the database pool, sockets and logs; logs both.
fn fit_to_descriptors(service: &'static str, mut limits: Limits) -> Limits {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return limits;
    };
    let raised = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    // Room for the database pool, listeners, logs and outgoing calls.
    let reserved = (raised / 2).min(128);
    let fits = usize::try_from(raised - reserved).unwrap_or(usize::MAX);
    if limits.max_connections > fits {
        tracing::warn!(
            service,
            wanted = limits.max_connections,
            fits,
            "--max-connections lowered to fit the file-descriptor limit"
        );
        limits.max_connections = fits.max(1);
    }
    tracing::info!(
        service,
        nofile = raised,
        was = soft,
        max_connections = limits.max_connections,
        "file descriptors"
    );
    limits
}

/// The Unix socket passed in, served instead of binding `--unix-socket`.
fn passed_unix(
    listener: std::os::unix::net::UnixListener,
    flag: Option<&Path>,
) -> std::io::Result<UnixSocket> {
    let path = listener
        .local_addr()?
        .as_pathname()
        .map_or_else(|| PathBuf::from("(unnamed Unix socket)"), Path::to_owned);
    if let Some(flag) = flag.filter(|flag| *flag != path) {
        tracing::warn!(
            passed = %path.display(),
            flag = %flag.display(),
            "serving on the Unix socket passed in, not on --unix-socket"
        );
    }
    Ok(UnixSocket {
        listener: tokio::net::UnixListener::from_std(listener)?,
        path,
        bound_here: false,
    })
}

/// Binds the Unix domain socket at `path`. A socket file left behind by a
/// process that was killed is replaced; one that still answers is in use.
fn bind_unix(path: &Path) -> std::io::Result<UnixSocket> {
    use std::os::unix::{
        fs::FileTypeExt,
        net::{UnixListener, UnixStream},
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
    })?;
    listener.set_nonblocking(true)?;
    Ok(UnixSocket {
        listener: tokio::net::UnixListener::from_std(listener)?,
        path: path.to_owned(),
        bound_here: true,
    })
}

#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error(transparent)]
    Passed(#[from] activation::ActivationError),
    #[error("cannot bind {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("the TCP socket passed in: {0}")]
    Register(std::io::Error),
}

/// The TCP socket passed in (socket activation), else `listen` bound here.
/// A Unix socket passed in is kept for [`serve_app`].
async fn listener(listen: std::net::SocketAddr) -> Result<TcpListener, ListenError> {
    let passed = activation::inherited()?;
    if let Some(unix) = passed.unix {
        activation::keep_unix(unix);
    }
    match passed.tcp {
        Some(tcp) => TcpListener::from_std(tcp).map_err(ListenError::Register),
        None => TcpListener::bind(listen)
            .await
            .map_err(|e| ListenError::Bind(listen, e)),
    }
}

/// What a service binary's `main` does: logs, take its sockets (passed in,
/// or bound here), run until SIGTERM. This happens before `run`, so tests
/// can hand `run` a port-0 socket.
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
    let code = match listener(listen).await {
        Ok(listener) => match run(listener).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(%err, "{service} failed");
                std::process::ExitCode::FAILURE
            }
        },
        Err(err) => {
            tracing::error!(%err, "no socket to serve on");
            std::process::ExitCode::FAILURE
        }
    };
    // Flushing spans waits on an export that runs on this runtime: block a
    // thread of the blocking pool, not a worker.
    let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
    code
}
