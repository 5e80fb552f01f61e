//! The services over real HTTP on a real PostgreSQL.

mod abandoned;
mod access;
mod bad_input;
mod concurrency;
mod downstream_faults;
mod gateway;
mod gremlins;
mod grouped_writes;
mod grouping;
mod idempotency;
mod metrics;
mod orders;
mod statuses;
mod stock_commit;
mod support;
mod unix_sockets;
