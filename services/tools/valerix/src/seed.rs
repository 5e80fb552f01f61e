//! Demo products for the dev stack, created through the inventory API.

use anyhow::Context;
use valerix_runtime::auth::Token;

/// (id, name, price in cents, stock). PROD-4 is dear on purpose: three of
/// them (15000.00) go over the payment service's default 10000.00 limit, so
/// the decline path can be tried by hand.
pub const PRODUCTS: &[(&str, &str, i64, i32)] = &[
    ("PROD-1", "Widget", 1999, 1000),
    ("PROD-2", "Gadget", 4999, 500),
    ("PROD-3", "Gizmo", 999, 50),
    ("PROD-4", "Grand piano", 500_000, 10),
];

/// Creates the demo products that do not exist yet; never touches existing stock.
pub async fn seed(inventory_url: &str) -> anyhow::Result<Vec<&'static str>> {
    seed_with(inventory_url, None).await
}

/// The same, sending the services' token (`--service-token-file`) when the
/// inventory service requires it for restocking.
pub async fn seed_with(
    inventory_url: &str,
    token: Option<&Token>,
) -> anyhow::Result<Vec<&'static str>> {
    let http = reqwest::Client::new();
    let mut created = Vec::new();
    for (id, name, price, stock) in PRODUCTS {
        let url = format!("{inventory_url}/inventory/{id}");
        let exists = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if exists.status().is_success() {
            continue;
        }
        let mut put = http
            .put(&url)
            .json(&serde_json::json!({ "name": name, "price_cents": price, "stock": stock }));
        if let Some(token) = token {
            put = put.header(reqwest::header::AUTHORIZATION, token.authorization());
        }
        let resp = put.send().await.with_context(|| format!("PUT {url}"))?;
        anyhow::ensure!(resp.status().is_success(), "PUT {url}: {}", resp.status());
        created.push(*id);
    }
    Ok(created)
}
