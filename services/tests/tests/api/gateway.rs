//! The API gateway in front of the real services, and in front of an echo
//! server that shows exactly what it forwards.

use std::time::{Duration, Instant};

use poem::{
    Request, Response, Server, endpoint::make, http::StatusCode as PoemStatus,
    listener::TcpAcceptor,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use valerix_testkit::{
    Stack, StackOptions, addr_of, black_hole, dead_address, eventually, listener, upstream,
};

/// Answers 418 `application/x-echo+json` with what it received.
async fn echo_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let (l, url) = listener().await;
    let app = make(|mut req: Request| async move {
        let body = req.take_body().into_bytes().await.unwrap_or_default();
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
            .collect();
        let echo = json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        Response::builder()
            .status(PoemStatus::IM_A_TEAPOT)
            .content_type("application/x-echo+json")
            .header("x-echo", "yes")
            .body(echo.to_string())
    });
    let task = tokio::spawn(async move {
        let acceptor = TcpAcceptor::from_tokio(l).expect("acceptor");
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });
    (url, task)
}

fn problem_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn an_order_goes_through_the_gateway_end_to_end() {
    let stack = Stack::start().await;
    stack.product("P1", 250, 10).await;
    let gw = stack.gateway().await;
    let http = &stack.http;

    let place = || {
        http.post(format!("{}/api/orders", gw.url))
            .header("Idempotency-Key", "gw-order-1")
            .json(&json!({ "product_id": "P1", "quantity": 2 }))
    };
    let resp = place().send().await.expect("order");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        problem_type(&resp).as_deref(),
        Some("application/json; charset=utf-8")
    );
    let order: Value = resp.json().await.expect("json");
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let id = order["id"].as_str().expect("id").to_owned();

    // The Idempotency-Key reached the order service: a retry is the same order.
    let again: Value = place()
        .send()
        .await
        .expect("retry")
        .json()
        .await
        .expect("json");
    assert_eq!(again["id"], order["id"]);

    let read: Value = http
        .get(format!("{}/api/orders/{id}", gw.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(read["status"], "CONFIRMED");
    crate::support::stock_committed(&stack).await;
    let stock: Value = http
        .get(format!("{}/api/inventory/P1", gw.url))
        .send()
        .await
        .expect("stock")
        .json()
        .await
        .expect("json");
    assert_eq!(stock["stock"], 8);
    let payments: Value = http
        .get(format!("{}/api/payments?order_id={id}", gw.url))
        .header("authorization", stack.operator.bearer())
        .send()
        .await
        .expect("payments")
        .json()
        .await
        .expect("json");
    assert_eq!(payments["payments"][0]["amount_cents"], 500);

    // The services' errors come through as they are.
    let resp = http
        .post(format!("{}/api/orders", gw.url))
        .header("content-type", "application/json")
        .body(r#"{"product_id":"P1","quantity":0}"#)
        .send()
        .await
        .expect("bad order");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        problem_type(&resp).as_deref(),
        Some("application/problem+json")
    );
    let resp = http
        .get(format!("{}/api/orders/{}", gw.url, uuid::Uuid::new_v4()))
        .send()
        .await
        .expect("missing order");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_gateway_forwards_paths_headers_bodies_and_answers_unchanged() {
    let stack = Stack::start().await;
    let (echo, _task) = echo_upstream().await;
    let mut config = stack.gateway_config();
    config.order_url = upstream(&echo);
    let gw = stack.gateway_with(config).await;

    let body = "x".repeat(60_000);
    let resp = stack
        .http
        .post(format!("{}/api/gremlin/order/latency?every_nth=3", gw.url))
        .header("content-type", "application/json")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", "valerix=1")
        .header("idempotency-key", "k-1")
        .header("authorization", stack.operator.bearer())
        .header("cookie", "sid=secret")
        .header("x-forwarded-host", "evil.example")
        .body(body.clone())
        .send()
        .await
        .expect("echo");
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(
        problem_type(&resp).as_deref(),
        Some("application/x-echo+json")
    );
    assert_eq!(
        resp.headers().get("x-echo").and_then(|v| v.to_str().ok()),
        Some("yes")
    );
    let echoed: Value = resp.json().await.expect("json");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["uri"], "/gremlin/latency?every_nth=3");
    let headers = &echoed["headers"];
    assert_eq!(
        headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(headers["tracestate"], "valerix=1");
    assert_eq!(headers["idempotency-key"], "k-1");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["host"], addr_of(&echo).expect("addr").to_string());
    assert!(headers.get("cookie").is_none(), "{headers}");
    // The operator's token stays at the gateway (no service token here).
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("x-forwarded-host").is_none(), "{headers}");
    assert_eq!(echoed["body"].as_str().map(str::len), Some(body.len()));

    for (path, upstream) in [
        ("/api/orders", "/orders"),
        ("/api/orders/abc?limit=5", "/orders/abc?limit=5"),
        ("/api/gremlin/order", "/gremlin"),
    ] {
        let echoed: Value = stack
            .http
            .get(format!("{}{path}", gw.url))
            .header("authorization", stack.operator.bearer())
            .send()
            .await
            .expect("echo")
            .json()
            .await
            .expect("json");
        assert_eq!(echoed["uri"], upstream, "{path}");
        assert!(
            echoed["headers"].get("transfer-encoding").is_none(),
            "no body on a GET"
        );
    }
}

/// The shop's operations take the gateway's express lane (past poem's
/// layers) and keep its edge: what is forwarded, the Order-Id for an order
/// without a key, the body limit, load shedding and the metrics.
#[tokio::test]
async fn the_shops_operations_keep_the_gateways_edge_in_the_express_lane() {
    let stack = Stack::start().await;
    let (echo, _task) = echo_upstream().await;
    let mut config = stack.gateway_config();
    config.order_url = upstream(&echo);
    config.http.max_body_bytes = 1_000;
    let gw = stack.gateway_with(config).await;
    let orders = format!("{}/api/orders", gw.url);

    let place = |body: String| {
        stack
            .http
            .post(&orders)
            .header("content-type", "application/json")
            .header("cookie", "sid=secret")
            .body(body)
    };
    let resp = place(r#"{"product_id":"P1","quantity":1}"#.to_owned())
        .send()
        .await
        .expect("echo");
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(
        problem_type(&resp).as_deref(),
        Some("application/x-echo+json")
    );
    let echoed: Value = resp.json().await.expect("json");
    assert_eq!(echoed["uri"], "/orders");
    assert_eq!(echoed["body"], r#"{"product_id":"P1","quantity":1}"#);
    let headers = &echoed["headers"];
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("cookie").is_none(), "{headers}");
    let id = headers["order-id"].as_str().expect("an Order-Id added");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let keyed: Value = place("{}".to_owned())
        .header("idempotency-key", "k-1")
        .send()
        .await
        .expect("echo")
        .json()
        .await
        .expect("json");
    assert_eq!(keyed["headers"]["idempotency-key"], "k-1");
    assert!(keyed["headers"].get("order-id").is_none(), "{keyed}");

    let resp = place("x".repeat(2_000)).send().await.expect("413");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let metrics = stack
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let served = r#"http_requests_total{service="api-gateway",method="POST",path="/api/orders",status_code="418"} 2"#;
    assert!(metrics.contains(served), "{metrics}");
}

/// Past `--max-in-flight` a request in the express lane is shed as in
/// poem's, on the same slots.
#[tokio::test]
async fn the_express_lane_sheds_past_the_limit_of_requests_in_flight() {
    let stack = Stack::start().await;
    let (hole, _task) = black_hole().await;
    let mut config = stack.gateway_config();
    config.order_url = upstream(&hole);
    config.upstream_timeout_ms = 5_000;
    config.http.max_in_flight = 1;
    config.http.shed_after_ms = 10;
    let gw = stack.gateway_with(config).await;
    let url = format!("{}/api/orders/00000000-0000-4000-8000-000000000000", gw.url);
    let held = tokio::spawn({
        let (http, url) = (stack.http.clone(), url.clone());
        async move { http.get(url).send().await.map(|r| r.status()) }
    });
    // The first request holds the one slot, unanswered, until its timeout.
    let metrics = format!("{}/metrics", gw.url);
    eventually(
        "the first request in flight",
        Duration::from_secs(5),
        || async {
            let text = stack
                .http
                .get(&metrics)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(r#"http_requests_in_flight{service="api-gateway"} 1"#)
                .then_some(())
        },
    )
    .await;
    let shed = stack.http.get(&url).send().await.expect("shed");
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = shed.json().await.expect("json");
    assert_eq!(problem["type"], "overloaded", "{problem}");
    assert_eq!(
        held.await.expect("joined").expect("answered"),
        StatusCode::GATEWAY_TIMEOUT
    );
}

/// Sends `path` byte for byte (an HTTP client would normalise the dots away).
async fn raw_get(base: &str, path: &str) -> String {
    let addr = addr_of(base).expect("addr");
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut answer = String::new();
    sock.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test]
async fn paths_that_would_leave_their_prefix_are_refused() {
    let stack = Stack::start().await;
    let (echo, _task) = echo_upstream().await;
    let mut config = stack.gateway_config();
    config.order_url = upstream(&echo);
    let gw = stack.gateway_with(config).await;
    for path in [
        "/api/orders/../health",
        "/api/orders/%2e%2e/health",
        "/api/orders/%2E%2E/%2e%2e/metrics",
        "/api/orders/..\\..\\health",
        "/api/gremlin/order/../../orders",
    ] {
        let answer = raw_get(&gw.url, path).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid-path"), "{path}: {answer}");
        assert!(
            !answer.contains("x-echo"),
            "{path} reached the service: {answer}"
        );
    }
    // An encoded backslash is not a separator to anyone: it stays under /orders.
    let answer = raw_get(&gw.url, "/api/orders/..%5c..%5chealth").await;
    assert!(
        answer.contains(r#""uri":"/orders/..%5c..%5chealth""#),
        "{answer}"
    );
}

#[tokio::test]
async fn a_slow_service_is_a_504_and_a_dead_one_a_502() {
    let stack = Stack::start().await;
    let (hole, _task) = black_hole().await;
    let mut config = stack.gateway_config();
    config.order_url = upstream(&hole);
    config.inventory_url = upstream(&dead_address().await);
    config.upstream_timeout_ms = 300;
    let gw = stack.gateway_with(config).await;

    let start = Instant::now();
    let resp = stack
        .http
        .get(format!("{}/api/orders", gw.url))
        .header("authorization", stack.operator.bearer())
        .send()
        .await
        .expect("slow");
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        problem_type(&resp).as_deref(),
        Some("application/problem+json")
    );
    let problem: Value = resp.json().await.expect("json");
    assert_eq!(problem["type"], "upstream-timeout", "{problem}");

    let resp = stack
        .http
        .get(format!("{}/api/inventory", gw.url))
        .send()
        .await
        .expect("dead");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let problem: Value = resp.json().await.expect("json");
    assert_eq!(problem["type"], "upstream-unreachable", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("inventory-service")),
        "{problem}"
    );
}

#[tokio::test]
async fn health_aggregates_the_services_and_the_database() {
    let stack = Stack::start().await;
    let gw = stack.gateway().await;
    let resp = stack
        .http
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status(), StatusCode::OK);
    let health: Value = resp.json().await.expect("json");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "api-gateway");
    assert_eq!(
        health["dependencies"],
        json!({
            "database": "connected",
            "inventory-service": "reachable",
            "order-service": "reachable",
            "payment-service": "reachable",
        })
    );
    assert!(health["timestamp"].is_string());

    let mut config = stack.gateway_config();
    config.order_url = upstream(&dead_address().await);
    let gw = stack.gateway_with(config).await;
    let resp = stack
        .http
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: Value = resp.json().await.expect("json");
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["dependencies"]["order-service"], "unreachable");
    assert_eq!(health["dependencies"]["database"], "unknown");
    assert_eq!(health["dependencies"]["payment-service"], "reachable");
}

#[tokio::test]
async fn the_dashboard_docs_and_spec_are_served() {
    let stack = Stack::start().await;
    let dir = std::env::temp_dir().join(format!("valerix-ui-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("ui dir");
    std::fs::write(dir.join("index.html"), "<h1>Valerix dashboard</h1>").expect("index");
    std::fs::write(dir.join("app.js"), "console.log(1)").expect("js");
    let mut config = stack.gateway_config();
    config.ui_dir = dir.clone();
    let gw = stack.gateway_with(config).await;
    let get = |path: &str| stack.http.get(format!("{}{path}", gw.url)).send();

    let page = get("/").await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .expect("text")
            .contains("Valerix dashboard")
    );
    let js = get("/app.js").await.expect("js");
    assert_eq!(js.status(), StatusCode::OK);
    let missing = get("/nope.css").await.expect("missing");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        problem_type(&missing).as_deref(),
        Some("application/problem+json")
    );

    let docs = get("/docs").await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.expect("html");
    assert!(html.contains("swagger"));
    // Swagger UI shows the whole spec: the routed operations and the scheme.
    assert!(html.contains("/api/inventory/{product_id}"));
    assert!(html.contains("operatorToken"));
    let spec: Value = get("/openapi.json")
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    assert!(
        spec["paths"]["/api/orders"]["post"].is_object(),
        "{}",
        spec["paths"]
    );
    assert!(spec["paths"].get("/api/payments/refund").is_none());
    let committed = include_str!("../../../../openapi/api-gateway.json");
    let committed: Value = serde_json::from_str(committed).expect("committed spec");
    assert_eq!(spec, committed, "the gateway serves the committed spec");
    let yaml = get("/openapi.yaml").await.expect("yaml");
    assert_eq!(yaml.status(), StatusCode::OK);
    let _ = std::fs::remove_dir_all(&dir);

    // Without a dashboard, `/` still answers: a note, not an error.
    let mut config = stack.gateway_config();
    config.ui_dir = dir.join("absent");
    let gw = stack.gateway_with(config).await;
    let page = stack
        .http
        .get(format!("{}/", gw.url))
        .send()
        .await
        .expect("note");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("text").contains("/docs"));
}

/// The operator's overview.
async fn overview(stack: &Stack, gateway: &str) -> Value {
    let resp = stack
        .http
        .get(format!("{gateway}/api/overview"))
        .header("authorization", stack.operator.bearer())
        .send()
        .await
        .expect("overview");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

#[tokio::test]
async fn the_overview_shows_health_sla_breakers_and_gremlins() {
    let stack = Stack::start_with(StackOptions {
        gremlins: true,
        ..StackOptions::default()
    })
    .await;
    let gw = stack.gateway().await;
    let o = overview(&stack, &gw.url).await;
    assert_eq!(
        o["services"],
        json!({
            "api-gateway": "healthy",
            "database": "connected",
            "inventory-service": "reachable",
            "order-service": "reachable",
            "payment-service": "reachable",
        })
    );
    assert_eq!(
        o["breakers"],
        json!({ "inventory-service": "closed", "payment-service": "closed" })
    );
    assert_eq!(
        o["gremlins"],
        json!({ "inventory-service": true, "order-service": true, "payment-service": true })
    );
    // In-process, every order service of this test binary writes the one
    // gauge, so only its shape is certain here; its value is checked against
    // a process of its own in the dashboard and Prometheus tests.
    assert!(
        o["sla"]["avg_latency_30s"]
            .as_f64()
            .is_some_and(|v| v >= 0.0),
        "{o}"
    );
    assert_eq!(o["sla"]["limit"], 1.0);
    assert!(o["sla"]["breached"].is_boolean());

    // Anyone sees health and the SLA, not the breakers or the gremlins.
    let public: Value = stack
        .http
        .get(format!("{}/api/overview", gw.url))
        .send()
        .await
        .expect("overview")
        .json()
        .await
        .expect("json");
    assert_eq!(public["services"], o["services"]);
    assert!(public["sla"]["limit"].is_number(), "{public}");
    assert!(public.get("breakers").is_none(), "{public}");
    assert!(public.get("gremlins").is_none(), "{public}");

    // The order service gone: it and the database show as down, no SLA
    // figure and no breakers are made up.
    let mut config = stack.gateway_config();
    config.order_url = upstream(&dead_address().await);
    let gw = stack.gateway_with(config).await;
    let o = overview(&stack, &gw.url).await;
    assert_eq!(o["services"]["order-service"], "unreachable");
    assert_eq!(o["services"]["database"], "unknown");
    assert_eq!(o["services"]["inventory-service"], "reachable");
    assert_eq!(o["services"]["api-gateway"], "healthy");
    assert!(o["sla"].get("avg_latency_30s").is_none(), "{o}");
    assert_eq!(o["sla"]["breached"], false);
    assert_eq!(o["breakers"], json!({}));
    assert_eq!(o["gremlins"]["order-service"], false);
    assert_eq!(o["gremlins"]["inventory-service"], true);
}

#[tokio::test]
async fn the_overview_says_since_when_each_service_runs() {
    let stack = Stack::start().await;
    let gw = stack.gateway().await;
    let o = overview(&stack, &gw.url).await;
    for service in ["order-service", "inventory-service", "payment-service"] {
        let p = &o["processes"][service];
        assert_eq!(p["restarts"], 0, "{o}");
        let since: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(p["up_since"].clone()).expect("up_since is a time");
        assert!(since <= chrono::Utc::now(), "{o}");
        assert!(p.get("last_restart").is_none(), "{o}");
    }
    // From each service's own health, where anyone can read it.
    let health: Value = stack
        .http
        .get(format!("{}/health", stack.inventory.url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health["started_at"], o["processes"]["inventory-service"]["up_since"],
        "{health}"
    );
}

/// The chart's points: every one from the order service's metrics.
async fn activity(stack: &Stack, gateway: &str, after: Option<i64>) -> Value {
    let mut url = format!("{gateway}/api/activity");
    if let Some(after) = after {
        url = format!("{url}?after={after}");
    }
    let resp = stack.http.get(url).send().await.expect("activity");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

#[tokio::test]
async fn the_chart_shows_orders_per_second_and_their_latency() {
    let stack = Stack::start().await;
    stack.product("CHART-1", 100, 1000).await;
    let gw = stack.gateway().await;
    let a = activity(&stack, &gw.url, None).await;
    assert_eq!(a["interval_seconds"], 1);
    assert_eq!(a["window_seconds"], 300);

    for _ in 0..10 {
        let resp = stack
            .http
            .post(format!("{}/api/orders", gw.url))
            .json(&json!({ "product_id": "CHART-1", "quantity": 1 }))
            .send()
            .await
            .expect("order");
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    // A point a second; the orders show within the next few.
    let point = eventually(
        "a point with confirmed orders",
        Duration::from_secs(10),
        || async {
            let a = activity(&stack, &gw.url, None).await;
            a["points"]
                .as_array()?
                .iter()
                .find(|p| p["confirmed"].as_f64().is_some_and(|c| c > 0.0))
                .cloned()
        },
    )
    .await;
    let (p50, p99) = (
        point["p50"].as_f64().expect("a median"),
        point["p99"].as_f64().expect("a 99th percentile"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= 10.0, "{point}");
    // In-process every order service writes the one SLA gauge (see the
    // overview test): only its presence is certain here.
    assert!(
        point["avg_30s"].as_f64().is_some_and(|v| v >= 0.0),
        "{point}"
    );

    // `after` gives only the newer points; the dashboard polls with it.
    let t = point["t"].as_i64().expect("t");
    let newer = activity(&stack, &gw.url, Some(t)).await;
    let points = newer["points"].as_array().expect("points");
    assert!(points.iter().all(|p| p["t"].as_i64() > Some(t)), "{newer}");
    let resp = stack
        .http
        .get(format!("{}/api/activity?after=soon", gw.url))
        .send()
        .await
        .expect("activity");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // The order service gone: the newest points are gaps, not zeros.
    let mut config = stack.gateway_config();
    config.order_url = upstream(&dead_address().await);
    let gw = stack.gateway_with(config).await;
    let gap = eventually(
        "a point from the dead order service",
        Duration::from_secs(10),
        || async {
            activity(&stack, &gw.url, None).await["points"]
                .as_array()?
                .last()
                .cloned()
        },
    )
    .await;
    assert!(gap["t"].is_i64(), "{gap}");
    for figure in ["confirmed", "failed", "pending", "p50", "p99", "avg_30s"] {
        assert!(gap.get(figure).is_none(), "{figure} in {gap}");
    }
}

#[tokio::test]
async fn the_overview_says_when_gremlins_are_off() {
    let stack = Stack::start().await;
    let gw = stack.gateway().await;
    let o = overview(&stack, &gw.url).await;
    assert_eq!(
        o["gremlins"],
        json!({ "inventory-service": false, "order-service": false, "payment-service": false })
    );
}
