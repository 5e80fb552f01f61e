//! The committed specs under `openapi/` are the ones the code generates, and
//! every operation in them is fully described.

use std::path::PathBuf;

use serde_json::Value;

const REGENERATE: &str = "cargo run -p valerix -- openapi --out openapi";

fn committed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi")
}

// The services build their API objects (with a lazy pool) inside Tokio.
#[tokio::test]
async fn committed_specs_are_current() {
    let dir = committed_dir();
    let mut stale = Vec::new();
    for (name, spec) in valerix::openapi::specs() {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == format!("{spec}\n") => {}
            Ok(_) => stale.push(format!("{name} differs from the generated spec")),
            Err(err) => stale.push(format!("{name} cannot be read ({err})")),
        }
    }
    assert!(
        stale.is_empty(),
        "openapi/ is out of date:\n  {}\nregenerate from the repository root with:\n  {REGENERATE}\nand commit the result.",
        stale.join("\n  ")
    );
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

#[tokio::test]
async fn every_operation_is_fully_described() {
    let mut gaps = Vec::new();
    for (name, spec) in valerix::openapi::specs() {
        let spec: Value = serde_json::from_str(&spec).expect("a JSON spec");
        let paths = spec["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let at = format!("{name} {} {path}", method.to_uppercase());
                if op["tags"].as_array().is_none_or(|t| t.is_empty()) {
                    gaps.push(format!("{at}: no tag"));
                }
                if op["summary"].as_str().is_none_or(str::is_empty) {
                    gaps.push(format!("{at}: no summary"));
                }
                let responses = op["responses"].as_object().expect("responses");
                for (status, response) in responses {
                    let content = response["content"].as_object();
                    let first = status.as_bytes()[0];
                    if path.ends_with("/health") {
                        continue;
                    }
                    if first == b'4' || first == b'5' {
                        let problem = content.and_then(|c| c.get("application/problem+json"));
                        if problem
                            .is_none_or(|p| p["schema"]["$ref"] != "#/components/schemas/Problem")
                        {
                            gaps.push(format!("{at}: {status} is not a Problem"));
                        }
                    } else if content.is_none_or(|c| c.is_empty()) {
                        gaps.push(format!("{at}: {status} has no body schema"));
                    }
                }
                // Reports rather than fails: health answers 503 in its own
                // format, the overview always 200 (what does not answer shows
                // as down in it), the SLA and the chart are figures kept in
                // memory.
                let reports = path.ends_with("/health")
                    || ["/api/overview", "/api/activity", "/sla"].contains(&path.as_str());
                if !responses.keys().any(|s| s.starts_with('5')) && !reports {
                    gaps.push(format!("{at}: no server error documented"));
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        if !responses.contains_key(status) {
                            gaps.push(format!("{at}: takes a body but does not document {status}"));
                        }
                    }
                }
                let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
                if has_params && !responses.contains_key("400") {
                    gaps.push(format!("{at}: has parameters but does not document 400"));
                }
            }
        }
    }
    assert!(
        gaps.is_empty(),
        "incompletely described operations:\n  {}",
        gaps.join("\n  ")
    );
}
