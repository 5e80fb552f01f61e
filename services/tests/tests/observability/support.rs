use std::path::{Path, PathBuf};

use valerix_stack::Stack;
use valerix_testkit::process::{self, Service, ServiceProcess};

/// The CLI binary; `valerix service <name>` runs one service.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_valerix-under-test"))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The three services as processes on one database (and the API gateway
/// in front, when asked for).
pub struct ProcStack {
    stack: Stack,
    pub http: reqwest::Client,
}

impl ProcStack {
    /// `env` goes to every service; `inventory_args` and `order_args` to one.
    pub async fn start(
        db_url: &str,
        env: &[(&str, &str)],
        inventory_args: &[&str],
        order_args: &[&str],
    ) -> Self {
        Self::start_with(db_url, env, inventory_args, order_args, false).await
    }

    /// The same with the API gateway in front.
    pub async fn start_with_gateway(db_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(db_url, env, &[], &[], true).await
    }

    async fn start_with(
        db_url: &str,
        env: &[(&str, &str)],
        inventory_args: &[&str],
        order_args: &[&str],
        gateway: bool,
    ) -> Self {
        let stack = env
            .iter()
            .fold(process::stack(exe()), |b, (k, v)| b.env(k, v))
            .with(Service::Inventory, 1)
            .with(Service::Payment, 1)
            .with(Service::Order, 1)
            .with(Service::Gateway, usize::from(gateway))
            .database(db_url)
            .args(Service::Inventory, inventory_args.iter().copied())
            .args(Service::Order, ["--reconcile-interval-ms", "200"])
            .args(Service::Order, order_args.iter().copied())
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting the stack: {e}"));
        Self {
            stack,
            http: reqwest::Client::new(),
        }
    }

    pub fn inventory(&self) -> &ServiceProcess {
        self.stack.get(Service::Inventory)
    }

    pub fn payment(&self) -> &ServiceProcess {
        self.stack.get(Service::Payment)
    }

    pub fn order_service(&self) -> &ServiceProcess {
        self.stack.get(Service::Order)
    }

    pub fn gateway(&self) -> &ServiceProcess {
        self.stack.get(Service::Gateway)
    }

    pub async fn product(&self, id: &str, price_cents: i64, stock: i32) {
        let resp = self
            .http
            .put(format!("{}/inventory/{id}", self.inventory().url()))
            .json(&serde_json::json!({ "name": id, "price_cents": price_cents, "stock": stock }))
            .send()
            .await
            .expect("create product");
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    /// POST /orders; the status and the order.
    pub async fn order(&self, product: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/orders", self.order_service().url()))
            .json(&serde_json::json!({ "product_id": product, "quantity": 1 }))
            .send()
            .await
            .expect("order");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }
}
