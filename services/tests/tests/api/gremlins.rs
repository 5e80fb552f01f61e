//! Gremlins inject the faults; the breaker and the reconciler ride them out.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use valerix_testkit::{Stack, StackOptions, eventually};

use crate::support::*;

fn fast_failing() -> StackOptions {
    StackOptions {
        gremlins: true,
        order: Box::new(|c| {
            c.call_timeout_ms = 400;
            c.breaker_failures = 4;
            c.breaker_open_ms = 1000;
        }),
        ..StackOptions::default()
    }
}

async fn all_settled(stack: &Stack, ids: &[String]) -> Vec<Value> {
    eventually("every order to settle", Duration::from_secs(60), || async {
        let mut out = Vec::new();
        for id in ids {
            let (_, o) = get(stack, format!("{}/orders/{id}", stack.order.url)).await;
            if !matches!(o["status"].as_str(), Some("CONFIRMED" | "FAILED")) {
                return None;
            }
            out.push(o);
        }
        Some(out)
    })
    .await
}

#[tokio::test]
async fn gremlins_are_refused_unless_enabled() {
    let stack = Stack::start().await;
    for url in [&stack.order.url, &stack.inventory.url, &stack.payment.url] {
        let (status, problem) = post(
            &stack,
            format!("{url}/gremlin/latency"),
            json!({ "delay_ms": 3000, "enabled": true }),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert_eq!(problem["type"], "gremlins-disabled");
        let (status, _) = get(&stack, format!("{url}/gremlin")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn latency_every_nth_request_is_a_deterministic_pattern() {
    let stack = Stack::start_with(fast_failing()).await;
    stack.product("P1", 100, 10).await;
    let (status, settings) = post(
        &stack,
        format!("{}/gremlin/latency", stack.inventory.url),
        json!({ "delay_ms": 400, "every_nth": 3, "enabled": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["latency"]["every_nth"], 3);
    let mut slow = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        product(&stack, "P1").await;
        slow.push(start.elapsed() >= Duration::from_millis(400));
    }
    assert_eq!(slow, [false, false, true, false, false, true]);
    let (_, shown) = get(&stack, format!("{}/gremlin", stack.inventory.url)).await;
    assert_eq!(shown["latency"]["delay_ms"], 400);
    let cleared = stack
        .http
        .delete(format!("{}/gremlin", stack.inventory.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(cleared.status(), StatusCode::OK);
    let (_, shown) = get(&stack, format!("{}/gremlin", stack.inventory.url)).await;
    assert_eq!(shown["latency"], Value::Null);
}

#[tokio::test]
async fn slow_inventory_opens_the_breaker_and_every_order_confirms_after_it_heals() {
    let stack = Stack::start_with(fast_failing()).await;
    stack.product("P1", 100, 100).await;
    let (status, _) = post(
        &stack,
        format!("{}/gremlin/latency", stack.inventory.url),
        json!({ "delay_ms": 1500, "enabled": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let mut ids = Vec::new();
    let mut took = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let (status, o) = order(&stack, "P1", 1).await;
        took.push(start.elapsed());
        assert_eq!(status, StatusCode::ACCEPTED, "{o}");
        assert_eq!(o["status"], "PENDING_INVENTORY");
        ids.push(o["id"].as_str().expect("id").to_owned());
    }
    // Two timed-out attempts each for the first two orders open the breaker;
    // after that an order costs no timeout at all.
    assert!(took[0] >= Duration::from_millis(750), "{took:?}");
    assert!(
        took[4] < Duration::from_millis(300),
        "breaker open answers fast: {took:?}"
    );
    let (_, health) = get(&stack, format!("{}/health", stack.order.url)).await;
    assert_eq!(
        health["dependencies"]["inventory-service-circuit"], "open",
        "{health}"
    );

    let resp = stack
        .http
        .delete(format!("{}/gremlin", stack.inventory.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::OK);
    for o in all_settled(&stack, &ids).await {
        assert_eq!(o["status"], "CONFIRMED", "{o}");
    }
    let (_, health) = get(&stack, format!("{}/health", stack.order.url)).await;
    assert_eq!(
        health["dependencies"]["inventory-service-circuit"], "closed",
        "{health}"
    );
    assert_audit_clean(&stack).await;
}

#[tokio::test]
async fn a_charge_that_answered_500_after_commit_is_found_and_confirmed() {
    let stack = Stack::start_with(fast_failing()).await;
    stack.product("P1", 100, 10).await;
    let (status, _) = post(
        &stack,
        format!("{}/gremlin/noise", stack.payment.url),
        json!({ "enabled": true, "every_nth": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, o) = order(&stack, "P1", 2).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{o}");
    assert_eq!(o["status"], "PENDING_PAYMENT");
    let id = o["id"].as_str().expect("id").to_owned();
    // Schrödinger's payment: it went through although the answer said 500.
    let paid = payments_of(&stack, &id).await;
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0]["status"], "COMPLETED");
    assert_eq!(
        product(&stack, "P1").await["reserved"],
        2,
        "stock kept while the outcome is unknown"
    );

    let resp = stack
        .http
        .delete(format!("{}/gremlin", stack.payment.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::OK);
    let settled = all_settled(&stack, std::slice::from_ref(&id)).await;
    assert_eq!(settled[0]["status"], "CONFIRMED");
    assert_eq!(payments_of(&stack, &id).await.len(), 1, "charged once");
    assert_audit_clean(&stack).await;
}
