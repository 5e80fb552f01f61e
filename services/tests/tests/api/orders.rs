use reqwest::StatusCode;
use serde_json::json;
use valerix_testkit::Stack;

use crate::support::*;

#[tokio::test]
async fn happy_path_confirms_charges_and_takes_stock() {
    let stack = Stack::start().await;
    stack.product("P1", 1250, 10).await;

    let (status, order) = order(&stack, "P1", 3).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["amount_cents"], 3750);
    assert_eq!(order["failure_reason"], json!(null));
    let id = order["id"].as_str().expect("id").to_owned();

    let (status, read) = get(&stack, format!("{}/orders/{id}", stack.order.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["status"], "CONFIRMED");

    // From the answer on, the units are the buyer's: held, or already
    // committed by the commit that follows the answer.
    let p = product(&stack, "P1").await;
    assert_eq!(p["available"].as_i64(), Some(7), "{p}");
    stock_committed(&stack).await;
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(7), Some(0))
    );
    let payments = payments_of(&stack, &id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "COMPLETED");
    assert_eq!(payments[0]["amount_cents"], 3750);
    let (status, res) = get(
        &stack,
        format!("{}/inventory/reservations/{id}", stack.inventory.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(res["status"], "COMMITTED");
    assert_eq!(res["unit_price_cents"], 1250, "priced by inventory");
    assert_audit_clean(&stack).await;
}

/// Inventory prices an order with its reservation, once: a repeated
/// reserve answers the first price after the product was repriced, so a
/// retried saga charges what the first run would have.
#[tokio::test]
async fn a_reservation_keeps_the_price_it_was_made_at() {
    let stack = Stack::start().await;
    stack.product("P1", 1250, 10).await;
    let reserve = json!({
        "order_id": "6a0c1d9e-2b4f-4a59-9d4e-1c2b3a4d5e6f",
        "product_id": "P1",
        "quantity": 2,
    });
    let url = format!("{}/inventory/reserve", stack.inventory.url);
    let (status, first) = post(&stack, url.clone(), reserve.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["unit_price_cents"], 1250);

    stack.product("P1", 9999, 10).await;
    let (status, again) = post(&stack, url, reserve).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["unit_price_cents"], 1250, "the first answer's price");

    let (status, order) = order(&stack, "P1", 1).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["amount_cents"], 9999, "a new order: today's price");
}

#[tokio::test]
async fn out_of_stock_fails_and_holds_nothing() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 2).await;

    let (status, order) = order(&stack, "P1", 3).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failure_reason"], "OUT_OF_STOCK");
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(2), Some(0))
    );
    assert!(
        payments_of(&stack, order["id"].as_str().expect("id"))
            .await
            .is_empty()
    );
    assert_audit_clean(&stack).await;
}

#[tokio::test]
async fn declined_payment_releases_the_stock() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 5).await;

    let (status, order) = post(
        &stack,
        format!("{}/orders", stack.order.url),
        json!({ "product_id": "P1", "quantity": 2, "user_id": "decline-me" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "FAILED");
    assert_eq!(order["failure_reason"], "PAYMENT_DECLINED");
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(5), Some(0))
    );
    let payments = payments_of(&stack, order["id"].as_str().expect("id")).await;
    assert_eq!(payments[0]["status"], "DECLINED");
    assert_audit_clean(&stack).await;
}

#[tokio::test]
async fn list_is_newest_first_and_pages() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 100).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, o) = order(&stack, "P1", 1).await;
        ids.push(o["id"].as_str().expect("id").to_owned());
    }
    ids.reverse();
    let (status, page1) = get(&stack, format!("{}/orders?limit=3", stack.order.url)).await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<_> = page1["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(got, ids[..3]);
    let before = page1["next_before"].as_str().expect("next page");
    let (_, page2) = get(
        &stack,
        format!("{}/orders?limit=3&before={before}", stack.order.url),
    )
    .await;
    let got: Vec<_> = page2["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(got, ids[3..]);
    assert_eq!(page2["next_before"], json!(null));
    let (_, confirmed) = get(
        &stack,
        format!("{}/orders?status=CONFIRMED", stack.order.url),
    )
    .await;
    assert_eq!(confirmed["orders"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn health_follows_the_plan_on_every_service() {
    let stack = Stack::start().await;
    for (svc, url, deps) in [
        (
            "order-service",
            &stack.order.url,
            vec!["database", "inventory-service", "payment-service"],
        ),
        ("inventory-service", &stack.inventory.url, vec!["database"]),
        ("payment-service", &stack.payment.url, vec!["database"]),
    ] {
        let (status, h) = get(&stack, format!("{url}/health")).await;
        assert_eq!(status, StatusCode::OK, "{h}");
        assert_eq!(h["status"], "healthy");
        assert_eq!(h["service"], svc);
        assert!(h["timestamp"].as_str().is_some_and(|t| t.contains('T')));
        for d in deps {
            let want = if d == "database" {
                "connected"
            } else {
                "reachable"
            };
            assert_eq!(h["dependencies"][d], want, "{svc}: {h}");
        }
    }
}

#[tokio::test]
async fn audit_reports_a_broken_invariant() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 5).await;
    let (_, o) = order(&stack, "P1", 1).await;
    assert_eq!(o["status"], "CONFIRMED");
    assert_audit_clean(&stack).await;
    sqlx::query("UPDATE inventory SET reserved = reserved + 1 WHERE product_id = 'P1'")
        .execute(&stack.pool)
        .await
        .expect("break it");
    let report = valerix::audit::audit(&stack.pool, None)
        .await
        .expect("audit");
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    assert!(report.violations[0].detail.contains("P1"));
}
