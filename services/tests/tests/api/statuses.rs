//! Statuses are enums mapped by sqlx: each is stored as the name the
//! contract gives it, and a value the code does not know is an error, never
//! read as some other status.

use inventory_service::domain::ReservationStatus;
use order_service::domain::{FailureReason, OrderStatus};
use payment_service::domain::PaymentStatus;
use reqwest::StatusCode;
use valerix_testkit::Stack;

use crate::support::*;

/// What PostgreSQL stores for `value`, and what the API calls it.
async fn stored_and_api<T>(pool: &sqlx::PgPool, value: T) -> (String, serde_json::Value)
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + poem_openapi::types::ToJSON
        + Send
        + Copy,
{
    let stored: String = sqlx::query_scalar("SELECT $1::TEXT")
        .bind(value)
        .fetch_one(pool)
        .await
        .expect("encode");
    (stored, value.to_json().expect("json"))
}

#[tokio::test]
async fn every_status_is_stored_under_the_name_the_api_gives_it() {
    let stack = Stack::start().await;
    let pool = &stack.pool;
    let mut pairs = Vec::new();
    for s in OrderStatus::ALL {
        pairs.push(stored_and_api(pool, s).await);
    }
    for r in FailureReason::ALL {
        pairs.push(stored_and_api(pool, r).await);
    }
    for s in ReservationStatus::ALL {
        pairs.push(stored_and_api(pool, s).await);
    }
    for s in PaymentStatus::ALL {
        pairs.push(stored_and_api(pool, s).await);
    }
    assert_eq!(pairs.len(), 5 + 3 + 4 + 5);
    for (stored, api) in pairs {
        assert_eq!(serde_json::Value::String(stored), api);
    }
    // The SQL list of unsettled statuses names exactly those.
    assert_eq!(
        OrderStatus::unsettled_sql(),
        "('PENDING', 'PENDING_INVENTORY', 'PENDING_PAYMENT')"
    );
}

#[tokio::test]
async fn an_unknown_status_in_the_database_is_an_error_not_a_guess() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 5).await;
    let (status, order) = order(&stack, "P1", 1).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id: uuid::Uuid = order["id"].as_str().expect("id").parse().expect("uuid");

    // A status written by something newer than this code.
    sqlx::query("ALTER TABLE orders DROP CONSTRAINT orders_status_check")
        .execute(&stack.pool)
        .await
        .expect("drop check");
    sqlx::query("UPDATE orders SET status = 'ON_HOLD' WHERE id = $1")
        .bind(id)
        .execute(&stack.pool)
        .await
        .expect("update");

    let err = order_service::store::Store::new(stack.pool.clone())
        .get(id)
        .await
        .expect_err("ON_HOLD is no OrderStatus");
    assert!(err.to_string().contains("ON_HOLD"), "{err}");

    let (status, body) = get(&stack, format!("{}/orders/{id}", stack.order.url)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["status"], 500, "problem JSON: {body}");
}
