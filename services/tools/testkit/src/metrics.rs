//! Reading Prometheus' text format in tests: the runtime's reader.

pub use valerix_runtime::telemetry::scrape::{Sample, buckets, find, parse, value};
