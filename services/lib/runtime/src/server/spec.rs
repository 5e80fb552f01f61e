//! The OpenAPI documents as served (`/openapi.json`, `/openapi.yaml`,
//! `/docs`) and committed under `openapi/`: what poem-openapi generates,
//! made to say exactly what the services accept.
//!
//! One rule for every request body, on every service: an unknown field is
//! refused with 400 (a misspelt optional field would otherwise be dropped
//! without a word), and an optional field may be `null`, which means the
//! same as leaving it out. poem-openapi's objects behave so
//! (`#[oai(deny_unknown_fields)]`, and `null` read as absent for `Option`
//! and defaulted fields), but its documents say neither: they allow any
//! additional property and no `null`. [`strict_requests`] writes both into
//! the document, so that a client generated from it is never surprised.
//! A request type without `#[oai(deny_unknown_fields)]` would make the
//! document wrong: `bad_input::every_request_body_is_as_strict_as_its_spec_says`
//! sends every operation's body with an unknown field, and each optional
//! field as `null`, and fails on it.

use poem::{IntoResponse, Route, endpoint::make_sync, web::Html};
use serde_json::{Map, Value};

/// `spec` (an OpenAPI 3.0 document as JSON) with every object schema that
/// a request body refers to, directly or through its properties, closed
/// with `additionalProperties: false`, and its optional properties marked
/// `nullable`. Response-only schemas are left open: a client must accept
/// fields added later. A document that is not JSON is returned unchanged.
pub fn strict_requests(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for operation in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|p| p.values())
        {
            let contents = operation
                .pointer("/requestBody/content")
                .and_then(Value::as_object);
            for media in contents.into_iter().flat_map(|c| c.values()) {
                if let Some(schema) = media.get("schema") {
                    referenced(schema, &mut pending);
                }
            }
        }
    }
    let mut closed: Vec<String> = Vec::new();
    while let Some(name) = pending.pop() {
        if closed.contains(&name) {
            continue;
        }
        let pointer = format!("/components/schemas/{name}");
        let Some(schema) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            continue;
        };
        close(schema);
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for prop in props.values() {
                referenced(prop, &mut pending);
            }
        }
        closed.push(name);
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}

/// The names of the component schemas `schema` refers to (itself, its
/// array items, its `allOf`/`anyOf`/`oneOf` branches).
fn referenced(schema: &Value, out: &mut Vec<String>) {
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        out.push(name.to_owned());
    }
    if let Some(items) = schema.get("items") {
        referenced(items, out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            referenced(branch, out);
        }
    }
}

fn close(schema: &mut Map<String, Value>) {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return;
    }
    schema.insert("additionalProperties".into(), Value::Bool(false));
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, prop) in props.iter_mut() {
        if required.contains(name) {
            continue;
        }
        let Some(prop) = prop.as_object_mut() else {
            continue;
        };
        // OpenAPI 3.0 ignores siblings of `$ref`: a nullable reference is
        // an `allOf` of one.
        if let Some(reference) = prop.remove("$ref") {
            let mut wrapped = Map::new();
            wrapped.insert("$ref".into(), reference);
            prop.insert("allOf".into(), Value::Array(vec![Value::Object(wrapped)]));
        }
        prop.insert("nullable".into(), Value::Bool(true));
    }
}

/// `/docs` (Swagger UI), `/openapi.json` and `/openapi.yaml` serving
/// `spec`. `swagger_html` is poem-openapi's Swagger UI page, which embeds
/// the document it was made with (`embedded`): that is swapped for `spec`.
pub fn docs(route: Route, swagger_html: &str, embedded: &str, spec: &str) -> Route {
    let html = swagger_html.replacen(embedded, spec, 1);
    let yaml = serde_json::from_str::<Value>(spec)
        .ok()
        .and_then(|v| serde_yaml::to_string(&v).ok())
        .unwrap_or_default();
    let json = spec.to_owned();
    route
        .at("/docs", make_sync(move |_| Html(html.clone())))
        .at(
            "/openapi.json",
            make_sync(move |_| {
                json.clone()
                    .with_content_type("application/json; charset=utf-8")
            }),
        )
        .at(
            "/openapi.yaml",
            make_sync(move |_| {
                yaml.clone()
                    .with_content_type("application/yaml; charset=utf-8")
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn closes_request_schemas_and_marks_their_optional_fields_nullable() {
        let spec = json!({
            "openapi": "3.0.0",
            "paths": {
                "/orders": {
                    "post": {
                        "requestBody": {"content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Create"}}}},
                        "responses": {"200": {"content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Order"}}}}}
                    }
                }
            },
            "components": {"schemas": {
                "Create": {"type": "object", "required": ["qty"], "properties": {
                    "qty": {"type": "integer"},
                    "note": {"type": "string"},
                    "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
                    "kind": {"$ref": "#/components/schemas/Kind"}
                }},
                "Line": {"type": "object", "properties": {"sku": {"type": "string"}}},
                "Kind": {"type": "string", "enum": ["a", "b"]},
                "Order": {"type": "object", "properties": {"id": {"type": "string"}}}
            }}
        });
        let out: Value =
            serde_json::from_str(&strict_requests(&spec.to_string())).expect("JSON out");
        let schemas = &out["components"]["schemas"];
        assert_eq!(schemas["Create"]["additionalProperties"], json!(false));
        assert_eq!(schemas["Create"]["properties"]["qty"].get("nullable"), None);
        assert_eq!(
            schemas["Create"]["properties"]["note"]["nullable"],
            json!(true)
        );
        assert_eq!(
            schemas["Create"]["properties"]["kind"],
            json!({"allOf": [{"$ref": "#/components/schemas/Kind"}], "nullable": true})
        );
        // Reached through an array of the request: closed too.
        assert_eq!(schemas["Line"]["additionalProperties"], json!(false));
        // Not an object: nothing to close.
        assert_eq!(schemas["Kind"].get("additionalProperties"), None);
        // Only answered: left open.
        assert_eq!(schemas["Order"].get("additionalProperties"), None);
    }

    #[test]
    fn is_idempotent_and_leaves_non_json_alone() {
        let spec = json!({"paths": {"/x": {"put": {"requestBody": {"content": {"application/json":
            {"schema": {"$ref": "#/components/schemas/X"}}}}}}},
            "components": {"schemas": {"X": {"type": "object", "properties": {"k": {"$ref": "#/components/schemas/Y"}}},
            "Y": {"type": "string"}}}})
        .to_string();
        let once = strict_requests(&spec);
        assert_eq!(strict_requests(&once), once);
        assert_eq!(strict_requests("not json"), "not json");
    }
}
