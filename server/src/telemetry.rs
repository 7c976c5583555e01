//! Logging with `tracing`: pretty lines or JSON, filtered by `RUST_LOG` or
//! the configured filter; and, when `[tracing] enabled`, OpenTelemetry spans
//! exported over OTLP/gRPC, each call's span joined to the caller's W3C
//! `traceparent`.
//!
//! Span attributes are labels chosen here (service, method, issuer,
//! endpoint, store operation, outcome): never a token, secret or claim.
//!
//! Sampling is decided once, at the edge, before any span exists: a call
//! whose caller sent a `traceparent` follows its sampled flag, any other is
//! sampled with `sample_ratio`. An unsampled call makes no span at all, and
//! only spans inside a sampled call are exported, so the hot path pays for
//! tracing in proportion to the share it samples.

use std::{
    cell::Cell,
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, Targets, dynamic_filter_fn, filter_fn},
    fmt,
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::config::{LogConfig, LogFormat, TracingConfig};

/// Whether spans are exported: the gRPC layer makes call spans only then,
/// so the hot path pays nothing when tracing is off.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The share of calls without a caller's decision that are sampled, as a
/// threshold on a uniform `u64` (`u64::MAX`: every call).
static SAMPLE_BELOW: AtomicU64 = AtomicU64::new(0);

/// The name of the span of one gRPC call ([`call_span`]): made only for
/// exported calls, so the log output leaves it out.
const CALL_SPAN: &str = "grpc call";

/// The target of the spans exported below a call's span (issuer requests,
/// store operations): `info_span!(target: CHILD_TARGET, ...)`.
pub(crate) const CHILD_TARGET: &str = "authd::trace";

/// Installs the global subscriber; a second call is a no-op (tests).
pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.with_ansi(colours()).try_init(),
    };
}

/// Whether the log is coloured: only on a terminal, so that a log file or
/// journal holds plain `name=value` fields a reader can grep.
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
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
    // The call layer samples (call_span); every span it lets through is
    // kept, and so are its children.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            Resource::builder()
                .with_service_name(tracing.service_name.clone())
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("authd");
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&log.filter))
        .and(filter_fn(|meta| meta.name() != CALL_SPAN));
    let logs = match log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_ansi(colours())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    // authd's own spans, whatever the log filter says, and only inside a
    // sampled call: a call span, or a span below one. Background work
    // (key refreshes, revocation polls) is in the logs and metrics, not in
    // traces. Attributes are the span's own fields: no code location,
    // thread or busy/idle times, which would cost every span for nothing a
    // dashboard reads.
    // Which spans can be exported is static (decided once per call site, so
    // every other span, such as the callers policy's log span on every call,
    // costs the exporter nothing); whether one is inside a sampled call is
    // asked of those few only.
    let exported = filter_fn(|meta| meta.name() == CALL_SPAN || meta.target() == CHILD_TARGET);
    let in_sampled_call =
        dynamic_filter_fn(|meta, cx| meta.name() == CALL_SPAN || cx.lookup_current().is_some());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(
            Targets::new()
                .with_target("authd", tracing::Level::INFO)
                .and(exported)
                .and(in_sampled_call),
        );
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| format!("tracing: {e}"))?;
    SAMPLE_BELOW.store(sample_threshold(tracing.sample_ratio), Ordering::Relaxed);
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

/// `ratio` (clamped to 0..=1) as a threshold on a uniform `u64`.
fn sample_threshold(ratio: f64) -> u64 {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    if ratio >= 1.0 {
        u64::MAX
    } else {
        // Exact for the ratios anyone writes; the cast saturates.
        (ratio * u64::MAX as f64) as u64
    }
}

/// A uniform `u64` from a per-thread SplitMix64, seeded from the standard
/// library's random hasher keys: sampling needs spread, not secrecy.
fn uniform() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()));
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// Whether a call is sampled: the caller's flag when it sent a valid
/// `traceparent`, else a draw at the configured ratio.
fn sampled(parent: &opentelemetry::Context) -> bool {
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        return remote.is_sampled();
    }
    let below = SAMPLE_BELOW.load(Ordering::Relaxed);
    below == u64::MAX || uniform() < below
}

/// The span of one gRPC call, child of the caller's `traceparent` when it
/// sends one; `None` while spans are not exported, and for a call that is
/// not sampled. The callers policy records `authd.caller` on it
/// ([`record_caller`]).
pub(crate) fn call_span(
    headers: &http::HeaderMap,
    service: &'static str,
    method: &'static str,
) -> Option<tracing::Span> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let parent = if headers.contains_key("traceparent") {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Metadata(headers)))
    } else {
        opentelemetry::Context::new()
    };
    if !sampled(&parent) {
        return None;
    }
    let span = tracing::info_span!(
        CALL_SPAN,
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        authd.caller = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    Some(span)
}

/// Names the caller (an identity, never a credential) on the span of the
/// call being served, when that call is traced.
pub(crate) fn record_caller(caller: &str) {
    if EXPORTING.load(Ordering::Relaxed) {
        tracing::Span::current().record("authd.caller", caller);
    }
}
