use reqwest::StatusCode;
use serde_json::{Value, json};
use valerix_testkit::Stack;

pub async fn post(stack: &Stack, url: String, body: Value) -> (StatusCode, Value) {
    let resp = stack
        .http
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn get(stack: &Stack, url: String) -> (StatusCode, Value) {
    let resp = stack.http.get(url).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn order(stack: &Stack, product: &str, quantity: i64) -> (StatusCode, Value) {
    post(
        stack,
        format!("{}/orders", stack.order.url),
        json!({ "product_id": product, "quantity": quantity }),
    )
    .await
}

pub async fn product(stack: &Stack, id: &str) -> Value {
    let (status, body) = get(stack, format!("{}/inventory/{id}", stack.inventory.url)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub async fn payments_of(stack: &Stack, order_id: &str) -> Vec<Value> {
    let (status, body) = get(
        stack,
        format!("{}/payments?order_id={order_id}", stack.payment.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["payments"].as_array().cloned().unwrap_or_default()
}

/// Waits until every CONFIRMED order's stock is committed: the order
/// service commits it after the answer.
pub async fn stock_committed(stack: &Stack) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let done = valerix::audit::wait_for_stock_commits(&stack.pool, deadline)
        .await
        .expect("count outstanding stock commits");
    assert!(
        done,
        "a CONFIRMED order's stock was not committed within 10 s"
    );
}

pub async fn assert_audit_clean(stack: &Stack) {
    let report = valerix::audit::audit(&stack.pool, None)
        .await
        .expect("audit");
    assert!(
        report.is_clean(),
        "audit violations: {:#?}",
        report.violations
    );
}

/// Waits until one backend of this database waits for a lock: a statement
/// the test holds back is under way.
pub async fn one_statement_waits_for_a_lock(pool: &sqlx::PgPool, what: &str) {
    valerix_testkit::eventually(what, std::time::Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (waiting == 1).then_some(())
        }
    })
    .await;
}
