//! The client's domain types, converted from the protobuf messages: callers
//! never handle prost types.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use authd_proto::pb;

/// A secret string — a session handle, a refresh or access token, a device
/// code. `Debug` and `Display` never print it; [`Secret::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"...\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("...")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// A token authd verified.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// `sub`.
    pub subject: String,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted permissions (Auth0 RBAC).
    pub permissions: Vec<String>,
    /// `sid`, when present.
    pub session_id: Option<String>,
    /// `jti`, when present.
    pub token_id: Option<String>,
    /// `azp` or `client_id`, when present.
    pub authorized_party: Option<String>,
    /// `iat`, when present.
    pub issued_at: Option<SystemTime>,
    /// `exp`.
    pub expires_at: SystemTime,
    /// What the token is bound to (`cnf`), which the request proved; `None`
    /// for a bearer token.
    pub binding: Option<authd_jose::binding::Confirmation>,
    /// Every other claim.
    pub claims: prost_types::Struct,
}

impl VerifiedToken {
    /// Whether the token holds `scope` as a scope or a permission.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .chain(&self.permissions)
            .any(|s| s == scope)
    }
}

/// How a caller proves a user signed in, to start a session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionGrant {
    /// An authorization code for authd to exchange at the issuer.
    AuthorizationCode {
        /// The `code` sent to the redirect URI.
        code: Secret,
        /// The redirect URI of the authorization request.
        redirect_uri: String,
        /// The PKCE code verifier, when PKCE was used.
        code_verifier: Option<Secret>,
        /// The `nonce` of the authorization request.
        nonce: Option<String>,
    },
    /// Tokens the caller already holds.
    ExistingTokens {
        /// The refresh token authd will keep.
        refresh_token: Secret,
        /// The id token whose claims fill the profile.
        id_token: Secret,
        /// A current access token, if any.
        access_token: Option<Secret>,
        /// The `nonce` of the authorization request.
        nonce: Option<String>,
    },
}

/// What to refresh with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RefreshCredential {
    /// A session handle from [`NewSession::handle`].
    SessionHandle(Secret),
    /// A raw refresh token; authd forwards it and returns the rotated one.
    RefreshToken(Secret),
}

/// What to revoke.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RevokeTarget {
    /// One session.
    SessionHandle(Secret),
    /// Every session of a user (trusted services only).
    User(String),
}

/// A session, without its secrets.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Session {
    /// Stable, non-secret id (safe to log).
    pub session_id: String,
    /// The user (`sub`).
    pub user_id: String,
    /// The issuer of the session.
    pub issuer: String,
    /// When it was created.
    pub created_at: Option<SystemTime>,
    /// When it was last refreshed.
    pub refreshed_at: Option<SystemTime>,
    /// When it ends unless refreshed.
    pub expires_at: Option<SystemTime>,
}

/// A session just created, with its handle (returned only once).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewSession {
    /// The session handle: keep it like a password.
    pub handle: Secret,
    /// The session's public description.
    pub session: Session,
    /// A current access token.
    pub access_token: Secret,
    /// When `access_token` expires.
    pub access_token_expires_at: Option<SystemTime>,
    /// The id token, when the issuer returned one.
    pub id_token: Option<Secret>,
    /// The user's profile after this sign-in.
    pub profile: Option<Profile>,
}

/// A fresh access token from RefreshSession.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Refreshed {
    /// The new access token.
    pub access_token: Secret,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
    /// A new id token, when the issuer returned one.
    pub id_token: Option<Secret>,
    /// The rotated refresh token (only when refreshing a raw refresh token).
    pub refresh_token: Option<Secret>,
    /// The scopes granted to the new access token.
    pub scopes: Vec<String>,
}

/// What authd knows of a user.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Profile {
    /// The user id (`sub`).
    pub user_id: String,
    /// The email address.
    pub email: Option<String>,
    /// Whether the issuer verified the email address.
    pub email_verified: bool,
    /// The full name.
    pub name: Option<String>,
    /// The nickname.
    pub nickname: Option<String>,
    /// The picture URL.
    pub picture: Option<String>,
    /// When authd first stored the profile.
    pub created_at: Option<SystemTime>,
    /// When the profile last changed.
    pub updated_at: Option<SystemTime>,
    /// Every other attribute the issuer returned.
    pub attributes: prost_types::Struct,
}

/// What to show the user of a device login.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeviceLogin {
    /// The code to poll with; secret to the device.
    pub device_code: Secret,
    /// The short code the user types at `verification_uri`.
    pub user_code: String,
    /// Where the user approves.
    pub verification_uri: String,
    /// The same with the user code filled in (for a QR code).
    pub verification_uri_complete: Option<String>,
    /// How long to wait between polls.
    pub interval: Duration,
    /// How long until the device code expires.
    pub expires_in: Duration,
}

/// Where a device login stands.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DeviceLoginState {
    /// The user has not answered; poll again after the interval.
    Pending,
    /// Polling too often; wait the (longer) interval.
    SlowDown,
    /// The user refused.
    Denied,
    /// The device code expired; start again.
    Expired,
    /// The user approved: the new session.
    Approved(Box<NewSession>),
}

/// The answer to PollDeviceLogin.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DevicePoll {
    /// Where the login stands.
    pub state: DeviceLoginState,
    /// How long to wait before the next poll.
    pub interval: Duration,
}

// === conversions from the protocol ===

pub(crate) fn time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn secret(s: String) -> Option<Secret> {
    non_empty(s).map(Secret)
}

impl From<pb::VerifyTokenResponse> for VerifiedToken {
    fn from(r: pb::VerifyTokenResponse) -> Self {
        VerifiedToken {
            subject: r.subject,
            issuer: r.issuer,
            audiences: r.audiences,
            scopes: r.scopes,
            permissions: r.permissions,
            session_id: non_empty(r.session_id),
            token_id: non_empty(r.token_id),
            authorized_party: non_empty(r.authorized_party),
            issued_at: time(r.issued_at),
            // authd always sends `exp`; a missing one reads as expired.
            expires_at: time(r.expires_at).unwrap_or(UNIX_EPOCH),
            binding: r.binding.and_then(|b| {
                let jkt = non_empty(b.jkt);
                let x5t_s256 = non_empty(b.x5t_s256);
                (jkt.is_some() || x5t_s256.is_some())
                    .then_some(authd_jose::binding::Confirmation { jkt, x5t_s256 })
            }),
            claims: r.claims.unwrap_or_default(),
        }
    }
}

impl From<SessionGrant> for pb::create_session_request::Grant {
    fn from(grant: SessionGrant) -> Self {
        let expose = |s: Option<Secret>| s.map(|s| s.0).unwrap_or_default();
        match grant {
            SessionGrant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
                nonce,
            } => Self::AuthorizationCode(pb::AuthorizationCodeGrant {
                code: code.0,
                redirect_uri,
                code_verifier: expose(code_verifier),
                nonce: nonce.unwrap_or_default(),
            }),
            SessionGrant::ExistingTokens {
                refresh_token,
                id_token,
                access_token,
                nonce,
            } => Self::ExistingTokens(pb::ExistingTokens {
                refresh_token: refresh_token.0,
                id_token: id_token.0,
                access_token: expose(access_token),
                nonce: nonce.unwrap_or_default(),
            }),
        }
    }
}

impl From<pb::Session> for Session {
    fn from(s: pb::Session) -> Self {
        Session {
            session_id: s.session_id,
            user_id: s.user_id,
            issuer: s.issuer,
            created_at: time(s.created_at),
            refreshed_at: time(s.refreshed_at),
            expires_at: time(s.expires_at),
        }
    }
}

impl From<pb::NewSession> for NewSession {
    fn from(s: pb::NewSession) -> Self {
        NewSession {
            handle: Secret(s.session_handle),
            session: s.session.unwrap_or_default().into(),
            access_token: Secret(s.access_token),
            access_token_expires_at: time(s.access_token_expires_at),
            id_token: secret(s.id_token),
            profile: s.profile.map(Profile::from),
        }
    }
}

impl From<pb::RefreshSessionResponse> for Refreshed {
    fn from(r: pb::RefreshSessionResponse) -> Self {
        Refreshed {
            access_token: Secret(r.access_token),
            expires_at: time(r.expires_at),
            id_token: secret(r.id_token),
            refresh_token: secret(r.refresh_token),
            scopes: r.scopes,
        }
    }
}

impl From<pb::Profile> for Profile {
    fn from(p: pb::Profile) -> Self {
        Profile {
            user_id: p.user_id,
            email: non_empty(p.email),
            email_verified: p.email_verified,
            name: non_empty(p.name),
            nickname: non_empty(p.nickname),
            picture: non_empty(p.picture),
            created_at: time(p.created_at),
            updated_at: time(p.updated_at),
            attributes: p.attributes.unwrap_or_default(),
        }
    }
}

impl From<pb::StartDeviceLoginResponse> for DeviceLogin {
    fn from(r: pb::StartDeviceLoginResponse) -> Self {
        DeviceLogin {
            device_code: Secret(r.device_code),
            user_code: r.user_code,
            verification_uri: r.verification_uri,
            verification_uri_complete: non_empty(r.verification_uri_complete),
            interval: Duration::from_secs(r.interval.into()),
            expires_in: Duration::from_secs(r.expires_in.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("refresh-token-value");
        assert!(!format!("{secret:?} {secret}").contains("refresh"));
        assert_eq!(secret.expose(), "refresh-token-value");
    }

    #[test]
    fn empty_strings_become_none() {
        let profile = Profile::from(pb::Profile {
            user_id: "auth0|a".to_owned(),
            name: "Alice".to_owned(),
            ..Default::default()
        });
        assert_eq!(profile.name.as_deref(), Some("Alice"));
        assert_eq!(profile.email, None);
    }
}
