//! A downstream that hangs or is down costs a bounded wait and leaves the
//! order pending, never a hung request; the reconciler settles it later.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use valerix_testkit::{Stack, StackOptions, black_hole, dead_address, eventually, upstream};

use crate::support::*;

#[tokio::test]
async fn hanging_inventory_answers_202_pending_inventory_within_the_bound() {
    let (hole, _task) = black_hole().await;
    let stack = Stack::start_with(StackOptions {
        order: Box::new(move |c| c.inventory_url = upstream(&hole)),
        ..Default::default()
    })
    .await;
    stack.product("P1", 100, 5).await;

    let start = Instant::now();
    let (status, o) = order(&stack, "P1", 1).await;
    let took = start.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{o}");
    assert_eq!(o["status"], "PENDING_INVENTORY");
    assert_eq!(o["message"], "processing - will confirm shortly");
    assert_eq!(
        o.get("amount_cents"),
        None,
        "inventory has not priced it: {o}"
    );
    // 2 s timeout, one retry: about 4 s, and never a hang.
    assert!(
        took >= Duration::from_millis(3900),
        "both attempts were made: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "bounded by 2 x 2 s: {took:?}"
    );
}

#[tokio::test]
async fn hanging_payment_keeps_the_stock_and_answers_202_pending_payment() {
    let (hole, _task) = black_hole().await;
    let stack = Stack::start_with(StackOptions {
        order: Box::new(move |c| c.payment_url = upstream(&hole)),
        ..Default::default()
    })
    .await;
    stack.product("P1", 100, 5).await;

    let start = Instant::now();
    let (status, o) = order(&stack, "P1", 2).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{o}");
    assert_eq!(o["status"], "PENDING_PAYMENT");
    assert_eq!(o["amount_cents"], 200, "priced with the reservation: {o}");
    assert!(start.elapsed() < Duration::from_secs(6));
    // The payment may have gone through: the stock stays held.
    let p = product(&stack, "P1").await;
    assert_eq!(p["reserved"], 2);
}

#[tokio::test]
async fn the_reconciler_confirms_once_the_payment_service_is_back() {
    let payment_url = dead_address().await;
    let url = payment_url.clone();
    let stack = Stack::start_with(StackOptions {
        order: Box::new(move |c| {
            c.payment_url = upstream(&url);
            c.call_timeout_ms = 300;
        }),
        ..Default::default()
    })
    .await;
    stack.product("P1", 100, 5).await;

    let (status, o) = order(&stack, "P1", 1).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{o}");
    assert_eq!(o["status"], "PENDING_PAYMENT");
    let id = o["id"].as_str().expect("id").to_owned();

    // Bring a payment service up on the address the order service calls.
    let addr = valerix_testkit::addr_of(&payment_url).expect("addr");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let config = payment_service::Config::with_database(&stack.db.url);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(payment_service::run(config, listener, async move {
        let _ = rx.await;
    }));

    let settled = eventually(
        "the reconciler to confirm the order",
        Duration::from_secs(30),
        || {
            let url = format!("{}/orders/{id}", stack.order.url);
            let http = stack.http.clone();
            async move {
                let o: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (o["status"] != "PENDING_PAYMENT").then_some(o)
            }
        },
    )
    .await;
    assert_eq!(settled["status"], "CONFIRMED", "{settled}");
    assert_audit_clean(&stack).await;
    let _ = tx.send(());
}

#[tokio::test]
async fn order_health_reports_an_unreachable_downstream() {
    let dead = dead_address().await;
    let stack = Stack::start_with(StackOptions {
        order: Box::new(move |c| c.inventory_url = upstream(&dead)),
        ..Default::default()
    })
    .await;
    let (status, h) = get(&stack, format!("{}/health", stack.order.url)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["dependencies"]["inventory-service"], "unreachable");
    assert_eq!(h["dependencies"]["payment-service"], "reachable");
}
