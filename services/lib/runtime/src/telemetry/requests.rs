//! What Valerix records about the requests a service serves: every request
//! but `GET /metrics` (a scraper's own requests must not move the numbers it
//! scrapes) gets a server span continuing the caller's W3C trace and the RED
//! metrics, labelled with the *route template* (`/orders/:id`) so no input
//! can mint new label values. The calls a service makes are recorded by
//! [`crate::client`].

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, LazyLock, PoisonError, RwLock},
    time::{Duration, Instant},
};

use metrics::{Counter, Gauge, Histogram};

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, PathPattern, Request, Response,
    http::{Method, StatusCode},
};
use tracing::{Instrument, field::Empty};

use super::{otel, prometheus, window::SlidingMean};

/// The `path` label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `path` label of a matched route, as the API documents it.
///
/// poem-openapi registers `/orders/:id` with poem as `/orders/:param0`, and
/// poem's `PathPattern` reports that form; the spec keeps the names
/// (`/orders/{id}`). This table, built once from the spec, gives the label
/// the documented template (`/orders/:id`, as in docs/CONTRACT.md).
#[derive(Debug, Clone, Default)]
pub struct RouteLabels(Arc<HashMap<String, String>>);

impl RouteLabels {
    /// From the OpenAPI document's `paths` keys, e.g. `/orders/{id}`.
    pub fn from_openapi_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut table = HashMap::new();
        for path in paths {
            let (mut poem, mut label, mut n) = (String::new(), String::new(), 0);
            for seg in path.split('/').filter(|s| !s.is_empty()) {
                match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        poem.push_str(&format!("/:param{n}"));
                        label.push_str(&format!("/:{name}"));
                        n += 1;
                    }
                    None => {
                        poem.push('/');
                        poem.push_str(seg);
                        label.push('/');
                        label.push_str(seg);
                    }
                }
            }
            if n > 0 {
                table.insert(poem, label);
            }
        }
        Self(Arc::new(table))
    }

    /// From an OpenAPI document in JSON.
    pub fn from_openapi_json(spec: &str) -> Self {
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let paths = doc["paths"].as_object();
        Self::from_openapi_paths(paths.into_iter().flat_map(|p| p.keys().map(String::as_str)))
    }

    /// The label of a request whose innermost matched pattern is `pattern`.
    pub fn label(&self, pattern: Option<&PathPattern>) -> String {
        match pattern.map(|p| &*p.0) {
            // An empty pattern is the catch-all nest at `/` with nothing under it.
            None | Some("") => UNMATCHED.to_owned(),
            Some(p) => self.0.get(p).cloned().unwrap_or_else(|| p.to_owned()),
        }
    }
}

/// An average-latency gauge fed by the middleware, e.g. the order service's
/// `order_service_avg_latency_30s`, over one operation only: an SLA is about
/// one thing users wait for (placing an order), and averaging every request
/// would let fast reads, such as a dashboard polling the order list, hide a
/// breach.
#[derive(Debug, Clone)]
pub struct LatencyGauge {
    name: &'static str,
    method: Method,
    route: &'static str,
    window: Arc<SlidingMean>,
}

impl LatencyGauge {
    /// `route` is the route template as labelled (`/orders`, `/orders/{id}`).
    pub fn new(name: &'static str, window: Duration, method: Method, route: &'static str) -> Self {
        Self {
            name,
            method,
            route,
            window: Arc::new(SlidingMean::new(window)),
        }
    }

    /// The mean over the window now, in seconds (0 when idle).
    pub fn mean(&self) -> f64 {
        self.window.mean()
    }

    fn covers(&self, method: &Method, route: &str) -> bool {
        *method == self.method && route == self.route
    }

    fn record(&self, seconds: f64) {
        self.window.record(seconds);
        self.publish();
    }

    /// Sets the gauge to the current mean; also called on a timer, so it
    /// falls back to 0 when requests stop.
    pub fn publish(&self) {
        metrics::gauge!(self.name).set(self.window.mean());
    }
}

/// Methods outside the standard set share one label value.
pub(crate) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The handles of the per-request series, each looked up in the recorder
/// once and then kept. A `counter!` with labels builds its key (a vector of
/// labels, some of them owned strings) and finds it in the recorder's
/// registry on every call: about 6 000 instructions of each order the
/// gateway forwarded (callgrind), and as much again in every service the
/// order passes. Label values are bounded (route templates, methods,
/// statuses), so the tables are too.
struct Series {
    requests: Table<(&'static str, &'static str, u16), Counter>,
    durations: Table<(&'static str, &'static str), Histogram>,
    in_flight: Table<&'static str, Gauge>,
}

/// By the labels that are `'static` (and a status), then by route label.
type Table<K, V> = RwLock<HashMap<K, HashMap<String, V>>>;

static SERIES: LazyLock<Series> = LazyLock::new(|| Series {
    requests: RwLock::default(),
    durations: RwLock::default(),
    in_flight: RwLock::default(),
});

/// The kept handle, or a new one from `register` (kept only while a
/// recorder is installed: one registered before would be a no-op for good).
fn kept<K: Hash + Eq + Copy, V: Clone>(
    table: &Table<K, V>,
    key: K,
    route: &str,
    register: impl FnOnce() -> V,
) -> V {
    if let Some(v) = table
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .and_then(|by_route| by_route.get(route))
    {
        return v.clone();
    }
    let v = register();
    if prometheus::installed() {
        table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .insert(route.to_owned(), v.clone());
    }
    v
}

fn in_flight(service: &'static str) -> Gauge {
    kept(
        &SERIES.in_flight,
        service,
        "",
        || metrics::gauge!("http_requests_in_flight", "service" => service),
    )
}

/// Decrements the in-flight gauge however the request ends (even when the
/// client goes away and the handler future is dropped).
pub(crate) struct InFlight(Gauge);

impl InFlight {
    pub(crate) fn enter(service: &'static str) -> Self {
        let gauge = in_flight(service);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// When a request gets its server span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spans {
    /// Always: its log lines carry the trace id even when no span is
    /// exported, and the calls it makes carry the trace on.
    Always,
    /// Only while spans are exported ([`otel::exporting`]): for a process
    /// that logs nothing inside a request that goes well and whose span
    /// only a trace would show (the gateway, which otherwise passes the
    /// client's `traceparent` on as it came). The span and its fields cost
    /// the gateway up to a quarter of its CPU per forwarded order
    /// (bench/README.md).
    WhenExported,
}

impl Spans {
    pub(crate) fn wanted(self) -> bool {
        self == Self::Always || otel::exporting()
    }
}

/// The RED metrics of one request served, and its access log line (at
/// debug). `path` is the route's label ([`RouteLabels`]).
pub(crate) fn record(
    service: &'static str,
    method: &Method,
    path: &str,
    status: StatusCode,
    seconds: f64,
    latency_gauge: Option<&LatencyGauge>,
) {
    tracing::debug!(status = status.as_u16(), seconds, "served");
    let label = method_label(method);
    kept(
        &SERIES.requests,
        (service, label, status.as_u16()),
        path,
        || {
            metrics::counter!("http_requests_total",
                "service" => service, "method" => label, "path" => path.to_owned(),
                "status_code" => status.as_str().to_owned())
        },
    )
    .increment(1);
    if let Some(g) = latency_gauge.filter(|g| g.covers(method, path)) {
        g.record(seconds);
    }
    kept(&SERIES.durations, (service, label), path, || {
        metrics::histogram!("http_request_duration_seconds",
            "service" => service, "method" => label, "path" => path.to_owned())
    })
    .record(seconds);
}

/// Wraps a service's whole endpoint (outermost, so time spent in gremlins
/// and body limits counts too).
pub fn requests<E>(
    service: &'static str,
    routes: RouteLabels,
    latency_gauge: Option<LatencyGauge>,
    spans: Spans,
    ep: E,
) -> impl Endpoint<Output = Response>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    ep.into_endpoint()
        .map_to_response()
        .around(move |ep, req: Request| {
            let latency_gauge = latency_gauge.clone();
            let routes = routes.clone();
            async move {
                if req.uri().path() == prometheus::PATH {
                    return ep.call(req).await;
                }
                let http_method = req.method().clone();
                let method = method_label(&http_method);
                let span = if spans.wanted() {
                    let span = tracing::info_span!(
                        "request",
                        otel.name = method,
                        otel.kind = "server",
                        otel.status_code = Empty,
                        http.request.method = method,
                        http.route = Empty,
                        http.response.status_code = Empty,
                        trace_id = Empty,
                    );
                    if let Some(id) = otel::continue_trace(&span, req.headers()) {
                        span.record("trace_id", tracing::field::display(id));
                    }
                    span
                } else {
                    tracing::Span::none()
                };
                let _in_flight = InFlight::enter(service);
                let start = Instant::now();
                let result = ep.call(req).instrument(span.clone()).await;
                let seconds = start.elapsed().as_secs_f64();

                let (status, pattern) = match &result {
                    Ok(r) => (r.status(), r.data::<PathPattern>()),
                    Err(e) => (e.status(), e.data::<PathPattern>()),
                };
                let path = routes.label(pattern);
                if !span.is_none() {
                    otel::rename(&span, format!("{method} {path}"));
                    span.record("http.route", path.as_str());
                    span.record("http.response.status_code", status.as_u16());
                    if status.is_server_error() {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                // An access log at debug: inside the span, so with the trace id.
                span.in_scope(|| {
                    record(
                        service,
                        &http_method,
                        &path,
                        status,
                        seconds,
                        latency_gauge.as_ref(),
                    );
                });
                result
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> PathPattern {
        PathPattern(p.into())
    }

    #[test]
    fn route_labels_use_the_documented_parameter_names() {
        let routes = RouteLabels::from_openapi_paths([
            "/orders",
            "/orders/{id}",
            "/inventory/reservations/{orderId}",
            "/a/{x}/b/{y}",
        ]);
        let label = |p: &str| routes.label(Some(&pattern(p)));
        assert_eq!(label("/orders/:param0"), "/orders/:id");
        assert_eq!(
            label("/inventory/reservations/:param0"),
            "/inventory/reservations/:orderId"
        );
        assert_eq!(label("/a/:param0/b/:param1"), "/a/:x/b/:y");
        assert_eq!(label("/orders"), "/orders");
        assert_eq!(label("/metrics"), "/metrics");
        assert_eq!(routes.label(None), UNMATCHED);
        assert_eq!(label(""), UNMATCHED);
    }

    #[test]
    fn route_labels_from_a_spec_document() {
        let routes = RouteLabels::from_openapi_json(
            r#"{"openapi":"3.0.0","paths":{"/payments/{id}":{},"/payments":{}}}"#,
        );
        assert_eq!(
            routes.label(Some(&pattern("/payments/:param0"))),
            "/payments/:id"
        );
        assert_eq!(
            RouteLabels::from_openapi_json("not json").label(None),
            UNMATCHED
        );
    }
}
