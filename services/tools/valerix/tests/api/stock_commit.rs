//! Deferred stock commits: a paid order is CONFIRMED while inventory still
//! holds its units, and the commit follows. What a lost commit leaves
//! behind, the reconciler's sweep finishes; with `--defer-stock-commit
//! false` the commit comes before the answer, as it used to.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;
use valerix_testkit::{Stack, StackOptions};

use crate::support::*;

/// An order row in `status`, and a reservation held for it through
/// inventory's API, last touched a minute ago (as a commit lost in a crash
/// would leave it). The saga never sees it: not due for a day.
async fn held_for(stack: &Stack, status: &str, quantity: i32) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO orders (product_id, quantity, amount, status, next_attempt_at)
         VALUES ('P1', $1, $1, $2, NOW() + INTERVAL '1 day') RETURNING id",
    )
    .bind(quantity)
    .bind(status)
    .fetch_one(&stack.pool)
    .await
    .expect("order row");
    let (status, r) = post(
        stack,
        format!("{}/inventory/reserve", stack.inventory.url),
        json!({ "order_id": id, "product_id": "P1", "quantity": quantity }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    sqlx::query(
        "UPDATE reservations SET updated_at = NOW() - INTERVAL '1 minute' WHERE order_id = $1",
    )
    .bind(id)
    .execute(&stack.pool)
    .await
    .expect("backdate");
    id
}

async fn reservation_status(stack: &Stack, id: Uuid) -> String {
    let (status, r) = get(
        stack,
        format!("{}/inventory/reservations/{id}", stack.inventory.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_sweep_commits_the_held_stock_of_a_confirmed_order_and_leaves_orders_in_flight_alone() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let confirmed = held_for(&stack, "CONFIRMED", 3).await;
    let in_flight = held_for(&stack, "PENDING_PAYMENT", 2).await;
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(10), Some(5))
    );

    // The reconciler sweeps every 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while reservation_status(&stack, confirmed).await != "COMMITTED" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep did not commit the confirmed order's stock within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(7), Some(2)),
        "three units sold, the order in flight still holds two: {p}"
    );
    assert_eq!(reservation_status(&stack, in_flight).await, "RESERVED");
}

#[tokio::test]
async fn the_batch_commit_tells_each_order_what_became_of_it() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let held = held_for(&stack, "PENDING_PAYMENT", 1).await;
    let released = held_for(&stack, "PENDING_PAYMENT", 1).await;
    let (status, r) = post(
        &stack,
        format!("{}/inventory/release", stack.inventory.url),
        json!({ "order_id": released, "product_id": "P1", "quantity": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let unknown = Uuid::new_v4();

    let url = format!("{}/inventory/commits", stack.inventory.url);
    let body = json!({ "order_ids": [held, released, unknown, held] });
    let (status, first) = post(&stack, url.clone(), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["committed"], json!([held]), "{first}");
    assert_eq!(
        first["not_held"],
        json!([{ "order_id": released, "status": "RELEASED" }])
    );
    assert_eq!(first["missing"], json!([unknown]));
    // A repeat is answered the same, and sells nothing twice.
    let (status, again) = post(&stack, url.clone(), body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(9), Some(0))
    );

    let (status, problem) = post(&stack, url, json!({ "order_ids": [] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
}

#[tokio::test]
async fn without_deferral_the_stock_is_committed_before_the_answer() {
    let stack = Stack::start_with(StackOptions {
        order: Box::new(|c| c.defer_stock_commit = false),
        ..Default::default()
    })
    .await;
    stack.product("P1", 100, 10).await;
    let (status, o) = order(&stack, "P1", 4).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    assert_eq!(o["status"], "CONFIRMED");
    let id: Uuid = o["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
    assert_eq!(reservation_status(&stack, id).await, "COMMITTED");
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(6), Some(0))
    );
    assert_audit_clean(&stack).await;
}
