//! The express lane: the few requests a process serves most, answered
//! straight from hyper's request, past poem's conversions, route tree and
//! middleware. What poem's edge gives every request is given here too: the
//! RED metrics and the in-flight gauge ([`requests::record`]), load shedding
//! on the same slots ([`Slots`]), the body limit (only a request whose
//! `Content-Length` is within `--max-body-bytes`, or that has no body, is
//! taken), and the deadline, the ticket and the drain of [`super::listen`],
//! which wrap both lanes alike. Everything else takes poem's lane: a body
//! without a length, an oversized one, `HEAD`, and every request while
//! spans are exported (a request's server span is made by poem's
//! middleware).
//!
//! Only the API gateway has one: forwarding is all it does for the shop's
//! requests, and poem's layers were about a fifth of its CPU per forwarded
//! order (bench/README.md).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Incoming};
use poem::{
    IntoResponse, Response,
    http::{Method, StatusCode, header, request::Parts},
};

use super::shed::Slots;
use crate::{
    contract::problem::Problem,
    telemetry::requests::{self, InFlight, LatencyGauge, Spans},
};

/// An answer on its way.
pub type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What a process answers in its express lane.
pub trait Express: Send + Sync + 'static {
    /// The route label (as `/metrics` shows it) of a request this answers
    /// itself; None leaves it to poem.
    fn route(&self, method: &Method, path: &str) -> Option<&'static str>;

    /// The answer to a request [`Express::route`] took as `route`, with its
    /// body whole.
    fn answer(&self, route: &'static str, parts: Parts, body: Bytes) -> Answer;
}

/// An express lane with the edge it shares with poem's.
pub(crate) struct Lane {
    pub(crate) express: Arc<dyn Express>,
    pub(crate) service: &'static str,
    pub(crate) slots: Slots,
    /// While a request wants a span, it takes poem's lane, where the
    /// middleware makes it.
    pub(crate) spans: Spans,
    pub(crate) max_body_bytes: usize,
    pub(crate) latency_gauge: Option<LatencyGauge>,
}

impl Lane {
    /// Whether the body is one the lane may read whole: declared within the
    /// limit, or none at all.
    fn fits(&self, req: &hyper::Request<Incoming>) -> bool {
        if req.headers().contains_key(header::TRANSFER_ENCODING) {
            return false;
        }
        match req.headers().get(header::CONTENT_LENGTH) {
            Some(len) => len
                .to_str()
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .is_some_and(|l| l <= self.max_body_bytes as u64),
            None => req.body().is_end_stream(),
        }
    }

    /// Takes the request out of `req` and answers it, if it is one for
    /// the lane; `arrived` is set once its body is in.
    pub(crate) fn take(
        self: &Arc<Self>,
        req: &mut Option<hyper::Request<Incoming>>,
        arrived: &Arc<AtomicBool>,
    ) -> Option<impl Future<Output = Response> + Send + 'static> {
        let candidate = req.as_ref()?;
        if self.spans.wanted() || candidate.method() == Method::HEAD || !self.fits(candidate) {
            return None;
        }
        let label = self
            .express
            .route(candidate.method(), candidate.uri().path())?;
        let req = req.take()?;
        let (lane, arrived) = (self.clone(), arrived.clone());
        Some(async move {
            let _in_flight = InFlight::enter(lane.service);
            let start = Instant::now();
            let method = req.method().clone();
            let resp = lane.serve(label, req, &arrived).await;
            requests::record(
                lane.service,
                &method,
                label,
                resp.status(),
                start.elapsed().as_secs_f64(),
                lane.latency_gauge.as_ref(),
            );
            resp
        })
    }

    async fn serve(
        &self,
        route: &'static str,
        req: hyper::Request<Incoming>,
        arrived: &AtomicBool,
    ) -> Response {
        let slot = match self.slots.admit(req.uri().path()).await {
            Ok(slot) => slot,
            Err(shed) => return shed,
        };
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-request",
                    format_args!("the request body could not be read: {err}"),
                )
                .into_response();
            }
        };
        arrived.store(true, Ordering::Relaxed);
        let resp = self.express.answer(route, parts, body).await;
        drop(slot);
        resp
    }
}
