//! The operator's verbs, as a library so the tests drive the same code.

pub mod audit;
pub mod backup;
pub mod chaos;
pub mod observe;
pub mod openapi;
pub mod seed;
pub mod token;
pub mod up;
