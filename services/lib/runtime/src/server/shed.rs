//! Load shedding: a bound on the requests a service works on at once.
//!
//! Past the bound a request waits a short while for a slot and is then
//! answered `503` with `Retry-After` at once. Without it an overloaded
//! service keeps accepting: every request queues for a database connection,
//! all of them get slower, and past the pool's acquire timeout they fail
//! anyway, after seconds instead of microseconds. A quick 503 costs almost
//! nothing, keeps the latency of the admitted requests bounded, and tells
//! the client to back off (the order service's client already treats 503
//! as transient and retries).

use std::{sync::Arc, time::Duration};

use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response};
use tokio::sync::Semaphore;

use crate::contract::problem::ProblemResponse;

/// Probes, metrics, the fault controls and the gateway's overview and
/// activity (the dashboard's health view and chart) must answer under
/// overload: that is when they are needed.
fn exempt(path: &str) -> bool {
    [
        "/health",
        "/metrics",
        "/gremlin",
        "/docs",
        "/openapi",
        "/api/overview",
        "/api/activity",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

fn overloaded(limit: usize) -> Response {
    ProblemResponse::unavailable(
        "overloaded",
        format!("the service is at its limit of {limit} requests in flight; retry later"),
    )
    .into_response()
}

/// The slots of [`limit_in_flight`]: at most `limit` requests in the
/// handler at once; one more waits up to `queue` for a slot, then is shed.
/// `limit == 0` turns shedding off. Clones share the slots (poem's
/// endpoint and the express lane, [`super::express`], count together).
#[derive(Clone)]
pub struct Slots {
    slots: Option<Arc<Semaphore>>,
    limit: usize,
    queue: Duration,
}

impl Slots {
    pub fn new(limit: usize, queue: Duration) -> Self {
        Self {
            slots: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            limit,
            queue,
        }
    }

    /// A slot for a request to `path`, or the `503` that sheds it.
    pub async fn admit(&self, path: &str) -> Result<OwnedSlot, Response> {
        let Some(slots) = self.slots.as_ref().filter(|_| !exempt(path)) else {
            return Ok(OwnedSlot { _permit: None });
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(OwnedSlot {
                _permit: Some(slot),
            }),
            Err(_) => match tokio::time::timeout(self.queue, slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => Ok(OwnedSlot {
                    _permit: Some(slot),
                }),
                _ => Err(overloaded(self.limit)),
            },
        }
    }
}

/// A request's slot, given back when dropped (none when not limited).
pub struct OwnedSlot {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// At most `limit` requests in the handler at once; one more waits up to
/// `queue` for a slot, then is shed. `limit == 0` turns shedding off.
pub fn limit_in_flight<E>(ep: E, limit: usize, queue: Duration) -> impl Endpoint<Output = Response>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    shed(ep, Slots::new(limit, queue))
}

/// [`limit_in_flight`] over `slots` that others may share.
pub fn shed<E>(ep: E, slots: Slots) -> impl Endpoint<Output = Response>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    ep.into_endpoint()
        .map_to_response()
        .around(move |ep, req: Request| {
            let slots = slots.clone();
            async move {
                let slot = match slots.admit(req.uri().path()).await {
                    Ok(slot) => slot,
                    Err(shed) => return Ok(shed),
                };
                let resp = ep.call(req).await;
                drop(slot);
                resp
            }
        })
}

#[cfg(test)]
mod tests {
    use poem::{handler, http::StatusCode};

    use super::*;

    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "done"
    }

    /// Sends `n` requests for `path` at once; their statuses and Retry-After headers.
    async fn burst<E: Endpoint<Output = Response> + 'static>(
        app: &Arc<E>,
        path: &'static str,
        n: usize,
    ) -> Vec<(StatusCode, Option<String>)> {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    let req = Request::builder().uri_str(path).finish();
                    let resp = app.call(req).await.expect("an answer");
                    let retry = resp.header("retry-after").map(ToOwned::to_owned);
                    (resp.status(), retry)
                })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.expect("joined"));
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn past_the_limit_requests_are_shed_with_retry_after() {
        let app = Arc::new(limit_in_flight(
            poem::Route::new()
                .at("/orders", slow)
                .at("/health", slow)
                .at("/api/overview", slow),
            2,
            Duration::from_millis(20),
        ));
        let shed = (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned()));
        let ok = (StatusCode::OK, None);
        assert_eq!(
            burst(&app, "/orders", 4).await,
            [ok.clone(), ok.clone(), shed.clone(), shed]
        );
        // Probes and the dashboard's health view are never shed.
        assert!(burst(&app, "/health", 4).await.iter().all(|r| r == &ok));
        assert!(
            burst(&app, "/api/overview", 4)
                .await
                .iter()
                .all(|r| r == &ok)
        );
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_within_the_queue_time() {
        let app = Arc::new(limit_in_flight(
            poem::Route::new().at("/orders", slow),
            1,
            Duration::from_secs(5),
        ));
        let statuses = burst(&app, "/orders", 2).await;
        assert!(
            statuses.iter().all(|(s, _)| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }

    #[tokio::test]
    async fn a_zero_limit_sheds_nothing() {
        let app = Arc::new(limit_in_flight(
            poem::Route::new().at("/orders", slow),
            0,
            Duration::ZERO,
        ));
        let statuses = burst(&app, "/orders", 4).await;
        assert!(
            statuses.iter().all(|(s, _)| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
}
