//! The services' operations as the gateway exposes them, for the gateway's
//! spec and Swagger UI: each service's own descriptions, moved under the
//! gateway's prefixes, with the gateway's own 502/504 added. The requests
//! themselves are routed by prefix (`routes`, `proxy`), not by this.

use std::{
    collections::{BTreeSet, HashMap},
    marker::PhantomData,
};

use poem::{endpoint::BoxEndpoint, http::Method};
use poem_openapi::{
    ApiResponse, OpenApi,
    registry::{MetaApi, MetaOperation, MetaPath, Registry},
};
use valerix_runtime::{Problems, problem_set};

use crate::routes::{Service, gateway_path};

problem_set!(
    /// The gateway's own error answers on every proxied operation.
    pub UpstreamErrors {
        502 => "The service is unreachable (`upstream-unreachable`).",
        504 => "The service did not answer within the gateway's timeout (`upstream-timeout`).",
    }
);

/// A service API the gateway proxies.
pub trait Behind: OpenApi {
    const SERVICE: Service;
}

impl Behind for order_service::OrderApi {
    const SERVICE: Service = Service::Order;
}

impl Behind for inventory_service::InventoryApi {
    const SERVICE: Service = Service::Inventory;
}

impl Behind for payment_service::PaymentApi {
    const SERVICE: Service = Service::Payment;
}

pub struct Proxied<T>(PhantomData<T>);

impl<T> Default for Proxied<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn with_gateway_errors(mut op: MetaOperation) -> MetaOperation {
    op.responses
        .responses
        .extend(Problems::<UpstreamErrors>::meta().responses);
    op
}

impl<T: Behind> OpenApi for Proxied<T> {
    fn meta() -> Vec<MetaApi> {
        T::meta()
            .into_iter()
            .map(|api| MetaApi {
                paths: api
                    .paths
                    .into_iter()
                    .filter_map(|p| {
                        Some(MetaPath {
                            path: gateway_path(T::SERVICE, &p.path)?,
                            operations: p.operations.into_iter().map(with_gateway_errors).collect(),
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    fn register(registry: &mut Registry) {
        let mut theirs = Registry::new();
        T::register(&mut theirs);
        Problems::<UpstreamErrors>::register(registry);
        for (name, schema) in theirs.schemas {
            match registry.schemas.get(&name) {
                Some(ours) if ours.rust_typename != schema.rust_typename => panic!(
                    "two APIs behind the gateway define different schemas named {name}: {:?} and {:?}",
                    ours.rust_typename, schema.rust_typename
                ),
                Some(_) => {}
                None => {
                    registry.schemas.insert(name, schema);
                }
            }
        }
        // Only the tags of operations that are routed (not the service's Health).
        let used: BTreeSet<&str> = Self::meta()
            .iter()
            .flat_map(|api| &api.paths)
            .flat_map(|p| &p.operations)
            .flat_map(|op| op.tags.iter().copied())
            .collect();
        registry.tags.extend(
            theirs
                .tags
                .into_iter()
                .filter(|tag| used.contains(tag.name)),
        );
    }

    /// Nothing: the proxy routes these by prefix.
    fn add_routes(self, _: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {}
}
