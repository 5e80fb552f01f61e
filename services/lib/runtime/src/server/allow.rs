//! The `Allow` header on 405 answers (RFC 9110 §15.5.6), taken from the spec
//! so it always names the methods the path really takes.

use std::{collections::BTreeMap, sync::Arc};

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, Request, Response,
    http::{HeaderValue, Method, StatusCode, header},
};
use poem_openapi::registry::MetaApi;

use crate::contract::problem::error_to_problem;

/// Each documented path template and the methods it takes.
#[derive(Debug, Default)]
pub struct Allowed(Vec<(Vec<String>, String)>);

impl Allowed {
    pub fn of(apis: &[MetaApi]) -> Self {
        let mut methods: BTreeMap<&str, Vec<Method>> = BTreeMap::new();
        for path in apis.iter().flat_map(|a| &a.paths) {
            let entry = methods.entry(&path.path).or_default();
            entry.extend(path.operations.iter().map(|op| op.method.clone()));
            // poem answers HEAD with the GET endpoint.
            if entry.contains(&Method::GET) && !entry.contains(&Method::HEAD) {
                entry.push(Method::HEAD);
            }
        }
        Self(
            methods
                .into_iter()
                .map(|(path, methods)| {
                    let segments = path.split('/').map(str::to_owned).collect();
                    let list = methods.iter().map(Method::as_str).collect::<Vec<_>>();
                    (segments, list.join(", "))
                })
                .collect(),
        )
    }

    /// The methods for `path`. Literal segments win over `{parameters}`, as
    /// they do in the router: `/inventory/reserve` is not a product id.
    fn for_path(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| {
                        t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                    })
            })
            .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
            .map(|(_, methods)| methods.as_str())
    }
}

/// Answers a 405 from `ep` as problem JSON with `Allow`.
pub fn with_allow<E>(ep: E, allowed: Allowed) -> impl Endpoint<Output = Response>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let allowed = Arc::new(allowed);
    ep.into_endpoint()
        .map_to_response()
        .around(move |ep, req: Request| {
            let allowed = allowed.clone();
            async move {
                let path = req.uri().path().to_owned();
                match ep.call(req).await {
                    Err(err) if err.status() == StatusCode::METHOD_NOT_ALLOWED => {
                        let mut resp = error_to_problem(err).await;
                        if let Some(v) = allowed
                            .for_path(&path)
                            .and_then(|m| HeaderValue::from_str(m).ok())
                        {
                            resp.headers_mut().insert(header::ALLOW, v);
                        }
                        Ok(resp)
                    }
                    other => other,
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use poem_openapi::{OpenApi, param::Path};

    use super::*;

    struct Api;

    #[OpenApi]
    impl Api {
        #[oai(path = "/things", method = "get")]
        async fn list(&self) {}
        #[oai(path = "/things", method = "post")]
        async fn create(&self) {}
        #[oai(path = "/things/:id", method = "put")]
        async fn put(&self, _id: Path<String>) {}
        #[oai(path = "/things/special", method = "post")]
        async fn special(&self) {}
    }

    #[test]
    fn methods_per_path_literals_first() {
        let allowed = Allowed::of(&Api::meta());
        assert_eq!(allowed.for_path("/things"), Some("GET, POST, HEAD"));
        assert_eq!(allowed.for_path("/things/42"), Some("PUT"));
        assert_eq!(allowed.for_path("/things/special"), Some("POST"));
        assert_eq!(allowed.for_path("/things/"), None);
        assert_eq!(allowed.for_path("/nothing"), None);
    }
}
