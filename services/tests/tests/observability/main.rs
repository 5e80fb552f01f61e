//! Observability on real processes and real tools: traces over OTLP to a
//! receiver inside the test, the systemd notify protocol on a socket of the
//! test's own, a real Prometheus scraping the services and evaluating the
//! SLA rule, and promtool on the rule files.

mod prometheus;
mod rules;
mod sd_notify;
mod support;
mod traces;
