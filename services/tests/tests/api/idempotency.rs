use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use valerix_testkit::{Stack, StackOptions, eventually};

/// `POST {base}/orders` with one header, e.g. an Idempotency-Key.
async fn place_with(
    http: &reqwest::Client,
    base: &str,
    header: (&str, &str),
    body: Value,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{base}/orders"))
        .header(header.0, header.1)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn keyed(stack: &Stack, key: &str, body: Value) -> (StatusCode, Value) {
    place_with(
        &stack.http,
        &stack.order.url,
        ("Idempotency-Key", key),
        body,
    )
    .await
}

async fn order_count(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&stack.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_retried_post_returns_the_same_order() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let body = json!({ "product_id": "P1", "quantity": 2 });
    let (s1, first) = keyed(&stack, "key-1", body.clone()).await;
    let (s2, again) = keyed(&stack, "key-1", body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["status"], "CONFIRMED");
    assert_eq!(order_count(&stack).await, 1);
    let p: i32 = sqlx::query_scalar("SELECT stock FROM inventory WHERE product_id = 'P1'")
        .fetch_one(&stack.pool)
        .await
        .expect("stock");
    assert_eq!(p, 8, "charged and taken once");
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let (s, _) = keyed(
        &stack,
        "key-2",
        json!({ "product_id": "P1", "quantity": 1 }),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, problem) = keyed(
        &stack,
        "key-2",
        json!({ "product_id": "P1", "quantity": 2 }),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "idempotency-key-reused");
    assert_eq!(order_count(&stack).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_create_one_order() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 100).await;
    let body = json!({ "product_id": "P1", "quantity": 1 });
    let answers = join_all((0..20).map(|_| keyed(&stack, "key-3", body.clone()))).await;
    let ids: std::collections::HashSet<_> = answers.iter().map(|(_, o)| o["id"].clone()).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(order_count(&stack).await, 1);
}

async fn keys_like(stack: &Stack, pattern: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE key LIKE $1")
        .bind(pattern)
        .fetch_one(&stack.pool)
        .await
        .expect("count keys")
}

#[tokio::test]
async fn keys_past_their_retention_are_purged_and_then_place_a_new_order() {
    let stack = Stack::start_with(StackOptions {
        order: Box::new(|c| c.idempotency_retention_secs = 60),
        ..StackOptions::default()
    })
    .await;
    stack.product("P1", 100, 10).await;
    let body = json!({ "product_id": "P1", "quantity": 1 });
    let (_, old) = keyed(&stack, "old-key", body.clone()).await;
    let (_, young) = keyed(&stack, "young-key", body.clone()).await;
    // Age what the retention is measured by: one key used 61 s ago, and a
    // backlog of 1200 more, over two full purge batches.
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = NOW() - INTERVAL '61 seconds' WHERE key = 'old-key'",
    )
    .execute(&stack.pool)
    .await
    .expect("age the key");
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, order_id, created_at)
         SELECT 'backlog-' || g, 'x', $1::UUID, NOW() - INTERVAL '1 hour'
         FROM generate_series(1, 1200) AS g",
    )
    .bind(young["id"].as_str().expect("order id"))
    .execute(&stack.pool)
    .await
    .expect("a backlog of expired keys");

    eventually(
        "the reconciler to purge the expired keys",
        Duration::from_secs(30),
        || async {
            (keys_like(&stack, "old-key").await == 0 && keys_like(&stack, "backlog-%").await == 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        keys_like(&stack, "young-key").await,
        1,
        "a key within its retention stays"
    );
    assert_eq!(order_count(&stack).await, 2, "orders are never purged");

    // Forgotten: the old key now places a new order, even with another body.
    let (s, again) = keyed(
        &stack,
        "old-key",
        json!({ "product_id": "P1", "quantity": 2 }),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_ne!(again["id"], old["id"]);
    // Remembered: the young key still returns its order.
    let (_, replay) = keyed(&stack, "young-key", body).await;
    assert_eq!(replay["id"], young["id"]);
    assert_eq!(order_count(&stack).await, 3);
}

/// The key is claimed in the statement that stores the order: an order for
/// a product nobody sells is refused as it is without a key, and leaves its
/// key unclaimed, so the same key then places the order once the product
/// exists.
#[tokio::test]
async fn an_unknown_product_is_422_and_leaves_the_key_free() {
    let stack = Stack::start().await;
    let body = json!({ "product_id": "LATER", "quantity": 1 });
    let (status, problem) = keyed(&stack, "key-later", body.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(keys_like(&stack, "key-later").await, 0);
    assert_eq!(order_count(&stack).await, 0);
    stack.product("LATER", 100, 1).await;
    let (status, order) = keyed(&stack, "key-later", body).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(keys_like(&stack, "key-later").await, 1);
}

async fn with_order_id(
    base: &str,
    http: &reqwest::Client,
    id: &str,
    body: Value,
) -> (StatusCode, Value) {
    place_with(http, base, ("Order-Id", id), body).await
}

/// An Order-Id makes a retry safe as a key does, with the order's own row
/// as the record: sent again it returns that order, for another order 422,
/// with a key 422, malformed 400.
#[tokio::test]
async fn an_order_id_places_the_order_under_it_once() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let (url, http) = (stack.order.url.as_str(), &stack.http);
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({ "product_id": "P1", "quantity": 2 });
    let (s1, first) = with_order_id(url, http, &id, body.clone()).await;
    let (s2, again) = with_order_id(url, http, &id, body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(
        (first["id"].as_str(), again["id"].as_str()),
        (Some(&*id), Some(&*id))
    );
    assert_eq!(again["status"], "CONFIRMED");
    assert_eq!(order_count(&stack).await, 1);
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(&stack.pool)
        .await
        .expect("keys");
    assert_eq!(keys, 0, "an Order-Id writes no key row");

    let other = json!({ "product_id": "P1", "quantity": 1 });
    let (s, problem) = with_order_id(url, http, &id, other.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "order-id-reused");

    let (s, problem) = with_order_id(url, http, "not-a-uuid", other.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["type"], "invalid-request");

    let both = http
        .post(format!("{url}/orders"))
        .header("Order-Id", uuid::Uuid::new_v4().to_string())
        .header("Idempotency-Key", "k-both")
        .json(&other)
        .send()
        .await
        .expect("request");
    assert_eq!(both.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = both.json().await.expect("json");
    assert_eq!(problem["type"], "order-id-with-key");
    assert_eq!(order_count(&stack).await, 1, "nothing else placed");
}

/// The gateway gives an order that comes without a key an Order-Id, not a
/// key (no key row per order), and passes a client's Order-Id on.
#[tokio::test]
async fn through_the_gateway_an_order_without_a_key_gets_an_order_id() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let gw = stack.gateway().await;
    let api = format!("{}/api", gw.url);
    let body = json!({ "product_id": "P1", "quantity": 1 });
    let resp = stack
        .http
        .post(format!("{api}/orders"))
        .json(&body)
        .send()
        .await
        .expect("order");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = uuid::Uuid::new_v4().to_string();
    let (s1, first) = with_order_id(&api, &stack.http, &id, body.clone()).await;
    let (s2, again) = with_order_id(&api, &stack.http, &id, body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(
        (first["id"].as_str(), again["id"].as_str()),
        (Some(&*id), Some(&*id))
    );
    assert_eq!(order_count(&stack).await, 2);
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(&stack.pool)
        .await
        .expect("keys");
    assert_eq!(keys, 0);
}
