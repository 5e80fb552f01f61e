//! What a reservation is and the states it can be in: the contract's.

pub use valerix_runtime::contract::inventory::ReservationStatus;
