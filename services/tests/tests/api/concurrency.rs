use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use valerix_testkit::Stack;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_for_fifty_units_confirm_exactly_fifty() {
    let stack = Stack::start().await;
    stack.product("HOT", 500, 50).await;

    let answers = join_all((0..200).map(|_| order(&stack, "HOT", 1))).await;
    let confirmed = answers
        .iter()
        .filter(|(_, o)| o["status"] == "CONFIRMED")
        .count();
    let out_of_stock = answers
        .iter()
        .filter(|(_, o)| o["failure_reason"] == "OUT_OF_STOCK")
        .count();
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "every order settles at once"
    );
    assert_eq!(confirmed, 50);
    assert_eq!(out_of_stock, 150);

    stock_committed(&stack).await;
    let p = product(&stack, "HOT").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(0), Some(0))
    );
    let sold: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(quantity), 0) FROM reservations WHERE status = 'COMMITTED'",
    )
    .fetch_one(&stack.pool)
    .await
    .expect("sum");
    assert_eq!(sold, 50, "never more sold than was in stock");
    assert_audit_clean(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_reserve_is_a_no_op_even_concurrently() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    let (_, o) = order(&stack, "P1", 1).await;
    let order_id = o["id"].as_str().expect("id").to_owned();
    stock_committed(&stack).await;
    // A second order row to reserve for, without going through the saga.
    let id = uuid::Uuid::new_v4();
    let body = json!({ "order_id": id, "product_id": "P1", "quantity": 4 });
    let url = format!("{}/inventory/reserve", stack.inventory.url);

    let answers = join_all((0..10).map(|_| post(&stack, url.clone(), body.clone()))).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let replayed = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((created, replayed), (1, 9), "{answers:?}");
    assert!(answers.iter().all(|(_, r)| r["status"] == "RESERVED"));
    let p = product(&stack, "P1").await;
    assert_eq!(p["reserved"], 4, "reserved once, not ten times");

    // The same order with another quantity is a conflict, not a second hold.
    let (status, problem) = post(
        &stack,
        url.clone(),
        json!({ "order_id": id, "product_id": "P1", "quantity": 5 }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "reservation-mismatch");

    // Release is idempotent too, and gives the stock back once.
    for _ in 0..3 {
        let (status, r) = post(
            &stack,
            format!("{}/inventory/release", stack.inventory.url),
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["status"], "RELEASED");
    }
    let p = product(&stack, "P1").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(9), Some(0))
    );
    // A released reservation is never taken again by a late reserve.
    let (status, problem) = post(&stack, url, body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "reservation-released");
    assert!(!order_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_charge_is_a_no_op_even_concurrently() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    // An order row to charge, left unpaid: its saga is not run (not due
    // for a day, so the reconciler leaves it alone).
    let order_id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO orders (product_id, quantity, amount, status, next_attempt_at)
         VALUES ('P1', 1, 1.00, 'PENDING', NOW() + INTERVAL '1 day') RETURNING id",
    )
    .fetch_one(&stack.pool)
    .await
    .expect("order");
    let url = format!("{}/payments", stack.payment.url);
    let body = json!({ "order_id": order_id, "amount_cents": 100 });

    let answers = join_all((0..10).map(|_| post(&stack, url.clone(), body.clone()))).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    let ids: std::collections::HashSet<_> = answers.iter().map(|(_, p)| p["id"].clone()).collect();
    assert_eq!(ids.len(), 1, "one payment, returned to every caller");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(&stack.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);

    let (status, problem) = post(
        &stack,
        url,
        json!({ "order_id": order_id, "amount_cents": 999 }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "amount-mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_and_release_of_one_reservation_race_and_exactly_one_wins() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 10).await;
    for round in 0..5 {
        // An order row to hold stock for; its saga is not run (the
        // reconciler would claim an order due now, and race the test).
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO orders (product_id, quantity, amount, next_attempt_at)
             VALUES ('P1', 2, 2.00, NOW() + INTERVAL '1 day') RETURNING id",
        )
        .fetch_one(&stack.pool)
        .await
        .expect("order");
        let hold = json!({ "order_id": id, "product_id": "P1", "quantity": 2 });
        let (status, r) = post(
            &stack,
            format!("{}/inventory/reserve", stack.inventory.url),
            hold.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        let before = product(&stack, "P1").await;

        let commit = format!("{}/inventory/commit", stack.inventory.url);
        let release = format!("{}/inventory/release", stack.inventory.url);
        let answers = join_all((0..10).map(|i| {
            if i % 2 == round % 2 {
                post(&stack, commit.clone(), json!({ "order_id": id }))
            } else {
                post(&stack, release.clone(), hold.clone())
            }
        }))
        .await;
        let won: std::collections::HashSet<_> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .map(|(_, r)| r["status"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            won.len(),
            1,
            "one outcome for everyone it answered: {answers:?}"
        );
        let after = product(&stack, "P1").await;
        let stock = before["stock"].as_i64().expect("stock");
        let expected_stock = if won.contains("COMMITTED") {
            stock - 2
        } else {
            stock
        };
        assert_eq!(
            (after["stock"].as_i64(), after["reserved"].as_i64()),
            (Some(expected_stock), Some(0)),
            "{won:?}"
        );
        // The losers were told so: the state the winner left.
        assert!(
            answers
                .iter()
                .filter(|(s, _)| *s != StatusCode::OK)
                .all(|(s, p)| *s == StatusCode::CONFLICT
                    && p["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("reservation-"))),
            "{answers:?}"
        );
    }
    assert_audit_clean(&stack).await;
}

/// Reservations applied by one grouped statement share its transaction's
/// `created_at`: the size of the largest group.
async fn largest_reserve_group(stack: &Stack) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM reservations GROUP BY created_at) g",
    )
    .fetch_one(&stack.pool)
    .await
    .expect("groups")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_of_mixed_quantities_sell_exactly_the_stock_in_groups() {
    let stack = Stack::start().await;
    stack.product("HOT", 500, 50).await;

    let quantities: Vec<i64> = (0..200).map(|i| 1 + (i * 7) % 4).collect();
    let answers = join_all(quantities.iter().map(|&q| order(&stack, "HOT", q))).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "every order settles at once: {answers:?}"
    );
    let sold: i64 = answers
        .iter()
        .zip(&quantities)
        .filter(|((_, o), _)| o["status"] == "CONFIRMED")
        .map(|(_, q)| q)
        .sum();
    assert!(
        answers
            .iter()
            .all(|(_, o)| o["status"] == "CONFIRMED" || o["failure_reason"] == "OUT_OF_STOCK"),
        "{answers:?}"
    );
    // Orders of 1 unit were refused too, so none may be refused while a
    // unit remained: all 50 sold, not one more.
    assert_eq!(sold, 50);
    stock_committed(&stack).await;
    let p = product(&stack, "HOT").await;
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(0), Some(0))
    );
    let committed: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(quantity), 0) FROM reservations WHERE status = 'COMMITTED'",
    )
    .fetch_one(&stack.pool)
    .await
    .expect("sum");
    assert_eq!(committed, 50);
    // Whether requests meet in a group depends on timing (a loaded machine
    // may serve them one by one); what must hold either way is above.
    eprintln!(
        "largest reserve group: {}",
        largest_reserve_group(&stack).await
    );
    assert_audit_clean(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_reserves_serve_what_fits_and_answer_repeats_with_the_first_answer() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 40).await;
    let url = format!("{}/inventory/reserve", stack.inventory.url);
    // 60 orders of 1 to 5 units (180 asked for 40), each sent twice at once.
    let holds: Vec<_> = (0..60)
        .map(|i| json!({ "order_id": uuid::Uuid::new_v4(), "product_id": "P1", "quantity": 1 + (i * 3) % 5 }))
        .collect();
    let answers = join_all(
        holds
            .iter()
            .chain(&holds)
            .map(|h| post(&stack, url.clone(), h.clone())),
    )
    .await;
    let (first, second) = answers.split_at(holds.len());
    let mut reserved = 0;
    let mut refused = Vec::new();
    for ((a, b), hold) in first.iter().zip(second).zip(&holds) {
        let outcome = |(s, r): &(StatusCode, serde_json::Value)| match *s {
            StatusCode::CREATED | StatusCode::OK if r["status"] == "RESERVED" => "RESERVED",
            StatusCode::CONFLICT if r["type"] == "out-of-stock" => "OUT_OF_STOCK",
            _ => panic!("unexpected answer {s}: {r}"),
        };
        assert_eq!(outcome(a), outcome(b), "one answer per order: {a:?} {b:?}");
        assert!(
            a.0 != StatusCode::CREATED || b.0 != StatusCode::CREATED,
            "reserved once"
        );
        let q = hold["quantity"].as_i64().expect("quantity");
        if outcome(a) == "RESERVED" {
            reserved += q;
        } else {
            refused.push(q);
        }
    }
    let p = product(&stack, "P1").await;
    assert_eq!(p["reserved"].as_i64(), Some(reserved), "never an oversell");
    assert!(reserved <= 40);
    let left = 40 - reserved;
    assert!(
        refused.iter().all(|&q| q > left),
        "refused {refused:?} with {left} left"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reservations")
        .fetch_one(&stack.pool)
        .await
        .expect("count");
    assert_eq!(rows, 60, "one row per order");
    eprintln!(
        "largest reserve group: {}",
        largest_reserve_group(&stack).await
    );
}
