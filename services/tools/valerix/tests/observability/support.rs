use std::path::{Path, PathBuf};

use valerix_testkit::process::ServiceProcess;

/// The CLI binary; `valerix service <name>` runs one service.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_valerix"))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// The three services as processes on one database.
pub struct ProcStack {
    pub inventory: ServiceProcess,
    pub payment: ServiceProcess,
    pub order: ServiceProcess,
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
        let db = ["--database-url", db_url];
        let inv_args: Vec<&str> = db.iter().chain(inventory_args).copied().collect();
        let (inventory, payment) = tokio::join!(
            ServiceProcess::start(exe(), "inventory", &inv_args, env),
            ServiceProcess::start(exe(), "payment", &db, env),
        );
        let mut args = vec![
            "--inventory-url",
            &inventory.url,
            "--payment-url",
            &payment.url,
            "--reconcile-interval-ms",
            "200",
        ];
        args.extend(db);
        args.extend(order_args);
        let order = ServiceProcess::start(exe(), "order", &args, env).await;
        Self {
            inventory,
            payment,
            order,
            http: reqwest::Client::new(),
        }
    }

    pub async fn product(&self, id: &str, price_cents: i64, stock: i32) {
        let resp = self
            .http
            .put(format!("{}/inventory/{id}", self.inventory.url))
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
            .post(format!("{}/orders", self.order.url))
            .json(&serde_json::json!({ "product_id": product, "quantity": 1 }))
            .send()
            .await
            .expect("order");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }
}
