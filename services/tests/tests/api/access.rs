//! Who may do what at the public edge: a stranger at the gateway gets the
//! shop, the operator with the token gets the operator's actions, nobody
//! gets the saga's steps; with a service token the services refuse their
//! internal calls to anyone without it, and the saga still confirms.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use valerix_testkit::{Stack, StackOptions, TokenFile, metrics};

use crate::support::{assert_audit_clean, get};

/// A request to the gateway, with `authorization` when given; its status,
/// `WWW-Authenticate`, content type and body.
async fn call(
    stack: &Stack,
    gateway: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    authorization: Option<&str>,
) -> (StatusCode, Option<String>, String, Value) {
    let mut req = stack.http.request(method, format!("{gateway}{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let resp = req.send().await.expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (challenge, content_type) = (header("www-authenticate"), header("content-type"));
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, challenge, content_type.unwrap_or_default(), body)
}

/// The saga's steps, as a stranger would try them at the gateway.
fn internal_steps(order_id: &str) -> Vec<(Method, &'static str, Value)> {
    let reservation = json!({ "order_id": order_id, "product_id": "P1", "quantity": 1 });
    let order = json!({ "order_id": order_id });
    vec![
        (Method::POST, "/api/payments/refund", order.clone()),
        (Method::POST, "/api/payments/void", order.clone()),
        (
            Method::POST,
            "/api/payments",
            json!({ "order_id": order_id, "amount_cents": 100 }),
        ),
        (Method::POST, "/api/inventory/reserve", reservation.clone()),
        (Method::POST, "/api/inventory/commit", order),
        (
            Method::POST,
            "/api/inventory/commits",
            json!({ "order_ids": [order_id] }),
        ),
        (Method::POST, "/api/inventory/release", reservation),
    ]
}

/// The operator's actions (each answers 2xx with the token).
fn operator_actions(order_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::PUT,
            "/api/inventory/P1".to_owned(),
            Some(json!({ "name": "P1", "price_cents": 250, "stock": 50 })),
        ),
        (Method::GET, "/api/orders".to_owned(), None),
        (
            Method::GET,
            format!("/api/payments?order_id={order_id}"),
            None,
        ),
        (Method::GET, "/api/gremlin/inventory".to_owned(), None),
        (
            Method::POST,
            "/api/gremlin/payment/latency".to_owned(),
            Some(json!({ "delay_ms": 0, "enabled": false })),
        ),
        (Method::DELETE, "/api/gremlin/order".to_owned(), None),
    ]
}

fn auth_failures(scrape: &str, service: &str, reason: &str) -> f64 {
    let samples = metrics::parse(scrape);
    metrics::value(
        &samples,
        "valerix_auth_failures_total",
        &[("service", service), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

async fn scrape(stack: &Stack, url: &str) -> String {
    let resp = stack
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics");
    resp.text().await.expect("text")
}

#[tokio::test]
async fn a_stranger_gets_the_shop_and_the_operator_the_rest() {
    let stack = Stack::start_with(StackOptions {
        gremlins: true,
        ..StackOptions::default()
    })
    .await;
    stack.product("P1", 250, 10).await;
    let gw = stack.gateway().await;
    let gw = gw.url.as_str();

    // The shop: place an order and read it back, read the catalog.
    let (status, _, _, order) = call(
        &stack,
        gw,
        Method::POST,
        "/api/orders",
        Some(json!({ "product_id": "P1", "quantity": 1 })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let id = order["id"].as_str().expect("id").to_owned();
    let path = format!("/api/orders/{id}");
    let (status, _, _, read) = call(&stack, gw, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["status"], "CONFIRMED");
    for path in ["/api/inventory", "/api/inventory/P1"] {
        let (status, _, _, body) = call(&stack, gw, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }

    // The saga's steps are not there at all, token or not.
    let bearer = stack.operator.bearer();
    for (method, path, body) in internal_steps(&id) {
        for auth in [None, Some(bearer.as_str())] {
            let (status, _, content_type, problem) =
                call(&stack, gw, method.clone(), path, Some(body.clone()), auth).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
            assert_eq!(content_type, "application/problem+json", "{method} {path}");
            assert_eq!(problem["type"], "not-found", "{problem}");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(detail.ends_with(&format!("{method} {path}")), "{problem}");
        }
    }

    // The operator's actions: 401 without the token or with a wrong one.
    let payment_list = (Method::GET, "/api/payments".to_owned(), None);
    for (method, path, body) in operator_actions(&id).into_iter().chain([payment_list]) {
        for auth in [None, Some("Bearer wrong"), Some("Basic b3A6cGFzcw==")] {
            let (status, challenge, content_type, problem) =
                call(&stack, gw, method.clone(), &path, body.clone(), auth).await;
            let at = format!("{method} {path} with {auth:?}");
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{at}: {problem}");
            assert!(
                challenge
                    .as_deref()
                    .is_some_and(|c| c.starts_with(r#"Bearer realm="valerix""#)),
                "{at}: {challenge:?}"
            );
            assert_eq!(content_type, "application/problem+json", "{at}");
            assert_eq!(problem["type"], "unauthorized", "{at}: {problem}");
            assert_eq!(problem["status"], 401, "{at}");
        }
    }
    // Nothing of that reached the services: the stock is as the order left it.
    crate::support::stock_committed(&stack).await;
    let (_, _, _, p1) = call(&stack, gw, Method::GET, "/api/inventory/P1", None, None).await;
    assert_eq!(p1["stock"], 9, "{p1}");

    // With the token, each of them works.
    for (method, path, body) in operator_actions(&id) {
        let (status, _, _, answer) =
            call(&stack, gw, method.clone(), &path, body, Some(&bearer)).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
    }
    let (_, _, _, payments) = call(
        &stack,
        gw,
        Method::GET,
        &format!("/api/payments?order_id={id}"),
        None,
        Some(&bearer),
    )
    .await;
    let payment = payments["payments"][0]["id"].as_str().expect("payment id");
    let (status, _, _, one) = call(
        &stack,
        gw,
        Method::GET,
        &format!("/api/payments/{payment}"),
        None,
        Some(&bearer),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["status"], "COMPLETED", "{one}");

    // The order is still CONFIRMED and paid: nobody could undo it.
    let (_, _, _, read) = call(&stack, gw, Method::GET, &path, None, None).await;
    assert_eq!(read["status"], "CONFIRMED");
    assert_audit_clean(&stack).await;
}

#[tokio::test]
async fn the_overview_keeps_the_operators_part_and_a_wrong_token_is_counted() {
    let stack = Stack::start().await;
    let gw = stack.gateway().await;
    let before = scrape(&stack, &gw.url).await;
    let (status, challenge, _, problem) = call(
        &stack,
        &gw.url,
        Method::GET,
        "/api/orders",
        None,
        Some("Bearer not-the-token"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="valerix", error="invalid_token""#)
    );
    let (status, _, _, _) = call(
        &stack,
        &gw.url,
        Method::GET,
        "/api/overview",
        None,
        Some("Bearer nope"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let after = scrape(&stack, &gw.url).await;
    // Other tests in this process count too: at least these two.
    let wrong = |scrape: &str| auth_failures(scrape, "api-gateway", "wrong");
    assert!(
        wrong(&after) >= wrong(&before) + 2.0,
        "before {} after {}",
        wrong(&before),
        wrong(&after)
    );

    // Anyone sees health and the SLA; the operator also the breakers.
    let (status, _, _, public) =
        call(&stack, &gw.url, Method::GET, "/api/overview", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(public.get("breakers").is_none(), "{public}");
    let bearer = stack.operator.bearer();
    let (_, _, _, operator) = call(
        &stack,
        &gw.url,
        Method::GET,
        "/api/overview",
        None,
        Some(&bearer),
    )
    .await;
    assert_eq!(
        operator["breakers"],
        json!({ "inventory-service": "closed", "payment-service": "closed" })
    );
}

#[tokio::test]
async fn without_an_operator_token_file_the_operators_routes_stay_closed() {
    let stack = Stack::start().await;
    let mut config = stack.gateway_config();
    config.operator_token_file = None;
    let gw = stack.gateway_with(config).await;
    let bearer = stack.operator.bearer();
    for auth in [None, Some(bearer.as_str())] {
        let (status, _, _, problem) =
            call(&stack, &gw.url, Method::GET, "/api/orders", None, auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    }
    let (status, _, _, _) = call(&stack, &gw.url, Method::GET, "/api/inventory", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_empty_operator_token_file_stops_the_gateway_at_start() {
    let stack = Stack::start().await;
    let empty = TokenFile::new("empty-token");
    std::fs::write(&empty.path, "\n").expect("empty it");
    let mut config = stack.gateway_config();
    config.operator_token_file = Some(empty.path.clone());
    let (listener, _) = valerix_testkit::listener().await;
    let err = api_gateway::run(config, listener, std::future::pending())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[tokio::test]
async fn with_a_service_token_the_services_refuse_internal_calls_and_the_saga_still_confirms() {
    let stack = Stack::start_with(StackOptions {
        service_token: true,
        ..StackOptions::default()
    })
    .await;
    stack.product("P1", 250, 10).await;
    let service = stack.service.as_ref().expect("service token");
    let order_id = uuid::Uuid::new_v4().to_string();
    let inventory = stack.inventory.url.as_str();
    let payment = stack.payment.url.as_str();
    let before = scrape(&stack, inventory).await;

    // The services' own ports: internal steps and operator actions need it.
    let reservation = json!({ "order_id": order_id, "product_id": "P1", "quantity": 1 });
    for (url, method, path, body) in [
        (
            inventory,
            Method::POST,
            "/inventory/reserve",
            Some(reservation.clone()),
        ),
        (
            inventory,
            Method::POST,
            "/inventory/release",
            Some(reservation),
        ),
        (
            inventory,
            Method::POST,
            "/inventory/commit",
            Some(json!({ "order_id": order_id })),
        ),
        (
            inventory,
            Method::POST,
            "/inventory/commits",
            Some(json!({ "order_ids": [order_id] })),
        ),
        (inventory, Method::GET, "/inventory/reservations/held", None),
        (
            inventory,
            Method::PUT,
            "/inventory/P1",
            Some(json!({ "name": "P1", "price_cents": 1, "stock": 1 })),
        ),
        (
            payment,
            Method::POST,
            "/payments/refund",
            Some(json!({ "order_id": order_id })),
        ),
        (
            payment,
            Method::POST,
            "/payments/void",
            Some(json!({ "order_id": order_id })),
        ),
        (
            payment,
            Method::POST,
            "/payments",
            Some(json!({ "order_id": order_id, "amount_cents": 100 })),
        ),
        (payment, Method::GET, "/payments", None),
        (stack.order.url.as_str(), Method::GET, "/orders", None),
        (inventory, Method::GET, "/gremlin", None),
    ] {
        let (status, challenge, _, problem) =
            call(&stack, url, method.clone(), path, body, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {problem}"
        );
        assert!(challenge.is_some(), "{method} {path}");
    }
    let after = scrape(&stack, inventory).await;
    let missing = |scrape: &str| auth_failures(scrape, "inventory-service", "missing");
    assert!(missing(&after) >= missing(&before) + 5.0);

    // Open as before: health, the catalog, placing and reading an order.
    let (status, _, _, _) = call(&stack, inventory, Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _, p1) =
        call(&stack, inventory, Method::GET, "/inventory/P1", None, None).await;
    assert_eq!(status, StatusCode::OK, "{p1}");
    assert_eq!(p1["stock"], 10, "nothing refused changed the stock: {p1}");

    // `valerix seed` restocks only with the token.
    assert!(valerix::seed::seed(inventory).await.is_err());
    let token = valerix_runtime::auth::Token::from_file(&service.path).expect("token");
    let created = valerix::seed::seed_with(inventory, Some(&token))
        .await
        .expect("seed with the token");
    assert!(created.contains(&"PROD-2"), "{created:?}");

    // The saga sends the token: orders confirm.
    let (status, order) = crate::support::order(&stack, "P1", 2).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let (status, read) = get(
        &stack,
        format!(
            "{}/orders/{}",
            stack.order.url,
            order["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["status"], "CONFIRMED");

    // With the token the service answers the internal call.
    let (status, _, _, answer) = call(
        &stack,
        payment,
        Method::GET,
        &format!("/payments?order_id={}", order["id"].as_str().expect("id")),
        None,
        Some(&service.bearer()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["payments"][0]["status"], "COMPLETED");

    // The gateway sends it on the operator's calls, not the operator's own.
    let gw = stack.gateway().await;
    let bearer = stack.operator.bearer();
    let (status, _, _, restocked) = call(
        &stack,
        &gw.url,
        Method::PUT,
        "/api/inventory/P1",
        Some(json!({ "name": "P1", "price_cents": 250, "stock": 20 })),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{restocked}");
    assert_eq!(restocked["stock"], 20);
    let (status, _, _, orders) = call(
        &stack,
        &gw.url,
        Method::GET,
        "/api/orders",
        None,
        Some(&bearer),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{orders}");
    let (status, _, _, overview) = call(
        &stack,
        &gw.url,
        Method::GET,
        "/api/overview",
        None,
        Some(&bearer),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    assert!(overview["gremlins"].is_object(), "{overview}");
    assert_audit_clean(&stack).await;
}
