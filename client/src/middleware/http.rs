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

use super::{Denial, ScopeRules, protect};
use crate::AuthClient;
#[cfg(feature = "axum")]
use crate::VerifiedToken;

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
}

impl HttpAuthLayer {
    /// Verifies with `client`, requiring the scopes `rules` give each path.
    pub fn new(client: AuthClient, rules: ScopeRules) -> Self {
        HttpAuthLayer {
            client,
            rules: Arc::new(rules),
        }
    }
}

impl<S> Layer<S> for HttpAuthLayer {
    type Service = HttpAuth<S>;

    fn layer(&self, inner: S) -> HttpAuth<S> {
        HttpAuth {
            inner,
            client: self.client.clone(),
            rules: Arc::clone(&self.rules),
        }
    }
}

/// The [`Service`] made by [`HttpAuthLayer`].
#[derive(Debug, Clone)]
pub struct HttpAuth<S> {
    inner: S,
    client: AuthClient,
    rules: Arc<ScopeRules>,
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
        protect(&mut self.inner, &self.client, &self.rules, request, refusal)
    }
}

/// The response to a refused request.
fn refusal<B: Default>(denial: Denial) -> Response<B> {
    let (status, challenge) = match denial {
        Denial::Missing => (StatusCode::UNAUTHORIZED, Some("Bearer".to_owned())),
        Denial::Invalid(error) => (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                quoted(error.message())
            )),
        ),
        Denial::Forbidden { error, scopes } => (
            StatusCode::FORBIDDEN,
            Some(format!(
                r#"Bearer error="insufficient_scope", error_description="{}", scope="{}""#,
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
