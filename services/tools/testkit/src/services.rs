//! The services in this process, each on its own 127.0.0.1 port over real
//! HTTP, stopped when their handle is dropped.

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use valerix_runtime::client::upstream::Upstream;

use crate::TestDb;

/// Binds 127.0.0.1:0 and returns the socket with its URL.
pub async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = l.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    (l, format!("http://{addr}"))
}

/// A service running inside the test process; stopped when dropped.
pub struct Running {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// An address a test made up or was given (`http://...`, `unix:/...`).
pub fn upstream(address: &str) -> Upstream {
    address
        .parse()
        .unwrap_or_else(|e| panic!("test address {address}: {e}"))
}

impl Running {
    /// Its TCP address, as a service's configuration takes it.
    pub fn upstream(&self) -> Upstream {
        upstream(&self.url)
    }

    /// Stops the service and waits until its socket is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn spawn_service<F, Fut, E>(listener: TcpListener, url: String, run: F) -> Running
where
    F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    // What a service binary's main does first: the process's metrics
    // recorder, before any service code records.
    valerix_runtime::telemetry::prometheus::install();
    let (tx, rx) = oneshot::channel();
    let fut = run(listener, rx);
    let task = tokio::spawn(async move {
        if let Err(e) = fut.await {
            eprintln!("service failed: {e}");
        }
    });
    Running {
        url,
        stop: Some(tx),
        task,
    }
}

pub async fn start_inventory(db: &TestDb, gremlins: bool) -> Running {
    let mut config = inventory_service::Config::with_database(&db.url);
    config.http.gremlins = gremlins;
    start_inventory_with(config).await
}

pub async fn start_inventory_with(config: inventory_service::Config) -> Running {
    let (l, url) = listener().await;
    spawn_service(l, url, |l, rx| async move {
        inventory_service::run(config, l, async move {
            let _ = rx.await;
        })
        .await
    })
}

pub async fn start_payment(db: &TestDb, gremlins: bool) -> Running {
    let mut config = payment_service::Config::with_database(&db.url);
    config.http.gremlins = gremlins;
    start_payment_with(config).await
}

pub async fn start_payment_with(config: payment_service::Config) -> Running {
    let (l, url) = listener().await;
    spawn_service(l, url, |l, rx| async move {
        payment_service::run(config, l, async move {
            let _ = rx.await;
        })
        .await
    })
}

pub async fn start_order(config: order_service::Config) -> Running {
    let (l, url) = listener().await;
    spawn_service(l, url, |l, rx| async move {
        order_service::run(config, l, async move {
            let _ = rx.await;
        })
        .await
    })
}

pub async fn start_gateway(config: api_gateway::Config) -> Running {
    let (l, url) = listener().await;
    spawn_service(l, url, |l, rx| async move {
        api_gateway::run(config, l, async move {
            let _ = rx.await;
        })
        .await
    })
}
