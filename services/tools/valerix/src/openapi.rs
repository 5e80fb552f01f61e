//! The committed OpenAPI specs under `openapi/`, one per service.

use std::path::Path;

/// File name and spec of each service. The gateway's is made from the
/// services' as generated now (the gateway binary embeds the committed
/// ones: equal when `openapi/` is current).
pub fn specs() -> Vec<(&'static str, String)> {
    let (order, inventory, payment) = (
        order_service::spec(),
        inventory_service::spec(),
        payment_service::spec(),
    );
    let gateway = api_gateway::spec_from(&api_gateway::ServiceSpecs {
        order: &order,
        inventory: &inventory,
        payment: &payment,
    })
    .unwrap_or_else(|err| panic!("{err}"));
    vec![
        ("api-gateway.json", gateway),
        ("order-service.json", order),
        ("inventory-service.json", inventory),
        ("payment-service.json", payment),
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
