//! Bad input gets a 4xx problem document, never a 5xx and never a hang.

use reqwest::StatusCode;
use serde_json::Value;
use valerix_testkit::Stack;

async fn send(
    stack: &Stack,
    method: reqwest::Method,
    url: String,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = stack
        .http
        .request(method, url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "status {status}"
    );
    let body: Value = resp.json().await.expect("a JSON problem body");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    (status, body)
}

#[tokio::test]
async fn every_bad_order_request_is_a_4xx_problem() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let orders = format!("{}/orders", stack.order.url);
    let cases: Vec<(&str, &[u8], StatusCode)> = vec![
        (
            "malformed JSON",
            b"{\"product_id\": \"P1\",",
            StatusCode::BAD_REQUEST,
        ),
        ("not an object", b"[1, 2, 3]", StatusCode::BAD_REQUEST),
        (
            "quantity as string",
            br#"{"product_id":"P1","quantity":"two"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "product_id as number",
            br#"{"product_id":7,"quantity":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing quantity",
            br#"{"product_id":"P1"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing product",
            br#"{"quantity":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "zero quantity",
            br#"{"product_id":"P1","quantity":0}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative quantity",
            br#"{"product_id":"P1","quantity":-5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "absurd quantity",
            br#"{"product_id":"P1","quantity":1000000000000}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "fractional quantity",
            br#"{"product_id":"P1","quantity":1.5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad product id",
            br#"{"product_id":"../../etc","quantity":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty product id",
            br#"{"product_id":"","quantity":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            br#"{"product_id":"P1","quantity":1,"price":0}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown product",
            br#"{"product_id":"NOPE","quantity":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (what, body, want) in cases {
        let (status, problem) = send(
            &stack,
            reqwest::Method::POST,
            orders.clone(),
            "application/json",
            body.to_vec(),
        )
        .await;
        assert_eq!(status, want, "{what}: {problem}");
    }
    let (status, _) = send(
        &stack,
        reqwest::Method::POST,
        orders.clone(),
        "text/plain",
        b"hello".to_vec(),
    )
    .await;
    assert!(
        status == StatusCode::UNSUPPORTED_MEDIA_TYPE || status == StatusCode::BAD_REQUEST,
        "{status}"
    );

    let huge = format!(
        r#"{{"product_id":"P1","quantity":1,"user_id":"{}"}}"#,
        "x".repeat(100_000)
    );
    let (status, _) = send(
        &stack,
        reqwest::Method::POST,
        orders,
        "application/json",
        huge.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, _) = send(
        &stack,
        reqwest::Method::GET,
        format!("{}/orders/not-a-uuid", stack.order.url),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(
        &stack,
        reqwest::Method::GET,
        format!("{}/orders/{}", stack.order.url, uuid::Uuid::new_v4()),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &stack,
        reqwest::Method::GET,
        format!("{}/orders?limit=0", stack.order.url),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(
        &stack,
        reqwest::Method::GET,
        format!("{}/no/such/route", stack.order.url),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let orders_stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&stack.pool)
        .await
        .expect("count");
    assert_eq!(orders_stored, 0, "no bad request left a row behind");
}

#[tokio::test]
async fn inventory_and_payment_reject_bad_input_too() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let inv = &stack.inventory.url;
    let pay = &stack.payment.url;
    let json = "application/json";
    let post = reqwest::Method::POST;
    let cases: Vec<(String, &[u8], StatusCode)> = vec![
        (format!("{inv}/inventory/reserve"), br#"{"order_id":"nope","product_id":"P1","quantity":1}"#, StatusCode::BAD_REQUEST),
        (format!("{inv}/inventory/reserve"), br#"{"order_id":"6a0c1d9e-2b4f-4a59-9d4e-1c2b3a4d5e6f","product_id":"P1","quantity":0}"#, StatusCode::BAD_REQUEST),
        (format!("{inv}/inventory/reserve"), br#"{"order_id":"6a0c1d9e-2b4f-4a59-9d4e-1c2b3a4d5e6f","product_id":"NOPE","quantity":1}"#, StatusCode::NOT_FOUND),
        (format!("{inv}/inventory/commit"), br#"{"order_id":"6a0c1d9e-2b4f-4a59-9d4e-1c2b3a4d5e6f"}"#, StatusCode::NOT_FOUND),
        (format!("{pay}/payments"), br#"{"order_id":"6a0c1d9e-2b4f-4a59-9d4e-1c2b3a4d5e6f","amount_cents":100}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (format!("{pay}/payments"), br#"{"order_id":"6a0c1d9e-2b4f-4a59-9d4e-1c2b3a4d5e6f","amount_cents":-1}"#, StatusCode::BAD_REQUEST),
        (format!("{pay}/payments"), br#"{"amount_cents":1}"#, StatusCode::BAD_REQUEST),
    ];
    for (url, body, want) in cases {
        let (status, problem) = send(&stack, post.clone(), url.clone(), json, body.to_vec()).await;
        assert_eq!(
            status,
            want,
            "{url} {}: {problem}",
            String::from_utf8_lossy(body)
        );
    }
    for url in [
        format!("{inv}/inventory/bad%20id"),
        format!("{pay}/payments/not-a-uuid"),
        format!("{pay}/payments?order_id=xyz"),
    ] {
        let (status, _) = send(&stack, reqwest::Method::GET, url.clone(), json, vec![]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
    }
    let (status, _) = send(
        &stack,
        reqwest::Method::GET,
        format!("{inv}/inventory/UNKNOWN"),
        json,
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
