//! The stack in one place: its services, their names, default ports, and
//! who calls whom. The services take their defaults from here, and every
//! launcher (`valerix up`, the chaos run, the benchmark, the tests) wires the
//! stack from it, so a port or an edge is never written twice.

use std::{fmt, net::SocketAddr};

use crate::client::upstream::Upstream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Gateway,
    Order,
    Inventory,
    Payment,
}

impl Service {
    /// Every service, the one a person starts at first.
    pub const ALL: [Service; 4] = [
        Service::Gateway,
        Service::Order,
        Service::Inventory,
        Service::Payment,
    ];

    /// The order to start them in: each after the services it calls.
    pub const START_ORDER: [Service; 4] = [
        Service::Inventory,
        Service::Payment,
        Service::Order,
        Service::Gateway,
    ];

    /// Its name in logs, metrics (`service` label), health documents,
    /// Prometheus jobs and traces; also its binary's name.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Gateway => "api-gateway",
            Service::Order => "order-service",
            Service::Inventory => "inventory-service",
            Service::Payment => "payment-service",
        }
    }

    /// Its subcommand under `valerix service`.
    pub const fn command(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Order => "order",
            Service::Inventory => "inventory",
            Service::Payment => "payment",
        }
    }

    /// The contract's port (docs/CONTRACT.md).
    pub const fn default_port(self) -> u16 {
        match self {
            Service::Gateway => 5000,
            Service::Order => 5001,
            Service::Inventory => 5002,
            Service::Payment => 5003,
        }
    }

    /// The services it calls.
    pub const fn calls(self) -> &'static [Service] {
        match self {
            Service::Gateway => &[Service::Order, Service::Inventory, Service::Payment],
            Service::Order => &[Service::Inventory, Service::Payment],
            Service::Inventory | Service::Payment => &[],
        }
    }

    /// Whether it keeps state in the database (the gateway keeps none).
    pub const fn uses_database(self) -> bool {
        !matches!(self, Service::Gateway)
    }

    /// The flag (and, upper-cased, the environment variable) by which a
    /// caller is told where this service is.
    pub const fn address_flag(self) -> &'static str {
        match self {
            Service::Gateway => "--gateway-url",
            Service::Order => "--order-url",
            Service::Inventory => "--inventory-url",
            Service::Payment => "--payment-url",
        }
    }

    /// `127.0.0.1:<default port>`: loopback unless configured otherwise.
    pub fn default_listen(self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.default_port()))
    }

    /// Where a caller on the same host finds it by default.
    pub fn default_address(self) -> Upstream {
        Upstream::local(self.default_port())
    }

    /// Its port when the order service is on `base` (`valerix up
    /// --base-port`): the others keep their distance from it.
    pub fn port_from_base(self, base: u16) -> Option<u16> {
        let offset = i32::from(self.default_port()) - i32::from(Service::Order.default_port());
        u16::try_from(i32::from(base) + offset).ok()
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_starts_after_the_ones_it_calls() {
        for (i, s) in Service::START_ORDER.iter().enumerate() {
            for callee in s.calls() {
                let j = Service::START_ORDER
                    .iter()
                    .position(|x| x == callee)
                    .expect("listed");
                assert!(j < i, "{s} starts before {callee}");
            }
        }
    }

    #[test]
    fn ports_follow_the_base_port() {
        assert_eq!(Service::Gateway.port_from_base(5001), Some(5000));
        assert_eq!(Service::Payment.port_from_base(7001), Some(7003));
        assert_eq!(Service::Gateway.port_from_base(0), None);
        assert_eq!(Service::Payment.port_from_base(u16::MAX), None);
    }
}
