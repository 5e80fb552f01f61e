//! The operator's verbs, as a library so the tests drive the same code.

pub mod audit;
pub mod bench;
pub mod chaos;
pub mod load;
pub mod observe;
pub mod openapi;
pub mod procs;
pub mod seed;
pub mod up;
