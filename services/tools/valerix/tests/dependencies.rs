//! The API gateway links no service and no database driver: it routes
//! requests and documents them from the committed specs, nothing more.

use std::process::Command;

#[test]
fn the_gateway_depends_on_no_service_and_no_sqlx() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../..");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["tree", "--offline", "--locked", "-p", "api-gateway"])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"api-gateway"), "{tree}");
    assert!(crates.contains(&"valerix-runtime"), "{tree}");
    for banned in [
        "sqlx",
        "sqlx-core",
        "order-service",
        "inventory-service",
        "payment-service",
    ] {
        assert!(
            !crates.contains(&banned),
            "the gateway depends on {banned} again:\n{tree}"
        );
    }
}
