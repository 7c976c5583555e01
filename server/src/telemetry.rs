//! Logging with `tracing`: pretty lines or JSON, filtered by `RUST_LOG` or
//! the configured filter; and, when `[tracing] enabled`, OpenTelemetry spans
//! exported over OTLP/gRPC, each call's span joined to the caller's W3C
//! `traceparent`.
//!
//! Span attributes are labels chosen here (service, method, issuer,
//! endpoint, store operation, outcome): never a token, secret or claim.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, filter::Targets, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::{LogConfig, LogFormat, TracingConfig};

/// Whether spans are exported: the gRPC layer makes call spans only then,
/// so the hot path pays nothing when tracing is off.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber; a second call is a no-op (tests).
pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Exports spans until dropped, then flushes those still queued.
#[derive(Debug)]
pub struct Tracing(SdkTracerProvider);

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("authd: flushing spans: {error}");
        }
    }
}

/// Installs logging ([`init`]) and, when `tracing.enabled`, the OTLP span
/// exporter. Must run inside the Tokio runtime (the exporter's gRPC channel
/// lives there). Keep the returned guard alive while serving.
pub fn init_with_tracing(
    log: &LogConfig,
    tracing: &TracingConfig,
) -> Result<Option<Tracing>, String> {
    if !tracing.enabled {
        init(log);
        return Ok(None);
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    // Without a configured endpoint, OTEL_EXPORTER_OTLP_ENDPOINT (else
    // http://localhost:4317) is used by the exporter itself.
    if let Some(endpoint) = &tracing.endpoint {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("tracing: cannot build the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            tracing.sample_ratio.clamp(0.0, 1.0),
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(tracing.service_name.clone())
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("authd");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let logs = match log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    // authd's own spans only, whatever the log filter says.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("authd", tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| format!("tracing: {e}"))?;
    EXPORTING.store(true, Ordering::Relaxed);
    Ok(Some(Tracing(provider)))
}

/// Reads W3C trace context from gRPC metadata (HTTP/2 headers).
struct Metadata<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span of one gRPC call, child of the caller's `traceparent` when it
/// sends one; `None` while spans are not exported.
pub(crate) fn call_span(
    headers: &http::HeaderMap,
    service: &'static str,
    method: &'static str,
) -> Option<tracing::Span> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let span = tracing::info_span!(
        "grpc call",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Metadata(headers)));
    let _ = span.set_parent(parent);
    Some(span)
}
