//! A client that leaves does not abandon its order: placing it runs to its
//! answer whatever becomes of the connection.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpStream};
use valerix_testkit::{Stack, StackOptions, eventually};

use crate::support::{assert_audit_clean, post, product, stock_committed};

const CLIENTS: usize = 50;

/// Each client's whole request, sent in one write.
fn request(host: &str, i: usize) -> Vec<u8> {
    let body =
        json!({ "product_id": "CUT", "quantity": 1, "user_id": format!("leaver-{i}") }).to_string();
    format!(
        "POST /orders HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn orders_by_status(stack: &Stack) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT status::TEXT, COUNT(*) FROM orders WHERE product_id = 'CUT' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap_or_else(|e| panic!("count orders: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_that_leave_mid_order_leave_no_order_unsettled() {
    let stack = Stack::start_with(StackOptions {
        gremlins: true,
        ..StackOptions::default()
    })
    .await;
    stack.product("CUT", 100, 1000).await;
    // Every reservation takes 500 ms, so each order is mid-saga (its
    // handler waiting for inventory) when its client goes.
    let (status, body) = post(
        &stack,
        format!("{}/gremlin/latency", stack.inventory.url),
        json!({ "delay_ms": 500, "enabled": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let addr = stack.order.url.trim_start_matches("http://").to_owned();
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut stream = TcpStream::connect(&addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .write_all(&request(&addr, i))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        clients.push(stream);
    }
    // Every request has reached its handler (the order is stored, PENDING)
    // before any client leaves.
    eventually("every order stored", Duration::from_secs(10), || async {
        let stored: i64 = orders_by_status(&stack).await.iter().map(|s| s.1).sum();
        (stored == CLIENTS as i64).then_some(())
    })
    .await;
    let still_pending = orders_by_status(&stack).await;
    // Half close their connection, half reset it.
    for (i, stream) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            stream
                .set_zero_linger()
                .unwrap_or_else(|e| panic!("SO_LINGER: {e}"));
        }
        drop(stream);
    }
    let cut = Instant::now();

    eventually("every order settled", Duration::from_secs(2), || async {
        let statuses = orders_by_status(&stack).await;
        (statuses == [("CONFIRMED".to_owned(), CLIENTS as i64)]).then_some(())
    })
    .await;
    let settled_in = cut.elapsed();
    eprintln!(
        "{CLIENTS} clients left with their orders at {still_pending:?}: all CONFIRMED {settled_in:.0?} later"
    );
    assert!(
        still_pending
            .iter()
            .all(|(status, _)| status != "CONFIRMED"),
        "orders settled before their clients left, so nothing was tested: {still_pending:?}"
    );

    // Nothing held: each order's units are sold, none reserved.
    stock_committed(&stack).await;
    let stock = product(&stack, "CUT").await;
    assert_eq!(stock["reserved"], 0, "{stock}");
    assert_eq!(stock["stock"], 1000 - CLIENTS, "{stock}");
    assert_audit_clean(&stack).await;
}
