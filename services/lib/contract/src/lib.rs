//! The HTTP contract between the services, written once, in a crate of its
//! own that depends on no other Valerix crate (the runtime re-exports it as
//! `valerix_runtime::contract`): the request and answer types of the calls
//! one service makes to another, and the limits both sides keep. The server documents and parses these types; the
//! client sends and reads the very same ones, so a change of the contract
//! is one edit the compiler follows to both sides.
//!
//! - [`inventory`], reservations (reserve, release, commit, batch commits)
//! - [`payment`], payments (charge, void, refund)
//! - [`sla`], the order service's SLA, as the gateway's overview shows it
//! - [`domain`], the values in them (product ids, quantities, amounts),
//!   parsed once at the edge
//! - [`health`], the health document every service answers
//! - [`problem`], every error answer (RFC 9457 problem JSON)
//!
//! [`Wire`] carries a contract type through serde for the HTTP client.

pub mod domain;
pub mod health;
pub mod inventory;
pub mod payment;
pub mod problem;
pub mod sla;

use poem_openapi::types::{ParseFromJSON, ToJSON};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A contract type on the wire: serialised and parsed by its OpenAPI
/// definition (poem-openapi's `ToJSON`/`ParseFromJSON`), the same code the
/// server runs, so the client cannot read a field differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire<T>(pub T);

impl<T: ToJSON> Serialize for Wire<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(serializer)
    }
}

impl<'de, T: ParseFromJSON> Deserialize<'de> for Wire<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        T::parse_from_json(Some(value))
            .map(Wire)
            .map_err(|e| serde::de::Error::custom(e.into_message()))
    }
}
