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
