//! The services on one host calling each other over Unix domain sockets
//! (`--unix-socket`, `unix:/path` addresses), as `valerix up` runs them.

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};
use valerix_testkit::{Stack, StackOptions};

use crate::support::*;

fn socket_dir(test: &str) -> std::path::PathBuf {
    // Short: a socket path must fit in 108 bytes.
    let dir = std::env::temp_dir().join(format!("vx-{test}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("socket dir");
    dir
}

fn over(socket: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(socket)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_order_goes_through_the_sockets_only() {
    let dir = socket_dir("saga");
    let stack = Stack::start_with(StackOptions {
        unix_sockets: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    stack.product("P1", 500, 5).await;

    // The order service was given only the sockets of inventory and payment.
    let (status, placed) = order(&stack, "P1", 2).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "CONFIRMED", "{placed}");

    stock_committed(&stack).await;
    // The socket serves the same API as the TCP port.
    let inventory = over(&dir.join("inventory.sock"));
    let (status, p) = json_of(
        inventory
            .get("http://localhost/inventory/P1")
            .send()
            .await
            .expect("over the socket"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(3), Some(0))
    );

    // The gateway reaches all three through their sockets.
    let socket = |name: &str| {
        valerix_testkit::upstream(&format!(
            "unix:{}",
            dir.join(format!("{name}.sock")).display()
        ))
    };
    let gateway = stack
        .gateway_with(api_gateway::Config::with_upstreams(
            socket("order"),
            socket("inventory"),
            socket("payment"),
        ))
        .await;
    let (status, placed) = json_of(
        stack
            .http
            .post(format!("{}/api/orders", gateway.url))
            .json(&json!({ "product_id": "P1", "quantity": 1 }))
            .send()
            .await
            .expect("through the gateway"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "CONFIRMED", "{placed}");
    let (status, overview) = json_of(
        stack
            .http
            .get(format!("{}/api/overview", gateway.url))
            .send()
            .await
            .expect("overview"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    assert_eq!(
        overview["services"],
        json!({
            "api-gateway": "healthy",
            "database": "connected",
            "inventory-service": "reachable",
            "order-service": "reachable",
            "payment-service": "reachable",
        })
    );
    assert_audit_clean(&stack).await;

    gateway.stop().await;
    let Stack {
        order,
        inventory,
        payment,
        ..
    } = stack;
    for svc in [order, inventory, payment] {
        svc.stop().await;
    }
    for name in ["order", "inventory", "payment"] {
        let path = dir.join(format!("{name}.sock"));
        assert!(
            !path.exists(),
            "{} is left behind after shutdown",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = socket_dir("bind");
    let path = dir.join("inventory.sock");
    // What a killed process leaves: the file, and nobody accepting on it.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    assert!(path.exists());

    let db = valerix_testkit::TestDb::new().await;
    let mut config = inventory_service::Config::with_database(&db.url);
    config.http.unix_socket = Some(path.clone());
    let first = valerix_testkit::start_inventory_with(config.clone()).await;
    let health = over(&path);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match health.get("http://localhost/health").send().await {
            Ok(r) if r.status() == StatusCode::OK => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "not serving on the replaced socket: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A second process given the same socket must not steal it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let second = inventory_service::run(config, listener, std::future::pending()).await;
    let err = second
        .expect_err("a socket in use must be refused")
        .to_string();
    assert!(err.contains("in use"), "{err}");
    let (status, _) = json_of(
        health
            .get("http://localhost/health")
            .send()
            .await
            .expect("the first still serves"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    first.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
