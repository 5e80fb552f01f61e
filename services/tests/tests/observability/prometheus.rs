//! A real Prometheus (Debian's `prometheus`, run by hand) scrapes the three
//! service processes every second and evaluates grafana/prometheus's rules:
//! slow orders (the contract's 3 s latency gremlin on inventory) fire
//! OrderServiceSLABreach, lifting the gremlin resolves it, and every PromQL
//! expression of the dashboard, the Grafana alert and the rules evaluates
//! against what the services exported.

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use valerix_testkit::{
    TestDb, eventually,
    metrics::{parse, value},
    process::{TempDir, require_tool},
};

use crate::support::{ProcStack, repo_root};

const SLA_ALERT: &str = "OrderServiceSLABreach";

struct Prometheus {
    url: String,
    http: reqwest::Client,
    _child: Child,
    _dir: TempDir,
}

impl Prometheus {
    async fn start(bin: &Path, jobs: &[(&str, SocketAddr)]) -> Self {
        let dir = TempDir::new("valerix-prometheus").expect("temp dir");
        let rules = repo_root().join("grafana/prometheus/valerix-rules.yml");
        let scrape: Vec<Value> = jobs
            .iter()
            .map(|(job, addr)| {
                json!({ "job_name": job, "static_configs": [{ "targets": [addr.to_string()] }] })
            })
            .collect();
        // JSON is YAML: no YAML writer needed.
        let config = json!({
            "global": { "scrape_interval": "1s", "evaluation_interval": "1s" },
            "rule_files": [rules],
            "scrape_configs": scrape,
        });
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config.to_string()).expect("write config");
        let http = reqwest::Client::new();
        // Prometheus cannot report a port-0 choice back: take a free port and
        // try again should it be gone by the time Prometheus binds it.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = Command::new(bin)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start prometheus");
            let url = format!("http://127.0.0.1:{port}");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
                    && r.status().is_success()
                {
                    return Self {
                        url,
                        http,
                        _child: child,
                        _dir: dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("prometheus did not become ready");
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query)
            .expect("url");
        let v: Value = self
            .http
            .get(url)
            .send()
            .await
            .expect("prometheus api")
            .json()
            .await
            .expect("prometheus json");
        v
    }

    /// An instant query: the result vector, or Prometheus' error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api("query", &[("query", expr)]).await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The state of an alert in /api/v1/alerts (firing, pending), if listed.
    async fn alert(&self, name: &str) -> Option<String> {
        let v = self.api("alerts", &[]).await;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str().map(str::to_owned))
    }

    /// The state of an alerting rule in /api/v1/rules (inactive, pending, firing).
    async fn rule_state(&self, name: &str) -> Option<String> {
        let v = self.api("rules", &[]).await;
        v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
            .and_then(|r| r["state"].as_str().map(str::to_owned))
    }
}

/// Every PromQL expression under grafana/, as check-promql.py lists them.
fn grafana_expressions(python: &Path) -> Vec<(String, String)> {
    let out = std::process::Command::new(python)
        .arg(repo_root().join("grafana/check-promql.py"))
        .output()
        .expect("run check-promql.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            let s = |k: &str| v[k].as_str().expect(k).to_owned();
            (s("source"), s("expr"))
        })
        .collect()
}

/// Expressions that may rightly be empty after this test's load: no 5xx
/// answers were given, and the alert rules only return series while firing.
fn may_be_empty(source: &str) -> bool {
    source.contains("Error ratio (5xx)") || source.starts_with("grafana/prometheus/")
}

#[tokio::test]
#[ignore = "needs prometheus (Debian: prometheus); run with --include-ignored"]
async fn prometheus_fires_and_resolves_the_sla_alert_and_every_dashboard_query_has_data() {
    let prometheus = require_tool("prometheus", "Debian: apt-get install prometheus");
    let db = TestDb::new().await;
    let stack = ProcStack::start(&db.url, &[], &["--gremlins"], &[]).await;
    stack.product("P1", 100, 1000).await;
    let prom = Prometheus::start(
        &prometheus,
        &[
            ("order-service", stack.order_service().addr()),
            ("inventory-service", stack.inventory().addr()),
            ("payment-service", stack.payment().addr()),
        ],
    )
    .await;
    // Prometheus 2.x applies new scrape targets on a 5 s tick: most of this
    // test's set-up time is this wait.
    eventually("every target scraped", Duration::from_secs(15), || async {
        let v = prom.api("targets", &[]).await;
        let targets = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (targets.len() == 3 && targets.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;

    // Fast orders first: rate() needs the series to exist before the slow
    // requests land in it.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, o) = stack.order("P1").await;
        assert_eq!(status, 201, "{o}");
        ids.push(o["id"].as_str().expect("id").to_owned());
    }
    eventually("Prometheus to hold the fast orders", Duration::from_secs(15), || async {
        let r = prom
            .query(r#"http_request_duration_seconds_count{service="order-service",method="POST",path="/orders"} >= 2"#)
            .await
            .ok()?;
        (!r.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        prom.rule_state(SLA_ALERT).await.as_deref(),
        Some("inactive")
    );

    // The contract's gremlin: inventory answers after 3 s, past the 2 s call
    // timeout, so each order waits out two attempts and answers 202.
    let resp = stack
        .http
        .post(format!("{}/gremlin/latency", stack.inventory().url()))
        .json(&json!({ "delay_ms": 3000, "enabled": true }))
        .send()
        .await
        .expect("gremlin");
    assert!(resp.status().is_success());
    let slow_start = Instant::now();
    let (a, b) = tokio::join!(stack.order("P1"), stack.order("P1"));
    let slow_took = slow_start.elapsed();
    for (status, o) in [a, b] {
        assert_eq!(status, 202, "{o}");
        assert_eq!(o["status"], "PENDING_INVENTORY");
    }
    // A dashboard polling the order list and health (50 fast reads) must
    // not hide the breach: the SLA is over placing orders only.
    for i in 0..50 {
        let path = match i % 3 {
            0 => "/orders?limit=20".to_owned(),
            1 => format!("/orders/{}", ids[0]),
            _ => "/health".to_owned(),
        };
        let resp = stack
            .http
            .get(format!("{}{path}", stack.order_service().url()))
            .send()
            .await
            .expect("read");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    // The order service's own gauge sees it too.
    let own = stack
        .http
        .get(format!("{}/metrics", stack.order_service().url()))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let gauge = value(&parse(&own), "order_service_avg_latency_30s", &[]).expect("gauge");
    assert!(gauge > 1.0, "order_service_avg_latency_30s = {gauge}");

    let fired_after = eventually(
        &format!("{SLA_ALERT} to fire"),
        Duration::from_secs(20),
        || async {
            (prom.alert(SLA_ALERT).await.as_deref() == Some("firing")).then(|| slow_start.elapsed())
        },
    )
    .await;
    let firing = prom.api("alerts", &[]).await;
    let alert = firing["data"]["alerts"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|a| a["labels"]["alertname"] == SLA_ALERT)
                .cloned()
        })
        .expect("listed");
    assert_eq!(alert["labels"]["severity"], "critical");
    // The domain metrics tell the same story: a backlog, and a reconciler
    // that keeps retrying it.
    for expr in [
        r#"max(valerix_orders_pending{status="PENDING_INVENTORY"}) >= 1"#,
        r#"valerix_reconciler_actions_total{action="retried"} >= 1"#,
        r#"sum(valerix_downstream_request_duration_seconds_count{downstream="inventory-service",outcome="timeout"}) >= 4"#,
    ] {
        eventually(expr, Duration::from_secs(10), || async {
            (!prom.query(expr).await.ok()?.is_empty()).then_some(())
        })
        .await;
    }

    // Lift the gremlin; ordinary fast traffic brings the 30 s mean down.
    let resp = stack
        .http
        .delete(format!("{}/gremlin", stack.inventory().url()))
        .send()
        .await
        .expect("clear gremlin");
    assert!(resp.status().is_success());
    let lifted = Instant::now();
    let load = tokio::spawn({
        let (http, url) = (
            stack.http.clone(),
            format!("{}/orders/{}", stack.order_service().url(), ids[0]),
        );
        async move {
            loop {
                let _ = http.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let resolved_after = eventually(
        &format!("{SLA_ALERT} to resolve"),
        Duration::from_secs(45),
        || async {
            let state = prom.rule_state(SLA_ALERT).await;
            (state.as_deref() == Some("inactive") && prom.alert(SLA_ALERT).await.is_none())
                .then(|| lifted.elapsed())
        },
    )
    .await;
    eprintln!(
        "SLA alert: slow orders took {slow_took:.1?}; firing {fired_after:.1?} after they started \
         ({:.1?} after they answered); resolved {resolved_after:.1?} after the gremlin was lifted",
        fired_after.saturating_sub(slow_took)
    );

    load.abort();

    // Every expression of the dashboard, the Grafana alert and the rules.
    let python = require_tool("python3", "Debian: apt-get install python3");
    let exprs = grafana_expressions(&python);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut failures = Vec::new();
    for (source, expr) in &exprs {
        match prom.query(expr).await {
            Err(err) => failures.push(format!("{source}: rejected: {err}\n  {expr}")),
            Ok(r) if r.is_empty() && !may_be_empty(source) => {
                failures.push(format!("{source}: no data\n  {expr}"));
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
