//! What a payment is and the states it can be in: the contract's.

pub use valerix_runtime::contract::payment::PaymentStatus;
