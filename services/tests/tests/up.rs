//! `valerix up` as a user runs it: a real process that starts PostgreSQL and
//! the services, takes an order, and cleans everything up on Ctrl-C.

mod common;

#[tokio::test]
async fn up_serves_an_order_and_cleans_up_on_interrupt() {
    let up = common::Up::start();
    let base = up.base;
    let gateway_url = up.url(base - 1);
    let printed = &up.printed;
    let listed: Vec<&String> = printed.iter().filter(|l| l.contains("http://")).collect();
    assert!(
        listed
            .first()
            .is_some_and(|l| l.contains("api-gateway") && l.contains(&gateway_url)),
        "the gateway is listed first: {printed:#?}"
    );
    let order_url = up.url(base);
    let http = reqwest::Client::new();
    let via_gateway = http
        .post(format!("{gateway_url}/api/orders"))
        .json(&serde_json::json!({ "product_id": "PROD-2", "quantity": 1 }))
        .send()
        .await
        .expect("order through the gateway");
    assert_eq!(via_gateway.status(), reqwest::StatusCode::CREATED);
    let health: serde_json::Value = http
        .get(format!("{gateway_url}/health"))
        .send()
        .await
        .expect("gateway health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "healthy", "{health}");

    // The printed link carries the operator token: the operator's routes
    // answer with it, and only with it.
    let link = up.operator_link.clone().unwrap_or_default();
    assert!(
        link.starts_with(&format!("{gateway_url}/#token=")),
        "{link}"
    );
    let token = up.operator_token();
    assert_eq!(token.len(), 64, "{link}");
    let orders = |auth: Option<String>| {
        let mut req = http.get(format!("{gateway_url}/api/orders"));
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let resp = orders(None).await.expect("orders");
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    let resp = orders(Some(token)).await.expect("orders");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);

    // The gateway's own probes of the services carry no circuit breaker,
    // so it publishes no breaker gauge that would never move.
    let metrics = http
        .get(format!("{gateway_url}/metrics"))
        .send()
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("valerix_auth_failures_total"), "{metrics}");
    assert!(
        !metrics.contains("valerix_circuit_breaker_state"),
        "{metrics}"
    );
    // The overview's SLA comes from the order service's own JSON endpoint.
    let sla: serde_json::Value = http
        .get(format!("{}/sla", up.url(base)))
        .send()
        .await
        .expect("sla")
        .json()
        .await
        .expect("json");
    assert_eq!(sla["limit"], 1.0, "{sla}");
    assert_eq!(sla["window_seconds"], 30, "{sla}");
    assert!(
        sla["avg_latency_30s"].as_f64().is_some_and(|v| v > 0.0),
        "{sla}"
    );
    let resp = http
        .post(format!("{order_url}/orders"))
        .json(&serde_json::json!({ "product_id": "PROD-1", "quantity": 1 }))
        .send()
        .await
        .expect("order");
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let order: serde_json::Value = resp.json().await.expect("json");
    let id = order["id"].as_str().expect("id");
    let read: serde_json::Value = http
        .get(format!("{order_url}/orders/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(read["status"], "CONFIRMED");

    // Observability: what is installed is started and pointed at the
    // services; what is not is named.
    for tool in ["grafana", "jaeger"] {
        let started = printed.iter().any(|l| l.trim_start().starts_with(tool));
        let skipped = printed
            .iter()
            .any(|l| l.contains("skipped") && l.contains(tool));
        assert!(
            started || skipped,
            "{tool} neither started nor reported skipped: {printed:#?}"
        );
    }
    let has_prometheus = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("prometheus").is_file()));
    if has_prometheus {
        // Prometheus picks up its targets on its own schedule (~5 s).
        let mut healthy = std::collections::BTreeSet::new();
        let start = std::time::Instant::now();
        while healthy.len() < 4 && start.elapsed() < std::time::Duration::from_secs(40) {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let Ok(resp) = http
                .get(format!(
                    "http://127.0.0.1:{}/api/v1/targets",
                    up.prometheus_port
                ))
                .send()
                .await
            else {
                continue;
            };
            let targets: serde_json::Value = resp.json().await.unwrap_or_default();
            healthy = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["health"] == "up")
                .filter_map(|t| t["labels"]["job"].as_str().map(str::to_owned))
                .collect();
        }
        assert_eq!(
            healthy,
            [
                "api-gateway",
                "inventory-service",
                "order-service",
                "payment-service"
            ]
            .map(String::from)
            .into(),
            "Prometheus scrapes all four services"
        );
    } else {
        assert!(
            printed
                .iter()
                .any(|l| l.contains("skipped") && l.contains("prometheus")),
            "{printed:#?}"
        );
        assert!(
            std::env::var("CI").is_err(),
            "CI installs prometheus: it must be used"
        );
    }

    let dir = up
        .cluster_dir
        .clone()
        .expect("the cluster directory was printed");
    let status = up.interrupt();
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} removed", dir.display());
    for port in [base - 1, base] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is free again"
        );
    }
}

/// Every process below `pid`, children first found through /proc.
fn descendants(pid: i32) -> Vec<i32> {
    use valerix_testkit::process::{all_pids, parent_of};
    let all = all_pids();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(all.iter().copied().filter(|&c| parent_of(c) == Some(p)));
        i += 1;
    }
    found.remove(0);
    found
}

#[tokio::test]
async fn a_killed_up_leaves_no_process_or_port_behind_and_the_next_starts_at_once() {
    let up = common::Up::start();
    let base = up.base;
    let children = descendants(up.pid());
    assert!(
        children.len() >= 5,
        "four services and PostgreSQL at least: {children:?}"
    );
    let ports: Vec<u16> = (base - 1..=base + 2).chain([up.prometheus_port]).collect();
    let killed = up.pid();

    up.kill9();
    let start = std::time::Instant::now();
    loop {
        let alive: Vec<i32> = children
            .iter()
            .copied()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .filter(|p| {
                // A zombie has exited; only its parent's wait is missing.
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
                })
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "still running 30 s after valerix up was killed: {alive:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for port in &ports {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok(),
            "port {port} is free again"
        );
    }

    // The same ports at once: nothing stale blocks it.
    let again = common::Up::start_on(base);
    let health = reqwest::get(format!("{}/health", again.url(base - 1)))
        .await
        .expect("gateway health");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    // What the killed run could not remove, the next one did: its state
    // directory and its services' notify sockets.
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n == &format!("valerix-up-{killed}")
                || n.starts_with(&format!("valerix-notify-{killed}-"))
        })
        .collect();
    assert!(left.is_empty(), "left behind by the killed run: {left:?}");
    assert!(again.interrupt().success());
}

/// Crash after commit on every 3rd inventory request, re-armed each time
/// inventory comes back (gremlins live in memory).
async fn arm_crash(http: &reqwest::Client, inventory: &str) -> bool {
    http.post(format!("{inventory}/gremlin/crash"))
        .json(&serde_json::json!({ "enabled": true, "every_nth": 3 }))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn a_crashing_inventory_is_restarted_and_every_order_settles_by_itself() {
    let mut up = common::Up::start();
    let (gateway, order, inventory) = (up.url(up.base - 1), up.url(up.base), up.url(up.base + 1));
    let database = up
        .printed
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("database"))
        .map(|u| u.trim().to_owned())
        .expect("the database URL is printed");
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    assert!(arm_crash(&http, &inventory).await);

    // Counts exits and restarts from what `valerix up` prints, and arms the
    // gremlin again whenever inventory is back.
    let (mut exits, mut restarts) = (0, 0);
    let arming = std::cell::Cell::new(true);
    let mut follow = async |up: &mut common::Up| {
        let lines = up.new_lines();
        exits += lines
            .iter()
            .filter(|l| l.contains("inventory-service exited"))
            .count();
        let back = lines
            .iter()
            .filter(|l| l.contains("inventory-service restarted"))
            .count();
        restarts += back;
        if back > 0 && arming.get() {
            let start = std::time::Instant::now();
            while !arm_crash(&http, &inventory).await {
                assert!(start.elapsed() < std::time::Duration::from_secs(30));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        (exits, restarts)
    };
    let mut ids = Vec::new();
    for _ in 0..50 {
        let resp = http
            .post(format!("{gateway}/api/orders"))
            .json(&serde_json::json!({ "product_id": "PROD-1", "quantity": 1 }))
            .send()
            .await
            .expect("the gateway stays up");
        assert!(resp.status().is_success(), "{}", resp.status());
        let body: serde_json::Value = resp.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
        follow(&mut up).await;
    }
    // The reconciler's retries of the pending orders keep hitting the
    // gremlin: a few more crashes, each followed by a restart.
    let start = std::time::Instant::now();
    while follow(&mut up).await.1 < 5 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "inventory was restarted {restarts} times in 90 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // No more crashes: a process that is down now (the DELETE then fails)
    // comes back without the gremlin, and nothing arms it again. A crash
    // may still be printed before its restart (the restart delay): every
    // one must be followed by a restart within a deadline.
    arming.set(false);
    let _ = http.delete(format!("{inventory}/gremlin")).send().await;
    let start = std::time::Instant::now();
    loop {
        let (exits, restarts) = follow(&mut up).await;
        if exits == restarts {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "inventory exited {exits} times but was restarted {restarts} times"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Every order settles by itself (the reconciler), none is lost.
    let start = std::time::Instant::now();
    loop {
        let mut unsettled = 0;
        for id in &ids {
            let o: serde_json::Value = http
                .get(format!("{order}/orders/{id}"))
                .send()
                .await
                .expect("read")
                .json()
                .await
                .expect("json");
            if !matches!(o["status"].as_str(), Some("CONFIRMED" | "FAILED")) {
                unsettled += 1;
            }
        }
        if unsettled == 0 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{unsettled} of {} orders unsettled after 120 s",
            ids.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // The dashboard's view: the gateway saw inventory come back as new
    // processes (at most as often as it was restarted: two restarts within
    // one of its probes count once), the others never left; the chart drew
    // the orders as they settled.
    let get = async |path: &str| -> serde_json::Value {
        http.get(format!("{gateway}{path}"))
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("json")
    };
    let overview = get("/api/overview").await;
    let seen = overview["processes"]["inventory-service"]["restarts"]
        .as_u64()
        .expect("inventory's restarts");
    assert!(
        (1..=restarts as u64).contains(&seen),
        "the gateway saw {seen} of {restarts} restarts: {overview}"
    );
    assert!(overview["processes"]["inventory-service"]["last_restart"].is_string());
    for service in ["order-service", "payment-service"] {
        assert_eq!(overview["processes"][service]["restarts"], 0, "{overview}");
    }
    let activity = get("/api/activity").await;
    let points = activity["points"].as_array().expect("points");
    let most = |figure: &str| {
        points
            .iter()
            .filter_map(|p| p[figure].as_f64())
            .fold(0.0, f64::max)
    };
    assert!(most("confirmed") > 0.0, "{activity}");
    assert!(most("p99") > 0.0, "{activity}");

    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
        .args(["audit", "--database-url", &database])
        .output()
        .expect("valerix audit");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    assert!(up.interrupt().success(), "Ctrl-C still stops it cleanly");
}
