//! A development OpenID Connect issuer on loopback: discovery, a JWKS with a
//! freshly generated key, and token minting for a demo user.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use super::signer::{KeyGenerationError, SigningKey};
use crate::jwks::Algorithm;

/// Why the development issuer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// It only ever binds a loopback address.
    #[error("the development issuer binds loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("cannot bind the development issuer: {0}")]
    Bind(#[from] std::io::Error),
    /// The key could not be generated.
    #[error(transparent)]
    Key(#[from] KeyGenerationError),
}

/// A running development issuer. Dropping it stops its HTTP server.
#[derive(Debug)]
pub struct DevIssuer {
    issuer: String,
    audience: String,
    key: SigningKey,
    server: JoinHandle<()>,
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Published {
    discovery: Arc<Value>,
    jwks: Arc<Value>,
}

impl DevIssuer {
    /// Starts on `bind` (port 0 picks one), refusing any non-loopback
    /// address, with a new RS256 key; tokens are minted for `audience`.
    pub async fn start(bind: SocketAddr, audience: &str) -> Result<DevIssuer, DevIssuerError> {
        if !bind.ip().is_loopback() {
            return Err(DevIssuerError::NotLoopback(bind));
        }
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}/");
        let key = SigningKey::generate(Algorithm::RS256, format!("dev-{}", addr.port()))?;
        let published = Published {
            discovery: Arc::new(json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}.well-known/jwks.json"),
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
            })),
            jwks: Arc::new(json!({ "keys": [key.public_jwk()] })),
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(p): State<Published>| async move { Json((*p.discovery).clone()) }),
            )
            .route(
                "/.well-known/jwks.json",
                get(|State(p): State<Published>| async move { Json((*p.jwks).clone()) }),
            )
            .with_state(published);
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "development issuer stopped");
            }
        });
        Ok(DevIssuer {
            issuer,
            audience: audience.to_owned(),
            key,
            server,
        })
    }

    /// The issuer URL (`iss`), with the trailing slash Auth0 uses.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience its tokens carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Mints an access token for `subject`, valid for `lifetime_seconds`,
    /// with Auth0-shaped claims.
    pub fn mint(
        &self,
        subject: &str,
        scopes: &[&str],
        permissions: &[&str],
        lifetime_seconds: i64,
    ) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.key.sign(&json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": [self.audience, format!("{}userinfo", self.issuer)],
            "iat": now,
            "exp": now + lifetime_seconds,
            "scope": scopes.join(" "),
            "permissions": permissions,
            "azp": "authd-dev-client",
        }))
    }
}
