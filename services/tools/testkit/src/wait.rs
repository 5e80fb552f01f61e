//! Waiting on a condition with a deadline (never a sleep as
//! synchronisation), and addresses that fail in known ways.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

use crate::services::listener;

/// Waits until `GET {url}/health` answers 200.
pub async fn wait_healthy(http: &reqwest::Client, url: &str, deadline: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "{url} not healthy within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `GET {url}/health` answers at all.
pub async fn wait_answering(http: &reqwest::Client, url: &str, deadline: Duration) {
    let start = Instant::now();
    while http.get(format!("{url}/health")).send().await.is_err() {
        assert!(
            start.elapsed() < deadline,
            "{url} not answering within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns Some, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A socket that accepts connections and never answers: a downstream that hangs.
pub async fn black_hole() -> (String, JoinHandle<()>) {
    let (l, url) = listener().await;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    (url, task)
}

/// An address nothing listens on: a downstream that is down.
pub async fn dead_address() -> String {
    let (l, url) = listener().await;
    drop(l);
    url
}

pub fn addr_of(url: &str) -> Option<SocketAddr> {
    url.strip_prefix("http://")?.parse().ok()
}
