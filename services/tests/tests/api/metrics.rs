//! `GET /metrics` on every service: the RED metrics labelled by route
//! template (so random ids never become label values), the SLA gauge and
//! the order domain metrics. In-process, all services share one recorder:
//! the `service` label, set by each service's middleware, tells them apart.

use reqwest::StatusCode;
use uuid::Uuid;
use valerix_testkit::{
    Stack,
    metrics::{Sample, parse, value},
};

use crate::support::*;

async fn scrape(stack: &Stack, url: &str) -> (String, Vec<Sample>) {
    let resp = stack
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.expect("body");
    let samples = parse(&text);
    (text, samples)
}

fn count(samples: &[Sample], service: &str, method: &str, path: &str, status: &str) -> f64 {
    value(
        samples,
        "http_requests_total",
        &[
            ("service", service),
            ("method", method),
            ("path", path),
            ("status_code", status),
        ],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn every_service_exposes_red_metrics_by_route_template() {
    let stack = Stack::start().await;
    stack.product("P1", 100, 5).await;
    let (status, o) = order(&stack, "P1", 1).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    let id = o["id"].as_str().expect("id").to_owned();

    // Ids nobody has seen before: each must fall under its route template.
    let random: Vec<String> = (0..3).map(|_| Uuid::new_v4().to_string()).collect();
    for r in &random {
        let (status, _) = get(&stack, format!("{}/orders/{r}", stack.order.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(&stack, format!("{}/payments/{r}", stack.payment.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(
            &stack,
            format!("{}/inventory/X{}", stack.inventory.url, &r[..8]),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(&stack, format!("{}/no/such/{r}", stack.order.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = get(&stack, format!("{}/orders/{id}", stack.order.url)).await;
    assert_eq!(status, StatusCode::OK);
    // A malformed id is a 400 on the same route, not a new label either.
    let (status, _) = get(&stack, format!("{}/orders/not-a-uuid", stack.order.url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The stock commit follows the answer: wait until the order service
    // counted it (after its call to inventory was recorded).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, s) = scrape(&stack, &stack.order.url).await;
        let committed = value(
            &s,
            "valerix_order_stock_commits_total",
            &[("outcome", "committed")],
        );
        if committed >= Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stock commit counted: {committed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    for url in [&stack.order.url, &stack.inventory.url, &stack.payment.url] {
        let (text, s) = scrape(&stack, url).await;
        for r in random.iter().chain([&id]) {
            assert!(!text.contains(r.as_str()), "{r} is a label value on {url}");
            assert!(!text.contains(&r[..8]), "{r} is a label value on {url}");
        }
        assert!(!text.contains("not-a-uuid"));
        assert!(
            !text.contains("path=\"/metrics\""),
            "scrapes are not counted"
        );

        let o = "order-service";
        assert!(count(&s, o, "GET", "/orders/:id", "404") >= 3.0, "{text}");
        assert!(count(&s, o, "GET", "/orders/:id", "200") >= 1.0);
        assert!(count(&s, o, "GET", "/orders/:id", "400") >= 1.0);
        assert!(count(&s, o, "POST", "/orders", "201") >= 1.0);
        assert!(count(&s, o, "GET", "unmatched", "404") >= 3.0);
        let inv = "inventory-service";
        assert!(count(&s, inv, "GET", "/inventory/:product_id", "404") >= 3.0);
        assert!(count(&s, inv, "POST", "/inventory/reserve", "201") >= 1.0);
        assert!(count(&s, inv, "PUT", "/inventory/:product_id", "201") >= 1.0);
        assert!(count(&s, "payment-service", "GET", "/payments/:id", "404") >= 3.0);

        // A histogram (not a summary), with the 1 s SLA boundary as a bucket.
        let post_orders = [("service", o), ("method", "POST"), ("path", "/orders")];
        for le in ["0.005", "0.5", "1", "2.5", "10", "+Inf"] {
            let mut labels = post_orders.to_vec();
            labels.push(("le", le));
            assert!(
                value(&s, "http_request_duration_seconds_bucket", &labels).is_some(),
                "bucket le={le}"
            );
        }
        assert!(value(&s, "http_request_duration_seconds_count", &post_orders) >= Some(1.0));
        assert!(value(&s, "http_request_duration_seconds_sum", &post_orders) > Some(0.0));
        for svc in [o, inv, "payment-service"] {
            assert!(
                value(&s, "http_requests_in_flight", &[("service", svc)]).is_some(),
                "in-flight gauge of {svc}"
            );
        }

        // The order service's own view of the SLA (its value is checked on a
        // process of its own: here every order service of the test binary
        // writes the one gauge) and its domain metrics.
        assert!(value(&s, "order_service_avg_latency_30s", &[]) >= Some(0.0));
        assert!(
            value(
                &s,
                "valerix_orders_total",
                &[("status", "CONFIRMED"), ("reason", "")]
            ) >= Some(1.0)
        );
        assert!(
            value(
                &s,
                "valerix_orders_total",
                &[("status", "FAILED"), ("reason", "OUT_OF_STOCK")]
            )
            .is_some(),
            "known series exist from the start"
        );
        for action in ["confirmed", "failed", "retried", "error"] {
            assert!(
                value(
                    &s,
                    "valerix_reconciler_actions_total",
                    &[("action", action)]
                )
                .is_some()
            );
        }
        for (downstream, operation) in [
            ("inventory-service", "POST /inventory/reserve"),
            // The commit follows the answer, in batches.
            ("inventory-service", "POST /inventory/commits"),
            ("payment-service", "POST /payments"),
        ] {
            let labels = [
                ("downstream", downstream),
                ("operation", operation),
                ("outcome", "ok"),
            ];
            assert!(
                value(
                    &s,
                    "valerix_downstream_request_duration_seconds_count",
                    &labels
                ) >= Some(1.0),
                "{operation}"
            );
        }
    }
}
