//! Logs, traces and the metrics recorder, set up once per process.
//!
//! Logs: to journald when systemd runs us (JOURNAL_STREAM is set) and its
//! socket answers, human-readable to stderr otherwise; level from RUST_LOG
//! (default info). Every line inside a request carries its `trace_id`.
//! Traces: see [`otel`]. Their spans stay on whatever RUST_LOG says, so
//! quieting the logs never breaks a trace.
//!
//! - [`otel`]: the tracer, OTLP export, W3C trace context in and out
//! - [`prometheus`]: the process's metrics registry and `GET /metrics`
//! - [`requests`]: the span and RED metrics of every served request
//! - [`window`]: a mean over a sliding window (the SLA's latency gauge)
//! - [`scrape`]: reading Prometheus' text format (another service's metrics)

pub mod otel;
pub mod prometheus;
pub mod requests;
pub mod scrape;
pub mod window;

use std::io::IsTerminal;

use tracing::{Level, Metadata, Subscriber, span};
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::LevelFilter, fmt, layer::Context, prelude::*,
    registry::LookupSpan,
};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Where log lines go, and a note on why when it is not the obvious place.
fn log_layer(service: &'static str) -> (BoxedLayer, Option<String>) {
    // Colours only for a person at a terminal, not in files or the journal.
    let stderr = || {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed()
    };
    if std::env::var_os("JOURNAL_STREAM").is_none() {
        return (stderr(), None);
    }
    match tracing_journald::layer() {
        // Fields without the default `F_` prefix: `journalctl TRACE_ID=...`.
        Ok(journald) => (
            journald
                .with_syslog_identifier(service.to_owned())
                .with_field_prefix(None)
                .boxed(),
            None,
        ),
        Err(err) => (
            stderr(),
            Some(format!(
                "JOURNAL_STREAM is set but journald is not reachable ({err}): logging to stderr"
            )),
        ),
    }
}

/// The one (global) filter: RUST_LOG for everything, except that spans at
/// info and above are always on, since traces are made of them.
///
/// Global on purpose: with tracing-subscriber's per-layer filters instead,
/// the first span of a callsite came out disabled when other threads were
/// logging at the same moment (seen with the order service's first request).
struct LogsAndTraces(EnvFilter);

fn traced(meta: &Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= Level::INFO
}

impl<S> Layer<S> for LogsAndTraces
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if traced(meta) {
            tracing::subscriber::Interest::always()
        } else {
            Layer::<S>::register_callsite(&self.0, meta)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let logs = Layer::<S>::max_level_hint(&self.0).unwrap_or(LevelFilter::TRACE);
        Some(logs.max(LevelFilter::INFO))
    }

    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        traced(meta) || Layer::<S>::enabled(&self.0, meta, cx)
    }

    // EnvFilter follows spans for its `target[span{field=value}]` directives.
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(id, values, cx);
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx);
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx);
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx);
    }
}

/// The OpenTelemetry layer without the per-poll and per-span extras that
/// nobody reads: every span is entered and left on each poll of its future,
/// many times per request, and with inactivity tracking (`busy_ns`/`idle_ns`
/// attributes) each of those read the clock and locked the span, and with
/// context activation each pushed a context onto a thread-local stack (only
/// OpenTelemetry-native instrumentation reads that; we have none: trace
/// context goes out through `otel::inject_current`, which asks the tracing
/// span). Thread attributes allocate the thread's name for every span.
fn otel_layer<S>(tracer: opentelemetry_sdk::trace::Tracer) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_threads(false)
}

/// Safe to call more than once: tests start several services in one process.
pub fn init(service: &'static str) {
    prometheus::install();
    let traces = otel::init(service);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (logs, note) = log_layer(service);
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(otel_layer(traces.tracer))
        .with(LogsAndTraces(filter))
        .try_init()
        .is_ok();
    if !installed {
        return;
    }
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    match traces.export {
        Ok(Some(endpoint)) => tracing::info!(%endpoint, "exporting traces over OTLP/HTTP"),
        Ok(None) => tracing::debug!("no OTEL_EXPORTER_OTLP_ENDPOINT: traces are not exported"),
        Err(err) => tracing::warn!(%err, "cannot export traces"),
    }
}

/// Flushes what is still buffered (spans); call at the end of `main`.
pub fn shutdown() {
    otel::shutdown();
}
