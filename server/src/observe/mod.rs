//! Operability: the `[metrics]` HTTP listener apart from gRPC, serving
//! `GET /metrics` (Prometheus text format, rendered by
//! `metrics-exporter-prometheus`), `GET /healthz` (the process answers) and
//! `GET /readyz` (every issuer's first key set fetch is done and the store
//! answers; the body says what is not).
//!
//! Domain modules record through the `metrics` facade macros only; this
//! module installs the recorder, sets the gauges that describe state (key
//! sets, caches, revocations, the process) at each scrape, and serves them.
//!
//! - `grpc`: the tower layer measuring every gRPC call on the port.
//! - `process`: RSS, CPU, file descriptors and threads from /proc.

mod grpc;
mod process;

use std::{
    fmt::Write as _,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::net::TcpListener;

pub(crate) use grpc::GrpcMetrics;

use crate::{secrets::Sealer, store::Store, verify::Verifier};

/// Histogram buckets of every `*_seconds` metric: 100 µs to 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// How long `/readyz` waits for the store at most; the store's own bound
/// (`store.operation_timeout_ms` with its retries) is normally shorter.
const STORE_PROBE: Duration = Duration::from_secs(10);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). Call it before building the [`crate::App`], so that the
/// series registered then are recorded.
pub fn install() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("metrics: cannot install the recorder: {e}"))?;
    process::started();
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// What `/metrics` and `/readyz` read at each request.
#[derive(Debug, Clone)]
pub struct Observed {
    handle: PrometheusHandle,
    verifier: Arc<Verifier>,
    store: Arc<dyn Store>,
    sealer: Option<Arc<Sealer>>,
}

impl Observed {
    /// The state of `verifier`, `store` and `sealer` (KMS), rendered
    /// through `handle`.
    pub fn new(
        handle: PrometheusHandle,
        verifier: Arc<Verifier>,
        store: Arc<dyn Store>,
        sealer: Option<Arc<Sealer>>,
    ) -> Self {
        Observed {
            handle,
            verifier,
            store,
            sealer,
        }
    }

    /// The census of sealed values the last whole `authd store reseal`
    /// walk recorded, as `authd_sealed_values{key_id, kind}`.
    async fn census(&self) {
        let Ok(Ok(Some(census))) = tokio::time::timeout(STORE_PROBE, self.store.get_census()).await
        else {
            return;
        };
        for (key_id, kinds) in &census.counts {
            for (kind, values) in kinds {
                metrics::gauge!("authd_sealed_values", "key_id" => key_id.clone(), "kind" => kind.clone())
                    .set(*values as f64);
            }
        }
        metrics::gauge!("authd_sealed_values_counted_timestamp_seconds")
            .set(census.counted_at as f64);
    }

    /// Sets the gauges that describe state now.
    fn gauges(&self) {
        for policy in self.verifier.issuers() {
            let keys = policy.keys();
            let issuer = keys.issuer().clone();
            let status = keys.status();
            let age = status.age.map_or(0.0, |a| a.as_secs_f64());
            metrics::gauge!("authd_jwks_keys", "issuer" => issuer.clone()).set(status.keys as f64);
            metrics::gauge!("authd_jwks_age_seconds", "issuer" => issuer.clone()).set(age);
            metrics::gauge!("authd_jwks_serving_stale", "issuer" => issuer.clone())
                .set(f64::from(u8::from(status.serving_stale)));
            metrics::gauge!("authd_jwks_stale_seconds", "issuer" => issuer.clone()).set(
                if status.serving_stale || status.expired {
                    age
                } else {
                    0.0
                },
            );
            metrics::gauge!("authd_jwks_usable", "issuer" => issuer)
                .set(f64::from(u8::from(status.keys > 0 && !status.expired)));
        }
        metrics::gauge!("authd_verify_cache_entries").set(self.verifier.cached_entries() as f64);
        let (held, last_poll_ms) = self.verifier.revocations().status();
        metrics::gauge!("authd_revocations").set(held as f64);
        if let Some(last) = last_poll_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            metrics::gauge!("authd_revocation_poll_lag_seconds")
                .set((now - last).max(0) as f64 / 1000.0);
        }
        process::record();
    }

    /// Whether authd should receive traffic, and why not.
    async fn readiness(&self) -> (bool, String) {
        let mut ready = true;
        let mut body = String::new();
        for policy in self.verifier.issuers() {
            let keys = policy.keys();
            let status = keys.status();
            let issuer = keys.issuer();
            if !status.attempted {
                ready = false;
                let _ = writeln!(
                    body,
                    "issuer {issuer}: NOT READY: first key set fetch under way"
                );
            } else if let Some(error) = status.last_error.filter(|_| status.keys == 0) {
                let _ = writeln!(
                    body,
                    "issuer {issuer}: no key set (its tokens are refused): {error}"
                );
            } else if status.serving_stale {
                let _ = writeln!(
                    body,
                    "issuer {issuer}: serving a key set {} s old; the last fetch failed",
                    status.age.map_or(0, |a| a.as_secs())
                );
            } else {
                let _ = writeln!(body, "issuer {issuer}: {} keys", status.keys);
            }
        }
        if let Some(kms) = self.sealer.as_ref().and_then(|s| s.kms_status()) {
            // Not a reason to take the replica out: VerifyToken needs no
            // KMS, and held data keys keep serving sessions and profiles.
            match kms.failing {
                None => {
                    let _ = writeln!(body, "kms {}: answers", kms.key_id);
                }
                Some((error, since)) => {
                    let serving = match kms.sealing_key_age {
                        Some(age) if age < kms.keep_for => format!(
                            "sealing with a data key held {} s (for {} s more), {} data keys held to open",
                            age.as_secs(),
                            (kms.keep_for - age).as_secs(),
                            kms.held
                        ),
                        _ => format!(
                            "no data key held to seal: new sessions and profiles fail with SEALING_KEYS_UNAVAILABLE; {} data keys held to open",
                            kms.held
                        ),
                    };
                    let _ = writeln!(
                        body,
                        "kms {}: DEGRADED: failing for {} s ({error}); {serving}",
                        kms.key_id,
                        since.as_secs()
                    );
                }
            }
        }
        match tokio::time::timeout(STORE_PROBE, self.store.ping()).await {
            Ok(Ok(())) => body.push_str("store: answers\n"),
            Ok(Err(error)) => {
                ready = false;
                let _ = writeln!(body, "store: NOT READY: {error}");
            }
            Err(_) => {
                ready = false;
                let _ = writeln!(
                    body,
                    "store: NOT READY: no answer within {} s",
                    STORE_PROBE.as_secs()
                );
            }
        }
        (ready, body)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the
/// process ends.
pub async fn serve(listener: TcpListener, observed: Observed) -> std::io::Result<()> {
    let upkeep = observed.handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let router = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(observed);
    axum::serve(listener, router).await
}

async fn render(State(observed): State<Observed>) -> impl IntoResponse {
    observed.gauges();
    observed.census().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        observed.handle.render(),
    )
}

async fn ready(State(observed): State<Observed>) -> impl IntoResponse {
    let (ready, body) = observed.readiness().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// The help text of every metric, shown in the exposition.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("grpc_server_started_total", "RPCs started on the server.");
    describe_counter!(
        "grpc_server_handled_total",
        "RPCs completed on the server, by gRPC code."
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        "Time from receiving an RPC to sending its status."
    );
    describe_counter!(
        "authd_verify_total",
        "Token verifications by configured issuer (else unknown), outcome and ErrorInfo reason."
    );
    describe_counter!(
        "authd_verify_cache_hits_total",
        "Verified-result cache hits."
    );
    describe_counter!(
        "authd_verify_cache_misses_total",
        "Verified-result cache misses."
    );
    describe_counter!(
        "authd_verify_cache_evictions_total",
        "Verified-result cache entries pushed out by its bounds."
    );
    describe_gauge!(
        "authd_verify_cache_entries",
        "Verified-result cache entries."
    );
    describe_gauge!("authd_jwks_keys", "Keys held in the issuer's key set.");
    describe_gauge!("authd_jwks_age_seconds", "Age of the issuer's key set.");
    describe_gauge!(
        "authd_jwks_serving_stale",
        "1 while the last key set fetch failed and an older set still serves."
    );
    describe_gauge!(
        "authd_jwks_stale_seconds",
        "Age of the key set while it serves stale (or is past max_stale), else 0."
    );
    describe_gauge!(
        "authd_jwks_usable",
        "1 when the issuer has keys within max_stale_seconds."
    );
    describe_counter!("authd_jwks_fetches_total", "Key set fetches by outcome.");
    describe_counter!(
        "authd_jwks_unknown_kid_refetches_total",
        "Key set refetches asked for by an unknown kid."
    );
    describe_counter!(
        "authd_jwks_unknown_kid_refused_total",
        "Tokens refused at once because their kid was recently proven unknown."
    );
    describe_counter!(
        "authd_issuer_requests_total",
        "HTTP calls to issuers by endpoint and outcome (rate_limited: HTTP 429)."
    );
    describe_histogram!("authd_issuer_request_seconds", "HTTP calls to issuers.");
    describe_counter!(
        "authd_store_operations_total",
        "Store operations by operation and outcome."
    );
    describe_histogram!("authd_store_operation_seconds", "Store operations.");
    describe_counter!(
        "authd_store_retries_total",
        "DynamoDB attempts retried by the SDK."
    );
    describe_counter!(
        "authd_store_throttles_total",
        "DynamoDB answers that throttled."
    );
    describe_gauge!(
        "authd_store_up",
        "1 while the store answers the health probe."
    );
    describe_counter!("authd_sessions_created_total", "Sessions created.");
    describe_counter!(
        "authd_sessions_refreshed_total",
        "Session refreshes by path: upstream, shared, reused, lease_wait."
    );
    describe_counter!("authd_sessions_revoked_total", "Sessions revoked.");
    describe_gauge!("authd_revocations", "Revocations held in memory.");
    describe_gauge!(
        "authd_sealed_values",
        "Values each key seals, by kind, as the last whole `authd store reseal` walk counted them (key_id \"clear\": profiles not sealed yet)."
    );
    describe_gauge!(
        "authd_sealed_values_counted_timestamp_seconds",
        "When the census behind authd_sealed_values was counted."
    );
    describe_counter!(
        "authd_backchannel_logout_total",
        "Back-channel logout tokens received, by issuer (unknown until one verifies) and outcome: revoked, duplicate, refused, unavailable (the store did not take it; 503), overloaded."
    );
    describe_counter!(
        "authd_account_events_total",
        "Account events (Auth0 Event Streams) received, by issuer and outcome: revoked, duplicate, ignored, refused, unauthorized, unavailable, overloaded."
    );
    describe_counter!(
        "authd_kms_requests_total",
        "KMS calls (generate_data_key, decrypt) by outcome."
    );
    describe_gauge!(
        "authd_kms_data_keys_held",
        "KMS data keys held in memory to open values."
    );
    describe_gauge!(
        "authd_revocation_poll_lag_seconds",
        "Time since the last successful revocation poll started."
    );
    describe_counter!(
        "authd_revocation_polls_total",
        "Revocation polls of the store by outcome."
    );
}
