//! OpenTelemetry behind `tracing`: the tracer provider, OTLP export
//! configured by the standard `OTEL_*` variables, and W3C trace context in
//! (server spans) and out (every downstream call).
//!
//! Spans always get ids, so trace context flows through a service and its
//! log lines carry a trace id even when it exports nothing; only export is
//! switched by `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`).

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_http::{Bytes, HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Tracer},
};
use poem::http::HeaderMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Set once spans have somewhere to go.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports its spans (see [`init`]).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What `telemetry::init` reports once logging is up.
pub(crate) struct Traces {
    pub tracer: Tracer,
    /// Where spans go, or why nowhere.
    pub export: Result<Option<String>, String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The OTLP endpoint, when export is on (the spec's variables, in its order).
fn endpoint() -> Option<String> {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    if disabled {
        return None;
    }
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The process's tracer provider (the first call decides; later calls, as
/// in tests that start several services in one process, share it).
pub(crate) fn init(service: &'static str) -> Traces {
    let mut export = Ok(None);
    let provider = PROVIDER.get_or_init(|| {
        // OTEL_SERVICE_NAME (read by the SDK) wins over the built-in name.
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service);
        }
        let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
        if let Some(endpoint) = endpoint() {
            match exporter() {
                Ok(exporter) => {
                    let batches = BatchSpanProcessor::builder(exporter)
                        .with_batch_config(batch_config())
                        .build();
                    builder = builder.with_span_processor(batches);
                    EXPORTING.store(true, Ordering::Relaxed);
                    export = Ok(Some(endpoint));
                }
                Err(err) => export = Err(err),
            }
        }
        builder.build()
    });
    Traces {
        tracer: provider.tracer("valerix"),
        export,
    }
}

/// Spans waiting for export, at most (the SDK's default, set explicitly so the
/// bound is ours to see; `OTEL_BSP_MAX_QUEUE_SIZE` still overrides it).
pub const SPAN_QUEUE: usize = 2048;

/// The batch processor's settings. In opentelemetry_sdk 0.33 the
/// `BatchSpanProcessor` hands finished spans to its export thread through a
/// `sync_channel` of `max_queue_size` with `try_send`: when the queue is full
/// (the collector is down or slow and exports back up) the span is dropped
/// and counted, never kept, so spans hold at most this much memory whatever
/// the collector does. The thread exports one batch at a time; the OTLP
/// exporter retries a failed batch with backoff only within its timeout
/// (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10 s; our HTTP client also gives
/// up after 10 s) and then drops it. The other `OTEL_BSP_*` variables apply
/// as the SDK reads them.
fn batch_config() -> BatchConfig {
    let queue = env("OTEL_BSP_MAX_QUEUE_SIZE")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(SPAN_QUEUE);
    BatchConfigBuilder::default()
        .with_max_queue_size(queue)
        .build()
}

fn exporter() -> Result<SpanExporter, String> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "no tokio runtime to send spans from".to_owned())?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    // Endpoint, headers, timeout and protocol come from OTEL_EXPORTER_OTLP_*.
    SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient { http, runtime })
        .build()
        .map_err(|e| e.to_string())
}

/// How long the end of `main` waits for queued spans to be exported. A
/// restart (systemd's, `valerix up`'s) starts the next process only once this
/// one exited, and meanwhile new connections wait in the socket's backlog:
/// with a collector that is slow or away, an unbounded flush held every
/// restart for seconds (0.9-4.3 s measured) and the backlog's burst was shed.
const FLUSH_AT_EXIT: Duration = Duration::from_millis(300);

/// Flushes spans still queued, for at most [`FLUSH_AT_EXIT`]; for the end of `main`.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown_with_timeout(FLUSH_AT_EXIT)
    {
        tracing::debug!(%err, "tracer provider shutdown");
    }
}

/// The OTLP exporter's HTTP client: the service's own reqwest, so no second
/// HTTP stack is linked in. The SDK's batch processor exports from a thread
/// of its own with a plain executor, while reqwest needs tokio: each export
/// runs as a task on the runtime that was current at start-up.
#[derive(Debug)]
struct OtlpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: poem::http::Request<Bytes>,
    ) -> Result<poem::http::Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let resp = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut out = poem::http::Response::new(resp.bytes().await?);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        });
        Ok(task.await??)
    }
}

/// Makes `span` the continuation of the trace in `headers`' `traceparent`
/// (a new trace when there is none) and returns its trace id.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) -> Option<String> {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when the OpenTelemetry layer is absent (a test process that
    // never called telemetry::init): there is no trace to continue then.
    let _ = span.set_parent(parent);
    trace_id(span)
}

/// The trace id of `span`, if it is being traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Names `span` once its name is known (for a server span: after routing).
/// Recording `otel.name` is not enough once the span has started, which
/// `continue_trace` does to learn the trace id.
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// Adds `traceparent` for the current span, so the callee's span is its child.
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}
