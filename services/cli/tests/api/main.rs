//! The services over real HTTP on a real PostgreSQL.

mod bad_input;
mod concurrency;
mod downstream_faults;
mod gateway;
mod idempotency;
mod orders;
mod support;
