//! Every HTTP call to an issuer, counted and timed by endpoint and outcome
//! (`authd_issuer_requests_total`, `authd_issuer_request_seconds`), inside
//! a child span of the call being served.

use std::{future::Future, time::Instant};

use tracing::Instrument;

use super::{IssuerClient, IssuerError};

impl IssuerClient {
    /// Runs `call` to the issuer's `endpoint` (a fixed name such as `jwks`),
    /// recording its outcome.
    pub(crate) async fn observed<T>(
        &self,
        endpoint: &'static str,
        call: impl Future<Output = Result<T, IssuerError>>,
    ) -> Result<T, IssuerError> {
        let span = tracing::info_span!(
            target: crate::telemetry::CHILD_TARGET,
            "issuer request",
            otel.kind = "client",
            issuer = %self.issuer,
            endpoint,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let outcome = outcome(&result);
        span.record("outcome", outcome);
        metrics::counter!(
            "authd_issuer_requests_total",
            "issuer" => self.issuer.clone(),
            "endpoint" => endpoint,
            "outcome" => outcome,
        )
        .increment(1);
        metrics::histogram!(
            "authd_issuer_request_seconds",
            "issuer" => self.issuer.clone(),
            "endpoint" => endpoint,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The outcome label of a call: a closed set.
fn outcome<T>(result: &Result<T, IssuerError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(IssuerError::RateLimited { .. }) => "rate_limited",
        Err(IssuerError::Http { source, .. }) if source.is_timeout() => "timeout",
        Err(IssuerError::Http { .. }) => "unreachable",
        Err(IssuerError::Refused { .. } | IssuerError::Grant { .. }) => "refused",
        Err(IssuerError::Status { .. }) => "bad_status",
        Err(_) => "bad_answer",
    }
}
