//! `valerix up` as a user runs it: a real process that starts PostgreSQL and
//! the services, takes an order, and cleans everything up on Ctrl-C.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

fn free_base_port() -> u16 {
    // Three consecutive free ports, the first from the kernel.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = l.local_addr().expect("addr").port();
        if base < 60000
            && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

#[tokio::test]
async fn up_serves_an_order_and_cleans_up_on_interrupt() {
    let base = free_base_port();
    let prometheus_port = free_base_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_valerix"))
        .args(["up", "--base-port", &base.to_string()])
        .args(["--prometheus-port", &prometheus_port.to_string()])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn valerix up");
    // A failing assertion must not leave the stack running.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGINT);
        }
    }
    let _guard = KillOnDrop(child.id());
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let mut cluster_dir = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("valerix up did not come up; printed: {printed:#?}"));
        if let Some(rest) = line.strip_prefix("PostgreSQL: throwaway cluster in ") {
            cluster_dir = rest.split(" on port").next().map(std::path::PathBuf::from);
        }
        let done = line.starts_with("Ctrl-C stops everything");
        printed.push(line);
        if done {
            break;
        }
    }
    let order_url = format!("http://127.0.0.1:{base}");
    let http = reqwest::Client::new();
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
        let mut jobs = std::collections::BTreeSet::new();
        let start = std::time::Instant::now();
        while jobs.len() < 3 && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Ok(resp) = http
                .get(format!("http://127.0.0.1:{prometheus_port}/api/v1/targets"))
                .send()
                .await
            else {
                continue;
            };
            let targets: serde_json::Value = resp.json().await.unwrap_or_default();
            jobs = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["labels"]["job"].as_str().map(str::to_owned))
                .collect();
        }
        assert_eq!(
            jobs,
            ["inventory-service", "order-service", "payment-service"]
                .map(String::from)
                .into(),
            "Prometheus scrapes the three services"
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

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("interrupt");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("valerix up stops after Ctrl-C")
        .expect("wait");
    assert!(status.success(), "{status}");
    let dir = cluster_dir.expect("the cluster directory was printed");
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", base)).is_ok(),
        "the order service's port is free again"
    );
}
