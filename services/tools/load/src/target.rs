//! The HTTP calls the load tool makes: orders at `{base}/orders` (the order
//! service, or the gateway's `/api`), and the inventory service for the
//! product list, restocking and the latency gremlin.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use valerix_runtime::Problem;

/// An order as the API shows it; only what the report needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderView {
    pub id: Uuid,
    pub status: String,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    pub fn is_settled(&self) -> bool {
        matches!(self.status.as_str(), "CONFIRMED" | "FAILED")
    }

    /// `CONFIRMED`, `FAILED OUT_OF_STOCK`, `PENDING_INVENTORY`, ...
    pub fn label(&self) -> String {
        match &self.failure_reason {
            Some(r) => format!("{} {r}", self.status),
            None => self.status.clone(),
        }
    }

    /// From creation to the last change: for a settled order, how long it took to settle.
    pub fn settled_after(&self) -> Option<Duration> {
        self.is_settled()
            .then(|| (self.updated_at - self.created_at).to_std().ok())
            .flatten()
    }
}

/// An HTTP answer to `POST /orders`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The order, for a 2xx answer with a readable body.
    pub order: Option<OrderView>,
    /// The problem `type` of an error answer, e.g. `overloaded`.
    pub kind: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `503 overloaded`, `201`, ...
    pub fn code_label(&self) -> String {
        match &self.kind {
            Some(k) if !self.is_success() => format!("{} {k}", self.status),
            _ => self.status.to_string(),
        }
    }

    /// An answer a client may retry with the same Idempotency-Key.
    pub fn is_retryable(&self) -> bool {
        self.status >= 500 || self.status == 429
    }
}

/// No HTTP answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    Other(String),
}

impl Failure {
    pub fn label(&self) -> String {
        match self {
            Self::Timeout => "timeout".to_owned(),
            Self::Connect => "connection refused".to_owned(),
            Self::Other(_) => "transport error".to_owned(),
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect
        } else {
            Self::Other(e.to_string())
        }
    }
}

/// Where orders go.
#[derive(Debug, Clone)]
pub struct OrderTarget {
    http: reqwest::Client,
    base: String,
}

impl OrderTarget {
    /// `base` is the URL whose `/orders` takes orders. The pool keeps as
    /// many idle connections as there may be requests in flight, so a
    /// steady run reuses its connections instead of opening new ones.
    pub fn new(base: &str, timeout: Duration, max_in_flight: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(max_in_flight)
            .pool_idle_timeout(valerix_runtime::client::POOL_IDLE)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn orders_url(&self) -> String {
        format!("{}/orders", self.base)
    }

    /// Whether the target answers at all (`GET {base}/orders?limit=1`; the
    /// gateway keeps that list for the operator, and its 401 is an answer).
    pub async fn check(&self) -> anyhow::Result<()> {
        let url = format!("{}?limit=1", self.orders_url());
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        if !status.is_success() && status != reqwest::StatusCode::UNAUTHORIZED {
            bail!("GET {url} answered {status}");
        }
        Ok(())
    }

    /// `POST {base}/orders`.
    pub async fn place(
        &self,
        product_id: &str,
        quantity: i32,
        key: Option<Uuid>,
    ) -> Result<Answer, Failure> {
        let mut req = self
            .http
            .post(self.orders_url())
            .json(&json!({ "product_id": product_id, "quantity": quantity }));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key.to_string());
        }
        let resp = req.send().await.map_err(|e| Failure::from_reqwest(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| Failure::from_reqwest(&e))?;
        let (order, kind) = if status.is_success() {
            (serde_json::from_slice::<OrderView>(&bytes).ok(), None)
        } else {
            let problem = serde_json::from_slice::<Problem>(&bytes).ok();
            (None, problem.map(|p| p.kind))
        };
        Ok(Answer {
            status: status.as_u16(),
            order,
            kind,
            retry_after,
        })
    }

    /// `GET {base}/orders/{id}`: `None` when there is no such order.
    pub async fn get(&self, id: Uuid) -> Result<Option<OrderView>, Failure> {
        let resp = self
            .http
            .get(format!("{}/{id}", self.orders_url()))
            .send()
            .await
            .map_err(|e| Failure::from_reqwest(&e))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => resp
                .json::<OrderView>()
                .await
                .map(Some)
                .map_err(|e| Failure::Other(e.to_string())),
            s => Err(Failure::Other(format!("answered {s}"))),
        }
    }
}

/// A product as `GET /inventory` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub stock: i32,
    pub reserved: i32,
}

impl Product {
    pub fn available(&self) -> i64 {
        i64::from(self.stock) - i64::from(self.reserved)
    }
}

#[derive(Deserialize)]
struct ProductList {
    products: Vec<Product>,
}

/// The inventory service: products, restocking, the latency gremlin.
#[derive(Debug, Clone)]
pub struct InventoryControl {
    http: reqwest::Client,
    base: String,
}

/// The inventory API refuses stock above this.
const MAX_STOCK: i64 = 100_000_000;

impl InventoryControl {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn products(&self) -> anyhow::Result<Vec<Product>> {
        let url = format!("{}/inventory", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url} answered {}", resp.status());
        }
        let list: ProductList = resp
            .json()
            .await
            .with_context(|| format!("reading GET {url}"))?;
        Ok(list.products)
    }

    /// Raises the stock so at least `need` units are available; returns the
    /// old and new stock when it changed anything.
    pub async fn restock(&self, p: &Product, need: i64) -> anyhow::Result<Option<(i32, i32)>> {
        if p.available() >= need {
            return Ok(None);
        }
        let stock = (i64::from(p.reserved) + need).clamp(i64::from(p.stock), MAX_STOCK);
        let stock = i32::try_from(stock).unwrap_or(i32::MAX);
        let url = format!("{}/inventory/{}", self.base, p.product_id);
        let resp = self
            .http
            .put(&url)
            .json(&json!({ "name": p.name, "price_cents": p.price_cents, "stock": stock }))
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        if !resp.status().is_success() {
            bail!("PUT {url} answered {}", resp.status());
        }
        Ok(Some((p.stock, stock)))
    }

    /// Fails unless the inventory service accepts gremlins.
    pub async fn check_gremlins(&self) -> anyhow::Result<()> {
        let url = format!("{}/gremlin", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::FORBIDDEN => bail!(
                "the inventory service at {} refuses gremlins: start it with --gremlins (valerix up does)",
                self.base
            ),
            s => bail!("GET {url} answered {s}"),
        }
    }

    /// `POST /gremlin/latency {"delay_ms", "enabled"}`.
    pub async fn set_latency(&self, delay_ms: u64, enabled: bool) -> anyhow::Result<()> {
        let url = format!("{}/gremlin/latency", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&json!({ "delay_ms": delay_ms, "enabled": enabled }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !resp.status().is_success() {
            bail!("POST {url} answered {}", resp.status());
        }
        Ok(())
    }
}
