//! The gateway's OpenAPI document: its own operations, and the services'
//! operations it routes (`routes::OPERATIONS`), taken from the services'
//! committed specs under `openapi/` and moved under the gateway's prefixes,
//! with the gateway's own answers added (502, 504; 401 and the bearer scheme
//! on the operator's). The services are not compiled into the gateway: their
//! specs are data, and `valerix openapi` regenerates this one from theirs.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::routes::{Access, OPERATIONS, Operation, ROUTED, Service, gateway_path};

/// The name of the operator's bearer scheme in the spec.
pub const OPERATOR_SCHEME: &str = "operatorToken";

/// The three services' specs (JSON).
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpecs<'a> {
    pub order: &'a str,
    pub inventory: &'a str,
    pub payment: &'a str,
}

/// The committed specs, as the gateway binary serves them.
pub const COMMITTED: ServiceSpecs<'static> = ServiceSpecs {
    order: include_str!("../../../openapi/order-service.json"),
    inventory: include_str!("../../../openapi/inventory-service.json"),
    payment: include_str!("../../../openapi/payment-service.json"),
};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the {service} spec is not JSON: {source}")]
    Json {
        service: &'static str,
        source: serde_json::Error,
    },
    #[error("the {service} spec has no {method} {path}, which the gateway routes")]
    MissingOperation {
        service: &'static str,
        method: &'static str,
        path: &'static str,
    },
    #[error("two specs define different schemas named {0}")]
    SchemaClash(String),
    #[error("{0} refers to a schema no spec defines")]
    DanglingRef(String),
}

impl ServiceSpecs<'_> {
    fn parse(&self, service: Service) -> Result<Value, SpecError> {
        let text = match service {
            Service::Order => self.order,
            Service::Inventory => self.inventory,
            Service::Payment => self.payment,
            Service::Gateway => unreachable!("no route leads to the gateway (routes::tests)"),
        };
        serde_json::from_str(text).map_err(|source| SpecError::Json {
            service: service.name(),
            source,
        })
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/problem+json": {
                "schema": { "$ref": "#/components/schemas/Problem" }
            }
        }
    })
}

/// The 401 of an operation that takes the operator token.
fn unauthorized() -> Value {
    let mut answer = problem(
        "No operator token, or a wrong one (`unauthorized`): send \
         `Authorization: Bearer <operator token>`.",
    );
    answer["headers"] = json!({
        "WWW-Authenticate": {
            "description": "`Bearer realm=\"valerix\"`",
            "required": true,
            "schema": { "type": "string" }
        }
    });
    answer
}

/// A service's operation as the gateway offers it.
fn routed(mut operation: Value, op: &Operation) -> Value {
    let responses = &mut operation["responses"];
    responses["502"] = problem("The service is unreachable (`upstream-unreachable`).");
    responses["504"] =
        problem("The service did not answer within the gateway's timeout (`upstream-timeout`).");
    if op.access == Access::Operator {
        responses["401"] = unauthorized();
        operation["security"] = json!([{ OPERATOR_SCHEME: [] }]);
    }
    operation
}

/// Every `$ref` to a schema under `value`.
fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            out.insert(name.to_owned());
                        }
                    }
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The gateway's spec: `own` (its own operations, from poem-openapi) and
/// the routed operations from `services`.
pub fn compose(own: &str, services: &ServiceSpecs) -> Result<String, SpecError> {
    let mut doc: Value = serde_json::from_str(own).map_err(|source| SpecError::Json {
        service: crate::NAME,
        source,
    })?;
    let specs = ROUTED
        .iter()
        .map(|&s| services.parse(s).map(|spec| (s, spec)));
    let mut schemas: Map<String, Value> = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut tags: Vec<Value> = doc["tags"].as_array().cloned().unwrap_or_default();
    let mut wanted = BTreeSet::new();
    for spec in specs {
        let (service, spec) = spec?;
        for op in OPERATIONS.iter().filter(|o| o.service == service) {
            let method = op.method.to_ascii_lowercase();
            let operation = spec["paths"][op.path].get(&method).cloned().ok_or(
                SpecError::MissingOperation {
                    service: service.name(),
                    method: op.method,
                    path: op.path,
                },
            )?;
            refs(&operation, &mut wanted);
            for tag in operation["tags"].as_array().into_iter().flatten() {
                if tags.iter().any(|t| t["name"] == *tag) {
                    continue;
                }
                let mut theirs = spec["tags"].as_array().into_iter().flatten();
                if let Some(t) = theirs.find(|t| t["name"] == *tag) {
                    tags.push(t.clone());
                }
            }
            let path = gateway_path(service, op.path).unwrap_or_else(|| op.path.to_owned());
            doc["paths"][path.as_str()][method] = routed(operation, op);
        }
        // The schemas the routed operations use, and the ones those use.
        let theirs = spec["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut todo: Vec<String> = wanted.iter().cloned().collect();
        while let Some(name) = todo.pop() {
            let Some(schema) = theirs.get(&name) else {
                continue;
            };
            match schemas.get(&name) {
                Some(ours) if ours != schema => return Err(SpecError::SchemaClash(name)),
                Some(_) => {}
                None => {
                    schemas.insert(name.clone(), schema.clone());
                    let mut more = BTreeSet::new();
                    refs(schema, &mut more);
                    wanted.extend(more.iter().cloned());
                    todo.extend(more);
                }
            }
        }
    }
    wanted.insert("Problem".to_owned());
    if let Some(name) = wanted.iter().find(|n| !schemas.contains_key(*n)) {
        return Err(SpecError::DanglingRef(name.clone()));
    }
    tags.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    doc["tags"] = Value::Array(tags);
    doc["components"]["schemas"] = Value::Object(schemas);
    doc["components"]["securitySchemes"] = json!({
        OPERATOR_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "The operator token: the file given to the gateway with \
                --operator-token-file (`valerix up` prints a dashboard link carrying it)."
        }
    });
    // The overview takes the token optionally: without it, the public part.
    if let Some(overview) = doc["paths"]["/api/overview"].get_mut("get") {
        overview["security"] = json!([{}, { OPERATOR_SCHEME: [] }]);
    }
    Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        let own = r#"{"openapi":"3.0.0","paths":{"/api/overview":{"get":{"responses":{}}}},
                      "components":{"schemas":{}}}"#;
        let composed = compose(own, &COMMITTED).expect("composes");
        serde_json::from_str(&composed).expect("json")
    }

    #[test]
    fn the_spec_has_the_routed_operations_only_with_the_operators_secured() {
        let spec = spec();
        let paths = spec["paths"].as_object().expect("paths");
        let mut documented: Vec<String> = paths
            .iter()
            .flat_map(|(p, item)| {
                item.as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .map(move |m| format!("{} {p}", m.to_uppercase()))
            })
            .collect();
        documented.sort();
        assert_eq!(documented.len(), OPERATIONS.len() + 1, "{documented:#?}");
        for gone in [
            "/api/inventory/reserve",
            "/api/inventory/commit",
            "/api/inventory/commits",
            "/api/inventory/reservations/held",
            "/api/inventory/release",
            "/api/payments/refund",
            "/api/payments/void",
        ] {
            assert!(!paths.contains_key(gone), "{gone}");
        }
        assert!(paths["/api/payments"].get("post").is_none(), "charge");
        let put = &paths["/api/inventory/{product_id}"]["put"];
        assert_eq!(put["security"], json!([{ OPERATOR_SCHEME: [] }]));
        assert!(put["responses"]["401"].is_object());
        let place = &paths["/api/orders"]["post"];
        assert!(place.get("security").is_none());
        for status in ["201", "202", "400", "502", "504"] {
            assert!(place["responses"].get(status).is_some(), "{status}");
        }
        assert!(paths.contains_key("/api/gremlin/payment/crash"));
        assert_eq!(
            spec["components"]["securitySchemes"][OPERATOR_SCHEME]["scheme"],
            "bearer"
        );
        let mut used = BTreeSet::new();
        refs(&spec["paths"], &mut used);
        let schemas = spec["components"]["schemas"].as_object().expect("schemas");
        assert!(used.iter().all(|s| schemas.contains_key(s)), "{used:?}");
    }

    #[test]
    fn an_operation_missing_from_a_services_spec_is_an_error() {
        let empty = r#"{"paths":{},"components":{"schemas":{}}}"#;
        let specs = ServiceSpecs {
            order: empty,
            ..COMMITTED
        };
        assert!(matches!(
            compose(r#"{"paths":{}}"#, &specs),
            Err(SpecError::MissingOperation { .. })
        ));
    }
}
