//! A loopback OpenID Connect issuer for benchmarks: discovery and a JWKS
//! holding one fresh key (RS256 or ES256), and fast minting of many distinct
//! Auth0-shaped access tokens.
//!
//! It is `authd::dangerous::DevIssuer` with the algorithm as a parameter and
//! bulk minting on every core; the keys and signatures come from the same
//! `authd::dangerous::SigningKey`.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use authd::{dangerous::SigningKey, jwks::Algorithm};
use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

/// The scopes every minted token holds; `loadgen --required-scope read:orders`
/// asks for one of them, so the scope check runs too.
pub const SCOPE: &str = "openid profile read:orders";

/// A running benchmark issuer. Dropping it stops its HTTP server.
#[derive(Debug)]
pub struct BenchIssuer {
    issuer: String,
    audience: String,
    key: SigningKey,
    server: JoinHandle<()>,
}

impl Drop for BenchIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl BenchIssuer {
    /// Starts on `bind` (loopback only; port 0 picks one) with a new key for
    /// `alg`; tokens are minted for `audience`.
    pub async fn start(bind: SocketAddr, alg: Algorithm, audience: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(crate::ensure_loopback(bind)?).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}/");
        let key = SigningKey::generate(alg, format!("bench-{}-{}", alg.as_str(), addr.port()))?;
        let discovery = Arc::new(json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": [alg.as_str()],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        }));
        let jwks = Arc::new(json!({ "keys": [key.public_jwk()] }));
        let app =
            Router::new()
                .route(
                    "/.well-known/openid-configuration",
                    get(
                        |State((d, _)): State<(Arc<Value>, Arc<Value>)>| async move {
                            Json((*d).clone())
                        },
                    ),
                )
                .route(
                    "/.well-known/jwks.json",
                    get(
                        |State((_, j)): State<(Arc<Value>, Arc<Value>)>| async move {
                            Json((*j).clone())
                        },
                    ),
                )
                .with_state((discovery, jwks));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("bench-issuer: HTTP server stopped: {error}");
            }
        });
        Ok(BenchIssuer {
            issuer,
            audience: audience.to_owned(),
            key,
            server,
        })
    }

    /// The issuer URL (`iss`), with Auth0's trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the key set is published.
    pub fn jwks_uri(&self) -> String {
        format!("{}.well-known/jwks.json", self.issuer)
    }

    /// The Auth0-shaped claims of token number `n`: its own subject, so that
    /// every token is distinct.
    pub fn claims(&self, n: u64, now: i64, lifetime_seconds: i64) -> Value {
        json!({
            "iss": self.issuer,
            "sub": format!("auth0|bench-user-{n}"),
            "aud": [self.audience, format!("{}userinfo", self.issuer)],
            "iat": now,
            "exp": now + lifetime_seconds,
            "scope": SCOPE,
            "permissions": ["read:orders"],
            "azp": "authd-bench-client",
        })
    }

    /// Mints `count` distinct tokens on every available core (an RSA-2048
    /// signature costs about a millisecond), in order.
    pub fn mint_many(&self, count: u64, lifetime_seconds: i64) -> Vec<String> {
        self.mint_with(count, |n, now| self.claims(n, now, lifetime_seconds))
    }

    /// Mints `count` distinct tokens, signed with this issuer's key, that a
    /// verifier configured for it must refuse for the reason `kind` names.
    pub fn mint_refused(&self, count: u64, kind: Refused) -> Vec<String> {
        self.mint_with(count, |n, now| {
            let mut claims = self.claims(n, now, 3600);
            match kind {
                Refused::Expired => {
                    claims["iat"] = json!(now - 7200);
                    claims["exp"] = json!(now - 3600);
                }
                Refused::WrongAudience => {
                    claims["aud"] = json!([WRONG_AUDIENCE]);
                }
            }
            claims
        })
    }

    /// Signs `claims(n, now)` for every `n` below `count` on every core, in
    /// order.
    fn mint_with(&self, count: u64, claims: impl Fn(u64, i64) -> Value + Sync) -> Vec<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let chunk = count.div_ceil(threads.max(1)).max(1);
        let claims = &claims;
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..count)
                .step_by(chunk as usize)
                .map(|start| {
                    let end = (start + chunk).min(count);
                    scope.spawn(move || {
                        (start..end)
                            .map(|n| self.key.sign(&claims(n, now)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

/// The audience of [`Refused::WrongAudience`] tokens: not the benchmark API.
pub const WRONG_AUDIENCE: &str = "https://other-api.authd.bench";

/// Why a token from [`BenchIssuer::mint_refused`] must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `exp` an hour ago (`TOKEN_EXPIRED`).
    Expired,
    /// `aud` is [`WRONG_AUDIENCE`] only (`WRONG_AUDIENCE`).
    WrongAudience,
}

/// Parses an algorithm name such as `RS256` or `ES256`.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::ALL
        .into_iter()
        .find(|alg| alg.as_str() == name)
        .ok_or_else(|| format!("unknown algorithm {name}"))
}
