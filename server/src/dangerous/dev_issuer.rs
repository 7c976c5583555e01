//! A development OpenID Connect issuer on loopback: discovery, a JWKS with a
//! freshly generated key, token minting for a demo user, and just enough of
//! OAuth for a local session walkthrough — the device grant (approved by
//! opening the verification link), refresh tokens that rotate, revocation
//! and userinfo. Everything lives in memory and dies with the process.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use super::signer::{KeyGenerationError, SigningKey};
use crate::{jwks::Algorithm, secrets::random_handle};

/// The demo user every development login signs in as.
pub const DEMO_USER: &str = "auth0|demo-user";
/// The development OAuth client.
pub const DEV_CLIENT_ID: &str = "authd-dev-client";

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

#[derive(Debug)]
struct Device {
    user_code: String,
    approved: bool,
    expires_at: i64,
}

#[derive(Debug)]
struct Family {
    sid: String,
    scope: String,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Grants {
    devices: HashMap<String, Device>,
    /// refresh token → (family id, still current)
    refresh_tokens: HashMap<String, (String, bool)>,
    families: HashMap<String, Family>,
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    audience: String,
    client_secret: String,
    key: SigningKey,
    grants: Mutex<Grants>,
}

/// A running development issuer. Dropping it stops its HTTP server.
#[derive(Debug)]
pub struct DevIssuer {
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
        let inner = Arc::new(Inner {
            issuer: format!("http://{addr}/"),
            audience: audience.to_owned(),
            client_secret: random_handle(),
            key: SigningKey::generate(Algorithm::RS256, format!("dev-{}", addr.port()))?,
            grants: Mutex::new(Grants::default()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/oauth/device/code", post(device_code))
            .route("/activate", get(activate))
            .route("/oauth/token", post(token))
            .route("/oauth/revoke", post(revoke))
            .route("/userinfo", get(userinfo))
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "development issuer stopped");
            }
        });
        Ok(DevIssuer { inner, server })
    }

    /// The issuer URL (`iss`), with the trailing slash Auth0 uses.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience its tokens carry.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The OAuth client authd uses with it.
    pub fn client_id(&self) -> &str {
        DEV_CLIENT_ID
    }

    /// That client's secret, fresh for each start.
    pub fn client_secret(&self) -> &str {
        &self.inner.client_secret
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
        self.inner.access_token(
            subject,
            &scopes.join(" "),
            permissions,
            None,
            lifetime_seconds,
        )
    }

    /// A back-channel logout token (`typ: logout+jwt`) for `subject` and,
    /// when given, the IdP session `sid`, addressed to the development
    /// client (`aud`), as an identity provider posts it.
    pub fn mint_logout(&self, subject: &str, sid: Option<&str>) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.inner.issuer,
            "sub": subject,
            "aud": DEV_CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": crate::secrets::random_handle(),
            "events": {crate::logout::LOGOUT_EVENT: {}},
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        let header = json!({"alg": self.inner.key.alg().as_str(), "typ": "logout+jwt", "kid": self.inner.key.kid()});
        self.inner.key.sign_with_header(&header, &claims)
    }

    /// [`Self::mint`] bound to the DPoP key whose RFC 7638 thumbprint is
    /// `jkt` (`cnf.jkt`, RFC 9449).
    pub fn mint_dpop_bound(
        &self,
        subject: &str,
        scopes: &[&str],
        jkt: &str,
        lifetime_seconds: i64,
    ) -> String {
        let now = now();
        self.inner.key.sign(&json!({
            "iss": self.inner.issuer,
            "sub": subject,
            "aud": [self.inner.audience, format!("{}userinfo", self.inner.issuer)],
            "iat": now,
            "exp": now + lifetime_seconds,
            "scope": scopes.join(" "),
            "azp": DEV_CLIENT_ID,
            "cnf": {"jkt": jkt},
        }))
    }
}

impl Inner {
    fn access_token(
        &self,
        subject: &str,
        scope: &str,
        permissions: &[&str],
        sid: Option<&str>,
        lifetime: i64,
    ) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": [self.audience, format!("{}userinfo", self.issuer)],
            "iat": now,
            "exp": now + lifetime,
            "scope": scope,
            "permissions": permissions,
            "azp": DEV_CLIENT_ID,
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        self.key.sign(&claims)
    }

    fn profile(&self) -> Value {
        json!({
            "sub": DEMO_USER,
            "name": "Demo User",
            "nickname": "demo",
            "email": "demo@authd.dev",
            "email_verified": true,
            "picture": "https://authd.dev/demo.png",
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Grants> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tokens for a login of the demo user in `family`.
    fn tokens(&self, family: &str, grants: &mut Grants) -> Value {
        let Some(f) = grants.families.get(family) else {
            return json!({});
        };
        let (sid, scope) = (f.sid.clone(), f.scope.clone());
        let refresh_token = random_handle();
        grants
            .refresh_tokens
            .insert(refresh_token.clone(), (family.to_owned(), true));
        let mut id_claims = self.profile();
        let now = now();
        id_claims["iss"] = json!(self.issuer);
        id_claims["aud"] = json!(DEV_CLIENT_ID);
        id_claims["iat"] = json!(now);
        id_claims["exp"] = json!(now + 36_000);
        id_claims["sid"] = json!(sid);
        json!({
            "access_token": self.access_token(DEMO_USER, &scope, &["read:orders"], Some(&sid), 3600),
            "id_token": self.key.sign(&id_claims),
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": scope,
        })
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

async fn discovery(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let issuer = &inner.issuer;
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}oauth/token"),
        "revocation_endpoint": format!("{issuer}oauth/revoke"),
        "device_authorization_endpoint": format!("{issuer}oauth/device/code"),
        "userinfo_endpoint": format!("{issuer}userinfo"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({ "keys": [inner.key.public_jwk()] }))
}

#[derive(Deserialize)]
struct DeviceCodeForm {
    client_id: String,
    #[serde(default)]
    scope: String,
}

async fn device_code(
    State(inner): State<Arc<Inner>>,
    Form(form): Form<DeviceCodeForm>,
) -> Response {
    if form.client_id != DEV_CLIENT_ID {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let device_code = random_handle();
    let user_code = device_code
        .chars()
        .filter(char::is_ascii_uppercase)
        .take(8)
        .collect::<String>();
    let user_code = format!("{:A<8}", user_code);
    let family = random_handle();
    let mut grants = inner.lock();
    grants.devices.insert(
        device_code.clone(),
        Device {
            user_code: user_code.clone(),
            approved: false,
            expires_at: now() + 900,
        },
    );
    grants.families.insert(
        format!("device:{device_code}"),
        Family {
            sid: family[..16].to_owned(),
            scope: form.scope,
            revoked: false,
        },
    );
    let verification_uri = format!("{}activate", inner.issuer);
    Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "interval": 1,
        "expires_in": 900,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ActivateQuery {
    user_code: String,
}

/// Opening the verification link signs the demo user in and approves.
async fn activate(State(inner): State<Arc<Inner>>, Query(query): Query<ActivateQuery>) -> Response {
    let mut grants = inner.lock();
    match grants
        .devices
        .values_mut()
        .find(|d| d.user_code == query.user_code)
    {
        Some(device) => {
            device.approved = true;
            (
                StatusCode::OK,
                format!("Approved: {DEMO_USER} is signed in on the device.\n"),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "Unknown code.\n").into_response(),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    device_code: String,
    #[serde(default)]
    refresh_token: String,
}

async fn token(State(inner): State<Arc<Inner>>, Form(form): Form<TokenForm>) -> Response {
    if form.client_id != DEV_CLIENT_ID || form.client_secret != inner.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut grants = inner.lock();
    match form.grant_type.as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let Some(device) = grants.devices.get(&form.device_code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if device.expires_at < now() {
                return oauth_error(StatusCode::BAD_REQUEST, "expired_token");
            }
            if !device.approved {
                return oauth_error(StatusCode::BAD_REQUEST, "authorization_pending");
            }
            grants.devices.remove(&form.device_code);
            let family = format!("device:{}", form.device_code);
            Json(inner.tokens(&family, &mut grants)).into_response()
        }
        "refresh_token" => {
            let Some((family, current)) = grants.refresh_tokens.get(&form.refresh_token).cloned()
            else {
                return oauth_error(StatusCode::FORBIDDEN, "invalid_grant");
            };
            let revoked = grants.families.get(&family).is_none_or(|f| f.revoked);
            if revoked || !current {
                // Reuse of a rotated token revokes the family, as Auth0 does.
                if let Some(f) = grants.families.get_mut(&family) {
                    f.revoked = true;
                }
                return oauth_error(StatusCode::FORBIDDEN, "invalid_grant");
            }
            grants
                .refresh_tokens
                .insert(form.refresh_token.clone(), (family.clone(), false));
            Json(inner.tokens(&family, &mut grants)).into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
}

async fn revoke(State(inner): State<Arc<Inner>>, Form(form): Form<RevokeForm>) -> StatusCode {
    let mut grants = inner.lock();
    if let Some((family, _)) = grants.refresh_tokens.get(&form.token).cloned()
        && let Some(f) = grants.families.get_mut(&family)
    {
        f.revoked = true;
    }
    StatusCode::OK
}

async fn userinfo(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) if inner.signed_by_us(token) => Json(inner.profile()).into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

impl Inner {
    /// Whether `token` is an unexpired token this issuer signed.
    fn signed_by_us(&self, token: &str) -> bool {
        let Ok(parsed) = crate::verify::token::parse(token) else {
            return false;
        };
        let Ok(jwk) = serde_json::from_value(self.key.public_jwk()) else {
            return false;
        };
        let Ok(key) = crate::jwks::VerifyingKey::from_jwk(&jwk, &[Algorithm::RS256]) else {
            return false;
        };
        parsed.claims.iss == self.issuer
            && parsed.claims.exp.is_some_and(|exp| exp as i64 > now())
            && key.verify(Algorithm::RS256, parsed.signing_input, &parsed.signature)
    }
}
