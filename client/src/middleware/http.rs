//! [`HttpAuthLayer`]: protects an HTTP server (axum, hyper) with authd, and,
//! with the `axum` feature, the [`VerifiedToken`] extractor.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response, StatusCode, header::WWW_AUTHENTICATE};
use tower::{Layer, Service};

use super::{Denial, Origin, ScopeRules, protect};
#[cfg(feature = "axum")]
use crate::VerifiedToken;
use crate::{AuthClient, ErrorReason};

/// A [`Layer`] that verifies the bearer token of every HTTP request with
/// authd before the request reaches the service.
///
/// A verified request carries the [`VerifiedToken`](crate::VerifiedToken) in
/// its extensions (with the `axum` feature, take it as a handler argument). A
/// refused request is answered here, as RFC 6750 asks:
///
/// | case | status | `WWW-Authenticate` |
/// |---|---|---|
/// | no bearer token | 401 | `Bearer` |
/// | authd refused the token | 401 | `Bearer error="invalid_token", error_description="…"` |
/// | a required scope is missing | 403 | `Bearer error="insufficient_scope", error_description="…", scope="…"` |
/// | authd unreachable or undecided | 503 | — (fail closed) |
///
/// Rules are matched on the request path (see [`ScopeRules`]).
///
/// ```no_run
/// use authd_client::{AuthClient, VerifiedToken, middleware::{ScopeRules, http::HttpAuthLayer}};
/// use axum::{Router, routing::get};
///
/// async fn orders(token: VerifiedToken) -> String {
///     format!("orders of {}", token.subject)
/// }
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let authd = AuthClient::builder().endpoint("http://127.0.0.1:50051").build()?;
/// let rules = ScopeRules::new().default_scopes(["read:orders"]).public("/healthz");
/// let app = Router::new()
///     .route("/orders", get(orders))
///     .route("/healthz", get(|| async { "ok" }))
///     .layer(HttpAuthLayer::new(authd, rules));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpAuthLayer {
    client: AuthClient,
    rules: Arc<ScopeRules>,
    origin: Origin,
}

impl HttpAuthLayer {
    /// Verifies with `client`, requiring the scopes `rules` give each path.
    pub fn new(client: AuthClient, rules: ScopeRules) -> Self {
        HttpAuthLayer {
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

impl<S> Layer<S> for HttpAuthLayer {
    type Service = HttpAuth<S>;

    fn layer(&self, inner: S) -> HttpAuth<S> {
        HttpAuth {
            inner,
            client: self.client.clone(),
            rules: Arc::clone(&self.rules),
            origin: self.origin.clone(),
        }
    }
}

/// The [`Service`] made by [`HttpAuthLayer`].
#[derive(Debug, Clone)]
pub struct HttpAuth<S> {
    inner: S,
    client: AuthClient,
    rules: Arc<ScopeRules>,
    origin: Origin,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpAuth<S>
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
            refusal,
        )
    }
}

/// The response to a refused request: RFC 6750's challenges, or RFC 9449
/// §7.1's `DPoP` ones for a request that used DPoP (`invalid_dpop_proof`,
/// `use_dpop_nonce` with the nonce in `DPoP-Nonce`).
fn refusal<B: Default>(denial: Denial) -> Response<B> {
    let scheme = |dpop: bool| if dpop { "DPoP" } else { "Bearer" };
    let mut nonce = None;
    let (status, challenge) = match denial {
        Denial::Missing => (StatusCode::UNAUTHORIZED, Some("Bearer".to_owned())),
        Denial::Invalid { error, dpop } => {
            let code = match error.reason() {
                Some(ErrorReason::DpopProofInvalid | ErrorReason::DpopProofReplayed) => {
                    "invalid_dpop_proof"
                }
                Some(ErrorReason::DpopNonceRequired) => {
                    nonce = error.metadata().get("nonce").cloned();
                    "use_dpop_nonce"
                }
                Some(ErrorReason::InvalidRequest) => "invalid_request",
                _ => "invalid_token",
            };
            let status = if code == "invalid_request" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            };
            (
                status,
                Some(format!(
                    r#"{} error="{code}", error_description="{}""#,
                    scheme(dpop || code != "invalid_token" && code != "invalid_request"),
                    quoted(error.message())
                )),
            )
        }
        Denial::Forbidden {
            error,
            scopes,
            dpop,
        } => (
            StatusCode::FORBIDDEN,
            Some(format!(
                r#"{} error="insufficient_scope", error_description="{}", scope="{}""#,
                scheme(dpop),
                quoted(error.message()),
                quoted(&scopes.join(" "))
            )),
        ),
        Denial::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
    };
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    if let Some(value) = challenge.and_then(|c| HeaderValue::try_from(c).ok()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    if let Some(value) = nonce.and_then(|n| HeaderValue::try_from(n).ok()) {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

/// `s` with only the characters RFC 6750 allows in a quoted attribute
/// (printable ASCII without `"` and `\`).
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// With the `axum` feature: the token the [`HttpAuthLayer`] verified, as a
/// handler argument. Without the layer in front of the handler, the request
/// is refused with 401.
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for VerifiedToken {
    type Rejection = NotAuthenticated;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedToken>()
            .cloned()
            .ok_or(NotAuthenticated)
    }
}

/// The rejection of the [`VerifiedToken`] extractor when no
/// [`HttpAuthLayer`] verified the request: 401 with `WWW-Authenticate: Bearer`.
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy)]
pub struct NotAuthenticated;

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for NotAuthenticated {
    fn into_response(self) -> axum::response::Response {
        refusal(Denial::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_keeps_only_allowed_characters() {
        assert_eq!(quoted(r#"bad "kid" \ é"#), "bad 'kid' / ?");
    }
}
