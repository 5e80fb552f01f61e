//! One order is one trace: spans from order, inventory and payment, exported
//! over OTLP/HTTP (protobuf) to a receiver in this test, share the trace id
//! the client started, with every server span the child of the caller's
//! client span. The stock commit that follows the answer (for many orders at
//! once) is a trace of its own, across the order and inventory services.
//! Through the API gateway, the gateway's span starts the trace.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value,
    trace::v1::span::SpanKind,
};
use poem::{EndpointExt, Response, Route, Server, handler, listener::TcpAcceptor, post, web::Data};
use prost::Message;
use valerix_testkit::TestDb;

use crate::support::ProcStack;

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Received = Arc<Mutex<Vec<Span>>>;

/// `POST /v1/traces` as an OTLP/HTTP collector answers it.
#[handler]
fn collect(body: Vec<u8>, Data(received): Data<&Received>) -> Response {
    let Ok(req) = ExportTraceServiceRequest::decode(body.as_slice()) else {
        return Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .finish();
    };
    let mut spans = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Span {
                service: service.clone(),
                name: span.name,
                kind: span.kind,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
            });
        }
    }
    if let Ok(mut all) = received.lock() {
        all.extend(spans);
    }
    Response::builder()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receiver() -> (String, Received) {
    let received = Received::default();
    let (listener, url) = valerix_testkit::listener().await;
    let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
    let app = Route::new()
        .at("/v1/traces", post(collect))
        .data(received.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (url, received)
}

#[tokio::test]
async fn one_order_is_one_trace_across_the_three_services() {
    let (collector, received) = receiver().await;
    let db = TestDb::new().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        // Export every 100 ms instead of every 5 s: the test waits less.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        // The per-request access log (debug) shows the trace id in the logs.
        (
            "RUST_LOG",
            "info,valerix_runtime::telemetry::requests=debug",
        ),
    ];
    let stack = ProcStack::start(&db.url, &env, &[], &[]).await;
    stack.product("P1", 100, 5).await;

    // The client starts the trace: its traceparent must be continued.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let resp = stack
        .http
        .post(format!("{}/orders", stack.order_service().url()))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&serde_json::json!({ "product_id": "P1", "quantity": 1 }))
        .send()
        .await
        .expect("order");
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);

    let find = |spans: &[Span], service: &str, name: &str, kind: SpanKind| {
        spans
            .iter()
            .find(|s| {
                s.trace_id == trace_id
                    && s.service == service
                    && s.name == name
                    && s.kind == kind as i32
            })
            .cloned()
    };
    let expected = [
        ("order-service", "POST /orders", SpanKind::Server),
        ("order-service", "POST /inventory/reserve", SpanKind::Client),
        ("order-service", "POST /payments", SpanKind::Client),
        (
            "inventory-service",
            "POST /inventory/reserve",
            SpanKind::Server,
        ),
        ("payment-service", "POST /payments", SpanKind::Server),
    ];
    // The commit's trace: the batch, its call, inventory's side of it.
    let find_any = |spans: &[Span], service: &str, name: &str, kind: SpanKind| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name && s.kind == kind as i32)
            .cloned()
    };
    let commit_spans = [
        ("order-service", "stock_commits", SpanKind::Internal),
        ("order-service", "POST /inventory/commits", SpanKind::Client),
        (
            "inventory-service",
            "POST /inventory/commits",
            SpanKind::Server,
        ),
    ];
    let start = std::time::Instant::now();
    let spans = loop {
        let received = received.lock().map(|r| r.clone()).unwrap_or_default();
        if expected
            .iter()
            .all(|(svc, name, kind)| find(&received, svc, name, *kind).is_some())
            && commit_spans
                .iter()
                .all(|(svc, name, kind)| find_any(&received, svc, name, *kind).is_some())
        {
            break received;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not every expected span arrived within 20 s; received:\n{received:#?}\norder-service:\n{}",
            stack.order_service().captured()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let get = |svc, name, kind| find(&spans, svc, name, kind).expect("found above");

    let server = get("order-service", "POST /orders", SpanKind::Server);
    assert_eq!(
        server.parent_span_id, client_span,
        "continues the caller's trace"
    );

    // Each downstream server span is the child of the order service's client
    // span for that call, which descends from the order's server span.
    let by_id = |id: &str| spans.iter().find(|s| s.span_id == id);
    for (callee, name) in [
        ("inventory-service", "POST /inventory/reserve"),
        ("payment-service", "POST /payments"),
    ] {
        let callee_span = get(callee, name, SpanKind::Server);
        let caller = by_id(&callee_span.parent_span_id)
            .unwrap_or_else(|| panic!("{callee} {name}: parent span not exported"));
        assert_eq!(
            (caller.service.as_str(), caller.name.as_str(), caller.kind),
            ("order-service", name, SpanKind::Client as i32),
            "{callee} {name}"
        );
        let mut up = caller.clone();
        while up.span_id != server.span_id {
            up = by_id(&up.parent_span_id)
                .unwrap_or_else(|| {
                    panic!("{name}: the chain up to POST /orders is broken at {up:?}")
                })
                .clone();
        }
    }
    assert!(
        spans
            .iter()
            .all(|s| s.trace_id != trace_id || !s.parent_span_id.is_empty()),
        "nothing in the order's trace starts a new root"
    );

    // The commit after the answer: a root span for the batch, its call to
    // inventory, and inventory's server span, one trace.
    let get_any = |svc, name, kind| find_any(&spans, svc, name, kind).expect("found above");
    let batch = get_any("order-service", "stock_commits", SpanKind::Internal);
    let call = get_any("order-service", "POST /inventory/commits", SpanKind::Client);
    let served = get_any(
        "inventory-service",
        "POST /inventory/commits",
        SpanKind::Server,
    );
    assert!(batch.parent_span_id.is_empty(), "a root: {batch:?}");
    assert_eq!(call.parent_span_id, batch.span_id, "{call:?}");
    assert_eq!(served.parent_span_id, call.span_id, "{served:?}");
    assert_eq!(
        (&call.trace_id, &served.trace_id),
        (&batch.trace_id, &batch.trace_id)
    );
    assert_ne!(batch.trace_id, trace_id, "not the order's trace");

    // Log records written inside the request carry its trace id.
    assert!(
        stack
            .order_service()
            .captured()
            .contains(&format!("trace_id={trace_id}")),
        "order-service logs:\n{}",
        stack.order_service().captured()
    );
    assert!(
        stack
            .inventory()
            .captured()
            .contains(&format!("trace_id={trace_id}")),
        "inventory-service logs:\n{}",
        stack.inventory().captured()
    );
}

/// A client that sends no `traceparent` (most do not): the gateway's span
/// is the root of the order's trace, and the order service's span its child.
#[tokio::test]
async fn through_the_gateway_the_gateways_span_is_the_orders_root() {
    let (collector, received) = receiver().await;
    let db = TestDb::new().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let stack = ProcStack::start_with_gateway(&db.url, &env).await;
    stack.product("P1", 100, 5).await;
    let resp = stack
        .http
        .post(format!("{}/api/orders", stack.gateway().url()))
        .json(&serde_json::json!({ "product_id": "P1", "quantity": 1 }))
        .send()
        .await
        .expect("order");
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);

    let find = |spans: &[Span], service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name && s.kind == SpanKind::Server as i32)
            .cloned()
    };
    let start = std::time::Instant::now();
    let (gateway, order) = loop {
        let spans = received.lock().map(|r| r.clone()).unwrap_or_default();
        if let (Some(g), Some(o)) = (
            find(&spans, "api-gateway", "POST /api/orders"),
            find(&spans, "order-service", "POST /orders"),
        ) {
            break (g, o);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway's and the order service's spans did not both arrive within 20 s; received:\n{spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(gateway.parent_span_id.is_empty(), "a root: {gateway:?}");
    assert_eq!(order.trace_id, gateway.trace_id, "one trace");
    assert_eq!(order.parent_span_id, gateway.span_id, "{order:?}");
}
