//! The committed OpenAPI specs under `openapi/`, one per service.

use std::path::Path;

/// File name and spec of each service.
pub fn specs() -> Vec<(&'static str, String)> {
    vec![
        ("api-gateway.json", api_gateway::spec()),
        ("order-service.json", order_service::spec()),
        ("inventory-service.json", inventory_service::spec()),
        ("payment-service.json", payment_service::spec()),
    ]
}

pub fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, spec) in specs() {
        std::fs::write(dir.join(name), format!("{spec}\n"))?;
        println!("wrote {}", dir.join(name).display());
    }
    Ok(())
}
