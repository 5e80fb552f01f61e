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
use tokio::time::Instant;

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
///
/// Every request gets the same allowance from its start, so one that begins
/// later is never due before one already in flight, nor before the watcher
/// ([`InFlight::overdue`]) next looks. The watcher therefore needs no word
/// of requests beginning or ending: a wake-up for each would poll the whole
/// connection twice more per request, for nothing.
pub(super) struct InFlight {
    allowance: Duration,
    deadlines: Mutex<(u64, BTreeMap<u64, Instant>)>,
}

impl InFlight {
    /// Requests that must be handed over within `allowance` of their start.
    pub(super) fn new(allowance: Duration) -> Self {
        Self {
            allowance,
            deadlines: Mutex::default(),
        }
    }

    pub(super) fn begin(self: &Arc<Self>) -> Ticket {
        let by = Instant::now() + self.allowance;
        let mut guard = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        let (next, deadlines) = &mut *guard;
        *next += 1;
        deadlines.insert(*next, by);
        Ticket {
            id: *next,
            in_flight: self.clone(),
        }
    }

    fn earliest(&self) -> Option<Instant> {
        let guard = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.values().min().copied()
    }

    /// Resolves when a request is past its deadline. It looks again at the
    /// earliest deadline in flight, or one allowance from now when there is
    /// none: no request that begins meanwhile can be due sooner.
    pub(super) async fn overdue(&self) {
        loop {
            let now = Instant::now();
            let next = match self.earliest() {
                Some(by) if by <= now => return,
                Some(by) => by,
                None => now + self.allowance,
            };
            tokio::time::sleep_until(next).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWANCE: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn an_answer_not_handed_over_is_overdue_at_its_deadline() {
        let in_flight = Arc::new(InFlight::new(ALLOWANCE));
        let start = Instant::now();
        let _ticket = in_flight.begin();
        in_flight.overdue().await;
        assert_eq!(start.elapsed(), ALLOWANCE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_begins_while_the_watcher_waits_is_caught_at_its_own_deadline() {
        let in_flight = Arc::new(InFlight::new(ALLOWANCE));
        let start = Instant::now();
        let watcher = tokio::spawn({
            let in_flight = in_flight.clone();
            async move {
                in_flight.overdue().await;
                start.elapsed()
            }
        });
        // The watcher is asleep, nothing in flight; then a request begins.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ticket = in_flight.begin();
        let overdue_after = watcher.await.expect("the watcher");
        assert_eq!(overdue_after, Duration::from_secs(3) + ALLOWANCE);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_handed_over_in_time_are_never_overdue() {
        let in_flight = Arc::new(InFlight::new(ALLOWANCE));
        let requests = {
            let in_flight = in_flight.clone();
            async move {
                for _ in 0..20 {
                    let ticket = in_flight.begin();
                    tokio::time::sleep(ALLOWANCE - Duration::from_secs(1)).await;
                    drop(ticket);
                }
            }
        };
        tokio::select! {
            () = in_flight.overdue() => panic!("overdue although every answer was in time"),
            () = requests => {}
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_of_several_in_flight_decides() {
        let in_flight = Arc::new(InFlight::new(ALLOWANCE));
        let start = Instant::now();
        let first = in_flight.begin();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let _second = in_flight.begin();
        drop(first);
        in_flight.overdue().await;
        assert_eq!(start.elapsed(), Duration::from_secs(4) + ALLOWANCE);
    }
}
