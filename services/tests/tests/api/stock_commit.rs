//! Deferred stock commits: a paid order is CONFIRMED while inventory still
//! holds its units, and the commit follows. What a lost commit leaves
//! behind, the reconciler's sweep finishes; with `--defer-stock-commit
//! false` the commit comes before the answer.

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

/// A stopping order service sends the commits it queued instead of leaving
/// them to the next sweep. The first order's commit is held in the database
/// (a trigger waits for a lock the test holds) while the second is queued
/// behind it; the test lets go only once the order service has stopped
/// serving, so only a process that finishes its queue commits the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_order_service_sends_the_commits_it_queued() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    for ddl in [
        "CREATE FUNCTION hold_commits() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.status = 'COMMITTED' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF;
             RETURN NEW;
         END $$",
        "CREATE TRIGGER hold_commits BEFORE UPDATE ON reservations
         FOR EACH ROW EXECUTE FUNCTION hold_commits()",
    ] {
        sqlx::query(ddl).execute(&stack.pool).await.expect(ddl);
    }
    let mut holder = stack.pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *holder)
        .await
        .expect("lock");

    let (status, first) = order(&stack, "P1", 1).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (StatusCode::CREATED, Some("CONFIRMED")),
        "{first}"
    );
    one_statement_waits_for_a_lock(&stack.pool, "the first commit waits for the lock").await;
    let (status, second) = order(&stack, "P1", 2).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (StatusCode::CREATED, Some("CONFIRMED")),
        "{second}"
    );
    let second: Uuid = second["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");

    let Stack {
        order: order_service,
        pool,
        http,
        inventory: _inventory,
        payment: _payment,
        ..
    } = stack;
    let health = format!("{}/health", order_service.url);
    let stopping = tokio::spawn(order_service.stop());
    valerix_testkit::eventually(
        "the order service stops serving",
        Duration::from_secs(10),
        || {
            let (http, health) = (http.clone(), health.clone());
            async move { http.get(&health).send().await.is_err().then_some(()) }
        },
    )
    .await;
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *holder)
        .await
        .expect("unlock");
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the order service stops within 15 s")
        .expect("join");

    let status: String = sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
        .bind(second)
        .fetch_one(&pool)
        .await
        .expect("reservation");
    assert_eq!(
        status, "COMMITTED",
        "the queued commit was sent before the process ended"
    );
}
