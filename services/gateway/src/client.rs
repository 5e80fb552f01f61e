//! The HTTP client that forwards to one service: hyper's pooled client
//! over TCP or the service's Unix socket.
//!
//! Not reqwest, which the services' own calls use: per forwarded request
//! it parsed a URL, copied the headers into a map of its own, and went
//! through its redirect, retry and timeout layers, none of which the
//! gateway uses (it follows no redirects, resends on its own terms and
//! keeps one deadline per request); together with the allocations that
//! came with them, that was the largest share of the gateway's own code
//! in a profile under load.

use std::{future::Future, path::Path, pin::Pin, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Bytes, Incoming},
};
use hyper_util::{
    client::legacy::{Client, ResponseFuture, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use poem::http::Uri;
use valerix_runtime::client::{POOL_IDLE, upstream::MAX_IDLE_CONNECTIONS};

/// A request body, held whole so that it can be sent again.
pub type Body = Full<Bytes>;

/// Connects to a service's Unix socket; the request's host is only its
/// `Host` header.
#[derive(Clone)]
pub struct UnixConnector {
    path: Arc<Path>,
    timeout: Duration,
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send>>;

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (path, timeout) = (self.path.clone(), self.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(&*path)).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {} timed out", path.display()),
                )),
            }
        })
    }
}

/// A pooled client to one service.
#[derive(Clone)]
pub enum Http {
    Tcp(Client<HttpConnector, Body>),
    Unix(Client<UnixConnector, Body>),
}

impl Http {
    /// A client keeping up to `max_idle` idle connections (0: each request
    /// on a new connection), each for at most [`POOL_IDLE`], so that it
    /// never reuses one the service is closing at that moment.
    pub fn new(socket: Option<&Path>, connect_timeout: Duration, max_idle: usize) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(max_idle);
        match socket {
            Some(path) => Self::Unix(builder.build(UnixConnector {
                path: path.into(),
                timeout: connect_timeout,
            })),
            None => {
                let mut tcp = HttpConnector::new();
                tcp.set_connect_timeout(Some(connect_timeout));
                tcp.set_nodelay(true);
                Self::Tcp(builder.build(tcp))
            }
        }
    }

    /// Keeps the usual number of idle connections.
    pub fn pooled(socket: Option<&Path>, connect_timeout: Duration) -> Self {
        Self::new(socket, connect_timeout, MAX_IDLE_CONNECTIONS)
    }

    pub fn request(&self, req: Request<Body>) -> ResponseFuture {
        match self {
            Self::Tcp(c) => c.request(req),
            Self::Unix(c) => c.request(req),
        }
    }
}

/// An answer as it comes from the service.
pub type Answer = Response<Incoming>;
