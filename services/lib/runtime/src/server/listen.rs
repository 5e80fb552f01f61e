//! The accept loop every service serves through, with the limits a server
//! on an open network needs (poem's own server sets none of them):
//!
//! - a cap on open connections: past it, new connections wait in the
//!   kernel's backlog (they are not accepted and then starved), so a flood
//!   of idle sockets cannot use up the process's file descriptors;
//! - a header read timeout: a request whose headers do not arrive in full
//!   within it is closed (slowloris), and the same deadline bounds how long
//!   an idle keep-alive connection waits for its next request;
//! - limits on the size and number of request headers (hyper answers 431);
//! - a deadline for the whole request once its headers are in
//!   (`deadline`): a body that trickles in, a handler that hangs, or an
//!   answer the client will not read cannot hold a connection (and its
//!   descriptor) for longer;
//! - on shutdown, no new connections and a graceful drain of the open ones:
//!   each keep-alive connection is closed after its next answer (sent with
//!   `Connection: close`), not while a client may be sending on it.

mod deadline;

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hyper::body::Body as HttpBody;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use poem::{
    Endpoint, EndpointExt, IntoEndpoint,
    endpoint::{BoxEndpoint, ToDynEndpoint},
    http::{HeaderValue, header},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    sync::{Semaphore, watch},
    task::JoinSet,
    time::Instant,
};

use super::express::Lane;
use crate::config::HttpArgs;
use deadline::{InFlight, Ticketed, Tracked, overran};

/// Where a service listens: its TCP socket, and optionally a Unix socket.
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<UnixSocket>,
}

pub struct UnixSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Bound by this process, so its file is removed when serving ends; a
    /// socket passed in belongs to whoever passed it, and stays.
    pub bound_here: bool,
}

/// The limits of [`serve`], from the service's flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl From<&HttpArgs> for Limits {
    fn from(a: &HttpArgs) -> Self {
        Self {
            max_connections: a.max_connections.max(1),
            header_timeout: Duration::from_millis(a.header_timeout_ms),
            request_timeout: Duration::from_millis(a.request_timeout_ms),
            max_header_bytes: a.max_header_bytes,
            max_headers: a.max_headers,
        }
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(listeners: &Listeners) -> std::io::Result<Accepted> {
    match &listeners.unix {
        Some(unix) => tokio::select! {
            tcp = listeners.tcp.accept() => tcp.map(|(s, a)| Accepted::Tcp(s, a)),
            unix = unix.listener.accept() => unix.map(|(s, _)| Accepted::Unix(s)),
        },
        None => listeners
            .tcp
            .accept()
            .await
            .map(|(s, a)| Accepted::Tcp(s, a)),
    }
}

/// On shutdown, how long a kept-alive HTTP/1 connection is left open for
/// one more request (answered with `Connection: close`) before it is closed
/// while idle. Closing it at once races with a client that is sending its
/// next request on it at that moment: the request meets a closed socket and
/// the client sees a reset, although the socket it connected to lives on
/// (socket activation). A client in a loop sends within milliseconds; a
/// client idle for longer has little chance to send in the instant the
/// connection closes. The drain, and so a restart, waits at most this long
/// for an idle connection.
pub const LAST_REQUEST_WITHIN: Duration = Duration::from_millis(500);

/// Serves `app` (and the requests `lane` takes before it) until `shutdown`
/// resolves, then lets the open connections finish for at most `drain`.
pub(crate) async fn serve(
    listeners: Listeners,
    app: impl IntoEndpoint<Endpoint: 'static>,
    lane: Option<Arc<Lane>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let app: Arc<BoxEndpoint<'static>> = Arc::new(Box::new(ToDynEndpoint(
        app.into_endpoint().map_to_response(),
    )));
    let local = LocalAddr(listeners.tcp.local_addr()?.into());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit before accept: past the cap the kernel keeps the queue.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listeners) => accepted,
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let accepted = match accepted {
            Ok(a) => a,
            Err(err) => {
                // Out of descriptors or a connection reset before accept:
                // not a reason to stop serving; back off briefly.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (app, stopping, local) = (app.clone(), stopping.clone(), local.clone());
        let lane = lane.clone();
        connections.spawn(async move {
            match accepted {
                Accepted::Tcp(stream, remote) => {
                    let _ = stream.set_nodelay(true);
                    connection(
                        stream,
                        app,
                        lane,
                        local,
                        RemoteAddr(remote.into()),
                        limits,
                        stopping,
                    )
                    .await;
                }
                Accepted::Unix(stream) => {
                    let remote = match stream.peer_addr() {
                        Ok(addr) => RemoteAddr(addr.into()),
                        Err(_) => RemoteAddr(poem::Addr::Custom("unix", "".into())),
                    };
                    let stream = match crate::quiet_unix::QuietUnix::from_tokio(stream) {
                        Ok(stream) => stream,
                        Err(err) => {
                            tracing::warn!(%err, "a Unix connection could not be registered");
                            return;
                        }
                    };
                    connection(stream, app, lane, local, remote, limits, stopping).await;
                }
            }
            drop(permit);
        });
    }
    // A socket passed in stays open in the process that passed it: new
    // connections wait in its backlog for the next process.
    drop(listeners.tcp);
    if let Some(unix) = listeners.unix {
        drop(unix.listener);
        if unix.bound_here {
            let _ = std::fs::remove_file(unix.path);
        }
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            ?drain,
            "connections still open after the drain; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn connection<Io>(
    io: Io,
    app: Arc<BoxEndpoint<'static>>,
    lane: Option<Arc<Lane>>,
    local: LocalAddr,
    remote: RemoteAddr,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let in_flight = Arc::new(InFlight::new(
        limits.request_timeout + limits.header_timeout,
    ));
    let requests = in_flight.clone();
    // Set once the server stops: the answers from then on close their
    // connection.
    let closing = Arc::new(AtomicBool::new(false));
    let last = closing.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (app, local, remote) = (app.clone(), local.clone(), remote.clone());
        let lane = lane.clone();
        let requests = requests.clone();
        let last = last.clone();
        async move {
            // Until its answer is handed over in full (or dropped): by
            // the request's deadline and one header timeout more.
            let ticket = requests.begin();
            let deadline = Instant::now() + limits.request_timeout;
            // HTTP/2 forbids connection headers: there the stream just ends.
            let http1 = req.version() < http::Version::HTTP_2;
            let arrived = Arc::new(AtomicBool::new(false));
            let mut req = Some(req);
            let express = lane.as_ref().and_then(|lane| lane.take(&mut req, &arrived));
            let answered = match (express, req) {
                (Some(answer), _) => tokio::time::timeout_at(deadline, answer).await,
                (None, Some(req)) => {
                    let mut req =
                        poem::Request::from((req, local, remote, http::uri::Scheme::HTTP));
                    let body = Tracked {
                        inner: req.take_body().into(),
                        arrived: arrived.clone(),
                    };
                    if body.is_end_stream() {
                        arrived.store(true, Ordering::Relaxed);
                    }
                    req.set_body(poem::Body::from(http_body_util::combinators::BoxBody::new(
                        body,
                    )));
                    tokio::time::timeout_at(deadline, app.get_response(req)).await
                }
                (None, None) => unreachable!("the lane takes the request only with its answer"),
            };
            let mut resp = answered.unwrap_or_else(|_| {
                overran(
                    limits.request_timeout,
                    arrived.load(Ordering::Relaxed),
                    http1,
                )
            });
            if http1 && last.load(Ordering::Relaxed) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let resp = hyper::Response::from(resp).map(|body| Ticketed {
                body,
                _ticket: ticket,
            });
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let overdue = || {
        // Dropping the connection closes it.
        tracing::debug!("an answer was not taken in time; connection closed");
    };
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopping.wait_for(|s| *s) => {}
        () = in_flight.overdue() => return overdue(),
    }
    // See LAST_REQUEST_WITHIN. An answer in flight now closes the
    // connection too. HTTP/2 needs no `Connection: close`: its shutdown is
    // a GOAWAY that names the last stream served.
    closing.store(true, Ordering::Relaxed);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = tokio::time::sleep(LAST_REQUEST_WITHIN) => {}
        () = in_flight.overdue() => return overdue(),
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
