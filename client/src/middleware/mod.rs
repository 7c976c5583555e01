//! tower middleware that protects a service with authd: it reads the
//! `authorization: Bearer …` header, asks authd's VerifyToken with the scopes
//! the request's path requires, and either passes the request on with the
//! [`VerifiedToken`] in its extensions or answers the refusal itself.
//!
//! - [`grpc`] (feature `tonic-middleware`): for tonic servers; refusals are
//!   gRPC statuses carrying authd's `google.rpc.ErrorInfo`.
//! - [`http`] (feature `http-middleware`, or `axum` with an extractor): for
//!   HTTP servers; refusals are 401/403 with an RFC 6750 `WWW-Authenticate`.
//!
//! Both fail **closed**: when authd cannot be reached or cannot decide, the
//! request is refused with gRPC `UNAVAILABLE` / HTTP 503, never let through.

#[cfg(feature = "tonic-middleware")]
pub mod grpc;
#[cfg(feature = "http-middleware")]
pub mod http;

use std::collections::HashMap;

use ::http::{HeaderMap, header::AUTHORIZATION};
use tonic::Code;

use crate::{AuthClient, AuthError, Presented, VerifiedToken};

/// What a path needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    /// No token at all (health checks, reflection).
    Public,
    /// A verified token holding all these scopes.
    Scopes(Vec<String>),
}

/// The scopes each request path requires.
///
/// A rule's path is either exact (`/pkg.Service/Method`, `/orders`) or, when
/// it ends with `/`, a prefix of one segment (`/pkg.Service/` covers every
/// method of a gRPC service; `/orders/` covers `/orders/42`). The exact rule
/// wins, then the prefix, then the default (a verified token with no
/// particular scope, unless set with [`ScopeRules::default_scopes`]).
///
/// ```
/// use authd_client::middleware::ScopeRules;
///
/// let rules = ScopeRules::new()
///     .default_scopes(["read:orders"])
///     .require("/shop.v1.Orders/Cancel", ["write:orders"])
///     .public("/grpc.health.v1.Health/");
/// ```
#[derive(Debug, Clone)]
pub struct ScopeRules {
    default: Access,
    paths: HashMap<String, Access>,
}

impl Default for ScopeRules {
    fn default() -> Self {
        ScopeRules {
            default: Access::Scopes(Vec::new()),
            paths: HashMap::new(),
        }
    }
}

impl ScopeRules {
    /// Every request needs a verified token, with no particular scope.
    pub fn new() -> Self {
        ScopeRules::default()
    }

    /// The scopes of every path without a rule of its own.
    pub fn default_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.default = Access::Scopes(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// `path` needs a token holding all of `scopes`.
    pub fn require<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        path: impl Into<String>,
        scopes: I,
    ) -> Self {
        let scopes = scopes.into_iter().map(Into::into).collect();
        self.paths.insert(path.into(), Access::Scopes(scopes));
        self
    }

    /// `path` needs no token: requests pass without calling authd.
    pub fn public(mut self, path: impl Into<String>) -> Self {
        self.paths.insert(path.into(), Access::Public);
        self
    }

    fn access(&self, path: &str) -> &Access {
        if let Some(access) = self.paths.get(path) {
            return access;
        }
        let prefix = path.rfind('/').map(|i| &path[..=i]);
        prefix
            .and_then(|prefix| self.paths.get(prefix))
            .unwrap_or(&self.default)
    }
}

/// Why a request was refused.
#[derive(Debug)]
enum Denial {
    /// No bearer token in the request.
    Missing,
    /// authd refused the token (UNAUTHENTICATED, INVALID_ARGUMENT); `dpop`:
    /// the request used DPoP, so its challenge is a `DPoP` one.
    Invalid { error: AuthError, dpop: bool },
    /// The token lacks a required scope (PERMISSION_DENIED).
    Forbidden {
        error: AuthError,
        scopes: Vec<String>,
        dpop: bool,
    },
    /// authd could not be reached or could not decide.
    Unavailable(AuthError),
}

impl Denial {
    /// Sorts a refusal by its code.
    fn of(error: AuthError, scopes: &[String], dpop: bool) -> Denial {
        match error.code() {
            Code::Unauthenticated | Code::InvalidArgument => Denial::Invalid { error, dpop },
            Code::PermissionDenied => Denial::Forbidden {
                error,
                scopes: scopes.to_vec(),
                dpop,
            },
            // Anything else — authd down, overloaded, broken — cannot vouch
            // for the token: refuse.
            _ => {
                tracing::warn!(%error, "authd could not verify a token: refusing the request");
                Denial::Unavailable(error)
            }
        }
    }
}

/// The `authorization` value when its scheme is `Bearer` or `DPoP` (any
/// case) with a token.
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    ((scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop"))
        && !token.trim().is_empty())
    .then_some(value)
}

/// The `DPoP` header: one value, or several joined by `,` (which the proof
/// checks refuse).
fn dpop_proof(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all("dpop").iter();
    let first = values.next()?;
    let mut proof = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for more in values {
        proof.push(',');
        proof.push_str(&String::from_utf8_lossy(more.as_bytes()));
    }
    Some(proof)
}

/// The client certificate (DER) of the connection a request came on, for
/// certificate-bound tokens (RFC 8705): the server's TLS acceptor puts it in
/// the request's extensions, and the layers pass it to authd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Vec<u8>);

/// Where a protected service is reached, for DPoP proofs' `htu`: the
/// scheme and authority its clients address (`https://api.example.com`),
/// set on a layer. A request's `Host` or `X-Forwarded-*` are never used:
/// any client can send them.
#[derive(Debug, Clone, Default)]
struct Origin(Option<std::sync::Arc<str>>);

impl Origin {
    fn new(origin: &str) -> Origin {
        Origin(Some(origin.trim_end_matches('/').into()))
    }

    /// The request's URI as its client addressed it; empty without an origin.
    fn uri(&self, path: &str) -> String {
        self.0
            .as_deref()
            .map_or_else(String::new, |origin| format!("{origin}{path}"))
    }
}

/// Asks authd (the cache did not answer) and sorts its answer.
async fn ask(
    mut client: AuthClient,
    presented: Owned,
    scopes: &[String],
) -> Result<VerifiedToken, Denial> {
    let required: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let dpop = presented.dpop();
    client
        .verify(&presented.borrow(), &required)
        .await
        .map_err(|error| Denial::of(error, scopes, dpop))
}

/// What a request presents, owned for the future that asks authd.
struct Owned {
    authorization: String,
    dpop_proof: Option<String>,
    method: String,
    uri: String,
    certificate: Option<Vec<u8>>,
}

impl Owned {
    fn borrow(&self) -> Presented<'_> {
        Presented {
            authorization: &self.authorization,
            dpop_proof: self.dpop_proof.as_deref(),
            http_method: &self.method,
            http_uri: &self.uri,
            client_certificate: self.certificate.as_deref(),
        }
    }

    fn dpop(&self) -> bool {
        self.dpop_proof.is_some() || is_dpop(&self.authorization)
    }
}

fn is_dpop(authorization: &str) -> bool {
    authd_jose::binding::split_authorization(authorization).0 == authd_jose::binding::Scheme::Dpop
}

/// The future both layers answer with.
type Answer<R, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<::http::Response<R>, E>> + Send>>;

/// The call path both layers share: take the ready service (leaving a fresh
/// clone in its place), decide, then pass the request on with the
/// [`VerifiedToken`](crate::VerifiedToken) in its extensions, or answer the
/// refusal with `refuse`. A public path, a missing token and a cache hit
/// are decided here, before any future is made; only a call to authd
/// clones the client.
fn protect<S, B, R>(
    inner: &mut S,
    client: &AuthClient,
    rules: &std::sync::Arc<ScopeRules>,
    origin: &Origin,
    mut request: ::http::Request<B>,
    refuse: fn(Denial) -> ::http::Response<R>,
) -> Answer<R, S::Error>
where
    S: tower::Service<::http::Request<B>, Response = ::http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: 'static,
{
    let clone = inner.clone();
    let mut inner = std::mem::replace(inner, clone);
    let scopes = match rules.access(request.uri().path()) {
        Access::Public => return Box::pin(inner.call(request)),
        Access::Scopes(scopes) => scopes,
    };
    let Some(authorization) = credential(request.headers()) else {
        return Box::pin(async move { Ok(refuse(Denial::Missing)) });
    };
    let proof = dpop_proof(request.headers());
    let dpop = proof.is_some() || is_dpop(authorization);
    let uri = if dpop {
        origin.uri(request.uri().path())
    } else {
        String::new()
    };
    let certificate = request
        .extensions()
        .get::<ClientCertificate>()
        .map(|c| c.0.as_slice());
    let presented = Presented {
        authorization,
        dpop_proof: proof.as_deref(),
        http_method: request.method().as_str(),
        http_uri: &uri,
        client_certificate: certificate,
    };
    match client.cached(&presented, scopes) {
        Some(Ok(verified)) => {
            request.extensions_mut().insert(verified);
            return Box::pin(inner.call(request));
        }
        Some(Err(error)) => {
            let denial = Denial::of(error, scopes, dpop);
            return Box::pin(async move { Ok(refuse(denial)) });
        }
        None => {}
    }
    let owned = Owned {
        authorization: authorization.to_owned(),
        method: presented.http_method.to_owned(),
        certificate: certificate.map(<[u8]>::to_vec),
        dpop_proof: proof,
        uri,
    };
    let (scopes, client) = (scopes.clone(), client.clone());
    Box::pin(async move {
        match ask(client, owned, &scopes).await {
            Ok(verified) => {
                request.extensions_mut().insert(verified);
                inner.call(request).await
            }
            Err(denial) => Ok(refuse(denial)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rule_wins_over_prefix_over_default() {
        let rules = ScopeRules::new()
            .default_scopes(["d"])
            .require("/pkg.S/", ["s"])
            .require("/pkg.S/M", ["m"])
            .public("/grpc.health.v1.Health/");
        let scopes = |s: &[&str]| Access::Scopes(s.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(rules.access("/pkg.S/M"), &scopes(&["m"]));
        assert_eq!(rules.access("/pkg.S/N"), &scopes(&["s"]));
        assert_eq!(rules.access("/other.S/M"), &scopes(&["d"]));
        assert_eq!(
            rules.access("/grpc.health.v1.Health/Check"),
            &Access::Public
        );
        // A prefix covers one segment only.
        assert_eq!(rules.access("/pkg.S/M/deeper"), &scopes(&["d"]));
    }

    #[test]
    fn bearer_or_dpop_scheme_is_case_insensitive_and_required() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, v.parse().expect("header value"));
            h
        };
        assert_eq!(credential(&headers("Bearer abc")), Some("Bearer abc"));
        assert_eq!(credential(&headers("bearer abc")), Some("bearer abc"));
        assert_eq!(credential(&headers("DPoP abc")), Some("DPoP abc"));
        assert_eq!(credential(&headers("Basic abc")), None);
        assert_eq!(credential(&headers("Bearer")), None);
        assert_eq!(credential(&headers("DPoP  ")), None);
        assert_eq!(credential(&HeaderMap::new()), None);
    }

    #[test]
    fn several_dpop_headers_are_joined_for_the_checks_to_refuse() {
        let mut h = HeaderMap::new();
        assert_eq!(dpop_proof(&h), None);
        h.append("dpop", "a.b.c".parse().expect("value"));
        assert_eq!(dpop_proof(&h).as_deref(), Some("a.b.c"));
        h.append("dpop", "d.e.f".parse().expect("value"));
        assert_eq!(dpop_proof(&h).as_deref(), Some("a.b.c,d.e.f"));
    }
}
