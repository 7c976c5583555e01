//! [`GrpcAuthLayer`]: protects a tonic server with authd.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use authd_proto::ERROR_DOMAIN;
use http::{Request, Response};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::{Denial, Origin, ScopeRules, protect};
use crate::{AuthClient, AuthError};

/// A [`Layer`] that verifies the bearer token of every gRPC call with authd
/// before the call reaches the service.
///
/// A verified call carries the [`VerifiedToken`](crate::VerifiedToken) in its
/// extensions (`request.extensions().get::<VerifiedToken>()` in a tonic
/// handler). A refused call is answered here: `UNAUTHENTICATED` (no token, or
/// a bad one), `PERMISSION_DENIED` (a required scope missing) — both with
/// authd's `google.rpc.ErrorInfo` — or `UNAVAILABLE` when authd cannot be
/// asked (fail closed).
///
/// ```no_run
/// use authd_client::{AuthClient, middleware::{ScopeRules, grpc::GrpcAuthLayer}};
/// use tonic::transport::Server;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let authd = AuthClient::builder().endpoint("http://127.0.0.1:50051").build()?;
/// let rules = ScopeRules::new()
///     .default_scopes(["read:status"])
///     .public("/grpc.health.v1.Health/Watch");
/// let (_, health) = tonic_health::server::health_reporter();
/// Server::builder()
///     .layer(GrpcAuthLayer::new(authd, rules))
///     .add_service(health)
///     .serve("127.0.0.1:8080".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer {
    client: AuthClient,
    rules: Arc<ScopeRules>,
    origin: Origin,
}

impl GrpcAuthLayer {
    /// Verifies with `client`, requiring the scopes `rules` give each method
    /// (`/package.Service/Method`).
    pub fn new(client: AuthClient, rules: ScopeRules) -> Self {
        GrpcAuthLayer {
            client,
            rules: Arc::new(rules),
            origin: Origin::default(),
        }
    }

    /// The scheme and authority clients address this service by
    /// (`https://api.example.com`), which DPoP proofs' `htu` must name with
    /// the request's path. Without it, requests with DPoP are refused: a
    /// request's own `Host` is never trusted for this.
    pub fn dpop_origin(mut self, origin: &str) -> Self {
        self.origin = Origin::new(origin);
        self
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            client: self.client.clone(),
            rules: Arc::clone(&self.rules),
            origin: self.origin.clone(),
        }
    }
}

/// The [`Service`] made by [`GrpcAuthLayer`].
#[derive(Debug, Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    client: AuthClient,
    rules: Arc<ScopeRules>,
    origin: Origin,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        protect(
            &mut self.inner,
            &self.client,
            &self.rules,
            &self.origin,
            request,
            |denial| status(denial).into_http(),
        )
    }
}

/// The gRPC status of a refusal, with authd's ErrorInfo when it gave one.
fn status(denial: Denial) -> Status {
    let (code, error) = match denial {
        Denial::Missing => {
            return Status::with_error_details(
                Code::Unauthenticated,
                "no bearer token in the authorization metadata",
                ErrorDetails::with_error_info("TOKEN_MISSING", ERROR_DOMAIN, []),
            );
        }
        Denial::Invalid { error, .. } => (Code::Unauthenticated, error),
        Denial::Forbidden { error, .. } => (Code::PermissionDenied, error),
        Denial::Unavailable(error) => {
            // Connection details stay in the log.
            let message = "the authorization service is unavailable";
            return match error.reason() {
                Some(reason) => Status::with_error_details(
                    Code::Unavailable,
                    message,
                    ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, []),
                ),
                None => Status::unavailable(message),
            };
        }
    };
    with_reason(code, &error)
}

fn with_reason(code: Code, error: &AuthError) -> Status {
    match error.reason() {
        Some(reason) => Status::with_error_details(
            code,
            error.message(),
            ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, error.metadata().clone()),
        ),
        None => Status::new(code, error.message()),
    }
}
