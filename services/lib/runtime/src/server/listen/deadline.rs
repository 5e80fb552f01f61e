//! A request's deadline (`--request-timeout-ms`) and the bookkeeping that
//! lets a connection close when an answer is not taken in time: each request
//! holds a [`Ticket`] with its deadline until hyper has taken the last of its
//! answer, and [`InFlight::overdue`] resolves once one of them is late.

use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use poem::{
    IntoResponse,
    http::{HeaderValue, StatusCode, header},
};
use tokio::{sync::Notify, time::Instant};

use crate::contract::problem::{Problem, ProblemResponse};

/// The answer when a request overran `--request-timeout-ms`: the client's
/// fault while its body was still arriving, the service's after.
pub(super) fn overran(timeout: Duration, body_arrived: bool, http1: bool) -> poem::Response {
    let mut resp = if body_arrived {
        ProblemResponse::unavailable(
            "request-timeout",
            format_args!("not answered within {timeout:?}; retry later"),
        )
        .into_response()
    } else {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format_args!("the request body did not arrive within {timeout:?}"),
        )
        .into_response()
    };
    // The rest of a body may still be on its way: not another request.
    if http1 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The requests of one connection whose answers are not yet handed over,
/// each with the time by which it must be (several at once over HTTP/2).
#[derive(Default)]
pub(super) struct InFlight {
    deadlines: Mutex<(u64, BTreeMap<u64, Instant>)>,
    changed: Notify,
}

impl InFlight {
    pub(super) fn begin(self: &Arc<Self>, by: Instant) -> Ticket {
        let id = {
            let mut guard = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
            let (next, deadlines) = &mut *guard;
            *next += 1;
            deadlines.insert(*next, by);
            *next
        };
        self.changed.notify_one();
        Ticket {
            id,
            in_flight: self.clone(),
        }
    }

    fn earliest(&self) -> Option<Instant> {
        let guard = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.values().min().copied()
    }

    /// Resolves when a request is past its deadline.
    pub(super) async fn overdue(&self) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match self.earliest() {
                Some(by) if by <= Instant::now() => return,
                Some(by) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(by) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A request in flight; it ends when dropped.
pub(super) struct Ticket {
    id: u64,
    in_flight: Arc<InFlight>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut guard = self
            .in_flight
            .deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        guard.1.remove(&self.id);
        drop(guard);
        self.in_flight.changed.notify_one();
    }
}

/// An answer's body, holding its request's [`Ticket`] until hyper has
/// taken the last of it (or dropped it).
pub(super) struct Ticketed<B> {
    pub(super) body: B,
    pub(super) _ticket: Ticket,
}

impl<B: HttpBody + Unpin> HttpBody for Ticketed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that notes when it has arrived in full.
pub(super) struct Tracked {
    pub(super) inner: http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
    pub(super) arrived: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.arrived.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
