//! Hostile clients at the edge: headers that never finish, idle sockets by
//! the thousand, and a process with few file descriptors. Real processes
//! (`valerix service ...`, `valerix up`), real sockets.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use valerix_testkit::{
    TestDb,
    process::{self, Service, TempDir},
};

/// Starts a request and never finishes its headers.
async fn slow_header(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await?;
    Ok(conn)
}

/// Waits until the server closes `conn` (EOF or reset); how long it took.
async fn closed_by_server(mut conn: TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), conn.read(&mut buf))
            .await
        {
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// This test process opens thousands of sockets.
fn raise_own_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_valerix-under-test"))
}

#[tokio::test]
async fn headers_that_never_finish_are_closed_within_the_header_timeout() {
    let db = TestDb::new().await;
    let mut svc = process::service(exe(), Service::Inventory).args([
        "--database-url",
        &db.url,
        "--header-timeout-ms",
        "500",
    ]);
    svc.start().await.unwrap_or_else(|e| panic!("{e}"));
    let mut waits = Vec::new();
    for _ in 0..20 {
        let conn = slow_header(svc.addr()).await.expect("connect");
        waits.push(tokio::spawn(closed_by_server(
            conn,
            Duration::from_secs(10),
        )));
    }
    for w in waits {
        let took = w
            .await
            .expect("join")
            .expect("closed by the server within 10 s");
        assert!(took < Duration::from_secs(5), "closed after {took:?}");
    }
    // An idle keep-alive connection is closed the same way.
    let mut conn = TcpStream::connect(svc.addr()).await.expect("connect");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let closed = closed_by_server(conn, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "an idle keep-alive connection stays open");
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let db = TestDb::new().await;
    let mut svc = process::service(exe(), Service::Inventory).args([
        "--database-url",
        &db.url,
        "--max-headers",
        "20",
    ]);
    svc.start().await.unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::new();
    let mut many = http.get(format!("{}/health", svc.url()));
    for i in 0..40 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let status = many.send().await.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(431)) || status.is_err(),
        "40 headers over a limit of 20: {status:?}"
    );
    let big = http
        .get(format!("{}/health", svc.url()))
        .header("x-big", "a".repeat(64 * 1024))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(
        matches!(big, Ok(431)) || big.is_err(),
        "a 64 KiB header over the 16 KiB limit: {big:?}"
    );
    let fine = http
        .get(format!("{}/health", svc.url()))
        .send()
        .await
        .expect("a normal request");
    assert!(fine.status().is_success());
}

#[tokio::test]
async fn past_the_connection_cap_with_few_descriptors_the_service_still_serves() {
    raise_own_file_limit();
    let db = TestDb::new().await;
    // The service runs with 64 file descriptors, as a tight systemd unit
    // would give it; it lowers its connection cap to fit.
    let dir = TempDir::new("valerix-ulimit").expect("temp dir");
    let wrapper = dir.path().join("valerix-64-fds");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nulimit -n 64\nexec {} \"$@\"\n", exe().display()),
    )
    .expect("wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut svc = process::service(&wrapper, Service::Inventory).args([
        "--database-url",
        &db.url,
        "--header-timeout-ms",
        "1000",
        "--db-pool-size",
        "4",
    ]);
    svc.start().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        svc.captured().contains("--max-connections lowered to fit"),
        "{}",
        svc.captured()
    );

    // Far more idle sockets than descriptors.
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok(c) = slow_header(svc.addr()).await {
            idle.push(c);
        }
    }
    // The idle ones are closed by the header timeout, those waiting in the
    // backlog are then accepted and closed in turn, and a real client is
    // served: the process never runs out of descriptors or stops.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let health = http
        .get(format!("{}/health", svc.url()))
        .send()
        .await
        .expect("served past the cap");
    assert!(health.status().is_success());
    assert!(svc.exit_status().is_none(), "the service is still running");
    assert!(
        !svc.captured().contains("Too many open files") || svc.exit_status().is_none(),
        "{}",
        svc.captured()
    );
    drop(idle);
}

#[tokio::test]
async fn two_thousand_slow_clients_leave_health_answering_and_are_all_closed() {
    raise_own_file_limit();
    let up = common::Up::start_with(common::free_base_port(), &["--no-observability"]);
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{}", up.base - 1).parse().expect("addr");
    let mut slow = Vec::new();
    for _ in 0..2000 {
        slow.push(slow_header(gateway).await.expect("connect"));
    }
    let opened = Instant::now();
    let http = reqwest::Client::new();
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let start = Instant::now();
        let r = http
            .get(format!("http://{gateway}/health"))
            .send()
            .await
            .expect("health");
        assert!(r.status().is_success());
        worst = worst.max(start.elapsed());
    }
    eprintln!("hostile: /health with 2000 slow-header connections open: worst of 10 {worst:?}");
    // A bound for a busy 2-core CI machine; the figure is printed above.
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    let waits: Vec<_> = slow
        .into_iter()
        .map(|c| tokio::spawn(closed_by_server(c, Duration::from_secs(30))))
        .collect();
    let mut latest = Duration::ZERO;
    for w in waits {
        w.await.expect("join").expect("closed by the server");
        latest = latest.max(opened.elapsed());
    }
    eprintln!("hostile: all 2000 closed by the server {latest:?} after they were opened");
    // The default header timeout is 5 s.
    assert!(latest < Duration::from_secs(15), "{latest:?}");
    assert!(up.interrupt().success());
}

/// Sends the head of a request whose body is 100 bytes, then one byte every
/// 200 ms (slower than the deadline allows); the status line of the answer
/// and how long it took, once the server has closed the connection.
async fn trickle_body(addr: std::net::SocketAddr, path: &str, auth: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(
        format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\
             Content-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .expect("head");
    let (mut read, mut write) = conn.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..98 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(15), read.read_to_end(&mut answer));
    let _ = read_all
        .await
        .expect("the server closes the connection within 15 s");
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    (
        text.lines().next().unwrap_or_default().to_owned(),
        start.elapsed(),
    )
}

/// A body that trickles in is answered 408 once the request timeout is
/// up, by a service and by the gateway in front of it (its upload to the
/// service is the same trickle), and the connection is closed; a handler
/// that takes too long is answered 503 by the same deadline.
#[tokio::test]
async fn a_request_that_overruns_the_request_timeout_is_answered_and_closed() {
    let db = TestDb::new().await;
    let mut inventory = process::service(exe(), Service::Inventory).args([
        "--database-url",
        &db.url,
        "--request-timeout-ms",
        "1000",
        "--gremlins",
    ]);
    inventory.start().await.unwrap_or_else(|e| panic!("{e}"));
    // Restocking through the gateway is the operator's.
    let dir = TempDir::new("valerix-request-timeout").expect("temp dir");
    let token_file = dir.path().join("operator-token");
    std::fs::write(&token_file, "a-long-enough-operator-token-0123456789").expect("token");
    let mut gateway = process::service(exe(), Service::Gateway).args([
        "--inventory-url".to_owned(),
        inventory.url(),
        "--operator-token-file".to_owned(),
        token_file.display().to_string(),
        "--request-timeout-ms".to_owned(),
        "1000".to_owned(),
    ]);
    gateway.start().await.unwrap_or_else(|e| panic!("{e}"));

    let operator = "Authorization: Bearer a-long-enough-operator-token-0123456789\r\n";
    for (who, addr, path, auth) in [
        ("inventory-service", inventory.addr(), "/inventory/P1", ""),
        ("api-gateway", gateway.addr(), "/api/inventory/P1", operator),
    ] {
        let (status, took) = trickle_body(addr, path, auth).await;
        assert!(
            status.contains(" 408 "),
            "{who}: a trickling body got {status:?}"
        );
        // The deadline is 1 s; the trickle would take 20 s.
        assert!(
            took < Duration::from_secs(10),
            "{who}: closed after {took:?}"
        );
    }

    // A handler held up by 3 s of injected latency, past the 1 s deadline.
    let http = reqwest::Client::new();
    let armed = http
        .post(format!("{}/gremlin/latency", inventory.url()))
        .json(&serde_json::json!({"delay_ms": 3000}))
        .send()
        .await
        .expect("arm the latency gremlin");
    assert!(armed.status().is_success(), "{}", armed.status());
    let started = Instant::now();
    let slow = http
        .get(format!("{}/inventory", inventory.url()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(slow.status().as_u16(), 503);
    let problem: serde_json::Value = slow.json().await.expect("problem JSON");
    assert_eq!(problem["type"], "request-timeout", "{problem}");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
}
