//! The route table: which gateway prefix goes to which service, and to what
//! path there, and which of the services' operations are reachable through
//! it, by whom. The proxy and the spec both read it, so what the gateway
//! documents is what it routes.

pub use valerix_runtime::topology::Service;

/// The services the gateway routes to: the ones it calls, never itself.
pub const ROUTED: &[Service] = Service::Gateway.calls();

/// `prefix` and everything under it goes to `service`, with `prefix`
/// replaced by `to`.
#[derive(Debug)]
pub struct Route {
    pub prefix: &'static str,
    pub service: Service,
    pub to: &'static str,
}

#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    Route { prefix: "/api/orders",            service: Service::Order,     to: "/orders" },
    Route { prefix: "/api/inventory",         service: Service::Inventory, to: "/inventory" },
    Route { prefix: "/api/payments",          service: Service::Payment,   to: "/payments" },
    Route { prefix: "/api/gremlin/order",     service: Service::Order,     to: "/gremlin" },
    Route { prefix: "/api/gremlin/inventory", service: Service::Inventory, to: "/gremlin" },
    Route { prefix: "/api/gremlin/payment",   service: Service::Payment,   to: "/gremlin" },
];

/// Who may call an operation through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the shop.
    Public,
    /// Only with the operator token (`Authorization: Bearer`).
    Operator,
}

/// One of a service's operations, routed by the gateway.
#[derive(Debug)]
pub struct Operation {
    pub service: Service,
    pub method: &'static str,
    /// The service's own path template, as in its spec.
    pub path: &'static str,
    pub access: Access,
}

impl Operation {
    /// Not idempotent by itself, but with an `Idempotency-Key` or an
    /// `Order-Id`: placing an order (a repeat with the same key or id
    /// returns the first order).
    pub fn idempotent_by_key(&self) -> bool {
        matches!(self.service, Service::Order) && self.method == "POST" && self.path == "/orders"
    }
}

const fn op(
    service: Service,
    method: &'static str,
    path: &'static str,
    access: Access,
) -> Operation {
    Operation {
        service,
        method,
        path,
        access,
    }
}

/// Everything the gateway forwards. The saga's own steps (reserve, commit,
/// release, charge, void, refund) are not here: they are calls between the
/// services, and through the gateway they are 404. A refund is not an
/// operator's action either: refunding a CONFIRMED order would leave it
/// confirmed without payment; the saga refunds what it gives up.
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = {
    use Access::{Operator, Public};
    use Service::{Inventory, Order, Payment};
    &[
        op(Order,     "POST",   "/orders",                  Public),
        op(Order,     "GET",    "/orders/{id}",             Public),
        op(Order,     "GET",    "/orders",                  Operator),
        op(Inventory, "GET",    "/inventory",               Public),
        op(Inventory, "GET",    "/inventory/{product_id}",  Public),
        op(Inventory, "PUT",    "/inventory/{product_id}",  Operator),
        op(Payment,   "GET",    "/payments",                Operator),
        op(Payment,   "GET",    "/payments/{id}",           Operator),
        op(Order,     "GET",    "/gremlin",                 Operator),
        op(Order,     "DELETE", "/gremlin",                 Operator),
        op(Order,     "POST",   "/gremlin/latency",         Operator),
        op(Order,     "POST",   "/gremlin/noise",           Operator),
        op(Order,     "POST",   "/gremlin/crash",           Operator),
        op(Inventory, "GET",    "/gremlin",                 Operator),
        op(Inventory, "DELETE", "/gremlin",                 Operator),
        op(Inventory, "POST",   "/gremlin/latency",         Operator),
        op(Inventory, "POST",   "/gremlin/noise",           Operator),
        op(Inventory, "POST",   "/gremlin/crash",           Operator),
        op(Payment,   "GET",    "/gremlin",                 Operator),
        op(Payment,   "DELETE", "/gremlin",                 Operator),
        op(Payment,   "POST",   "/gremlin/latency",         Operator),
        op(Payment,   "POST",   "/gremlin/noise",           Operator),
        op(Payment,   "POST",   "/gremlin/crash",           Operator),
    ]
};

/// The routed operation of `service` for `method` on its path `path`, if
/// any. poem answers HEAD with GET, and so does the gateway.
pub fn operation(service: Service, method: &str, path: &str) -> Option<&'static Operation> {
    let method = if method == "HEAD" { "GET" } else { method };
    OPERATIONS.iter().find(|o| {
        o.service == service
            && o.method == method
            && valerix_runtime::auth::template_matches(o.path, path)
    })
}

/// `rest` with `prefix` (and only a whole segment of it) taken off the front.
fn under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

impl Route {
    /// The service's path for a gateway path under this route's prefix.
    pub fn upstream_path(&self, gateway_path: &str) -> Option<String> {
        under(gateway_path, self.prefix).map(|rest| format!("{}{rest}", self.to))
    }
}

/// Where one of a service's own paths appears on the gateway, if it is
/// routed at all (`/health` and `/metrics` are not).
pub fn gateway_path(service: Service, path: &str) -> Option<String> {
    ROUTES
        .iter()
        .filter(|r| r.service == service)
        .find_map(|r| under(path, r.to).map(|rest| format!("{}{rest}", r.prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_paths_map_to_gateway_paths_and_back() {
        for (service, path, on_gateway) in [
            (Service::Order, "/orders", "/api/orders"),
            (Service::Order, "/orders/{id}", "/api/orders/{id}"),
            (
                Service::Inventory,
                "/inventory/reserve",
                "/api/inventory/reserve",
            ),
            (Service::Payment, "/payments/{id}", "/api/payments/{id}"),
            (Service::Payment, "/gremlin", "/api/gremlin/payment"),
            (
                Service::Order,
                "/gremlin/latency",
                "/api/gremlin/order/latency",
            ),
        ] {
            assert_eq!(gateway_path(service, path).as_deref(), Some(on_gateway));
            let route = ROUTES
                .iter()
                .find(|r| r.upstream_path(on_gateway).is_some() && r.service == service)
                .expect("routed");
            assert_eq!(route.upstream_path(on_gateway).as_deref(), Some(path));
        }
    }

    use Access::{Operator, Public};
    use Service::{Inventory, Order, Payment};

    #[test]
    fn the_sagas_steps_are_not_routed_and_the_operators_actions_need_the_token() {
        for (service, method, path) in [
            (Inventory, "POST", "/inventory/reserve"),
            (Inventory, "POST", "/inventory/commit"),
            (Inventory, "POST", "/inventory/commits"),
            (Inventory, "GET", "/inventory/reservations/held"),
            (Inventory, "POST", "/inventory/release"),
            (Inventory, "GET", "/inventory/reservations/x"),
            (Payment, "POST", "/payments"),
            (Payment, "POST", "/payments/void"),
            (Payment, "POST", "/payments/refund"),
            (Order, "DELETE", "/orders/x"),
        ] {
            assert!(
                operation(service, method, path).is_none(),
                "{method} {path}"
            );
        }
        for (service, method, path, access) in [
            (Order, "POST", "/orders", Public),
            (Order, "GET", "/orders/abc", Public),
            (Order, "HEAD", "/orders/abc", Public),
            (Order, "GET", "/orders", Operator),
            (Inventory, "GET", "/inventory/PROD-1", Public),
            (Inventory, "PUT", "/inventory/PROD-1", Operator),
            (Payment, "GET", "/payments", Operator),
            (Payment, "GET", "/payments/abc", Operator),
            (Payment, "POST", "/gremlin/crash", Operator),
        ] {
            let op = operation(service, method, path).expect("routed");
            assert_eq!(op.access, access, "{method} {path}");
        }
    }

    #[test]
    fn every_route_and_operation_leads_to_a_service_the_gateway_calls() {
        for service in ROUTES.iter().map(|r| r.service) {
            assert!(ROUTED.contains(&service), "{service:?}");
        }
        for op in OPERATIONS {
            assert!(ROUTED.contains(&op.service), "{op:?}");
        }
    }

    #[test]
    fn every_routed_operation_is_under_a_route() {
        for op in OPERATIONS {
            assert!(gateway_path(op.service, op.path).is_some(), "{op:?}");
        }
    }

    #[test]
    fn only_whole_segments_match() {
        assert_eq!(gateway_path(Service::Order, "/health"), None);
        assert_eq!(gateway_path(Service::Order, "/ordersx"), None);
        assert_eq!(gateway_path(Service::Order, "/inventory"), None);
        assert_eq!(ROUTES[0].upstream_path("/api/ordersx"), None);
    }
}
