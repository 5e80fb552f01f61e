//! The route table: which gateway prefix goes to which service, and to what
//! path there. The proxy and the spec both read it, so what the gateway
//! documents is what it routes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Order,
    Inventory,
    Payment,
}

impl Service {
    pub const ALL: [Service; 3] = [Self::Order, Self::Inventory, Self::Payment];

    pub fn name(self) -> &'static str {
        match self {
            Self::Order => "order-service",
            Self::Inventory => "inventory-service",
            Self::Payment => "payment-service",
        }
    }
}

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

    #[test]
    fn only_whole_segments_match() {
        assert_eq!(gateway_path(Service::Order, "/health"), None);
        assert_eq!(gateway_path(Service::Order, "/ordersx"), None);
        assert_eq!(gateway_path(Service::Order, "/inventory"), None);
        assert_eq!(ROUTES[0].upstream_path("/api/ordersx"), None);
    }
}
