//! A typed Rust client for authd.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use authd_client::{AuthClient, ErrorReason};
//!
//! let mut client = AuthClient::connect("http://127.0.0.1:50051").await?;
//! match client.verify_token("eyJ...", &["read:orders"]).await {
//!     Ok(token) => println!("hello {}", token.subject),
//!     Err(e) if e.reason() == Some(ErrorReason::TokenExpired) => println!("refresh first"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use authd_proto::pb::ErrorReason;
use authd_proto::{ERROR_DOMAIN, pb};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

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

/// An error from authd or from the connection to it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
#[non_exhaustive]
pub struct AuthError {
    code: Code,
    message: String,
    reason: Option<ErrorReason>,
    metadata: HashMap<String, String>,
}

impl AuthError {
    /// The gRPC status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// authd's reason, decoded from `google.rpc.ErrorInfo`; `None` when the
    /// error did not come from authd (e.g. a connection failure).
    pub fn reason(&self) -> Option<ErrorReason> {
        self.reason
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `ErrorInfo` metadata (e.g. `missing` for INSUFFICIENT_SCOPE).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Whether authd could not be reached or could not decide: callers must
    /// fail closed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.code, Code::Unavailable | Code::DeadlineExceeded)
    }
}

impl From<Status> for AuthError {
    fn from(status: Status) -> Self {
        let (reason, metadata) = match status.get_details_error_info() {
            Some(info) if info.domain == ERROR_DOMAIN => (
                ErrorReason::from_str_name(&format!("ERROR_REASON_{}", info.reason)),
                info.metadata,
            ),
            _ => (None, HashMap::new()),
        };
        AuthError {
            code: status.code(),
            message: status.message().to_owned(),
            reason,
            metadata,
        }
    }
}

impl From<tonic::transport::Error> for AuthError {
    fn from(error: tonic::transport::Error) -> Self {
        AuthError {
            code: Code::Unavailable,
            message: error.to_string(),
            reason: None,
            metadata: HashMap::new(),
        }
    }
}

/// A client of `auth.v1.AuthService`.
#[derive(Debug, Clone)]
pub struct AuthClient {
    inner: pb::auth_service_client::AuthServiceClient<Channel>,
}

impl AuthClient {
    /// Connects to authd at `uri`, e.g. `http://127.0.0.1:50051`.
    pub async fn connect(uri: impl Into<String>) -> Result<Self, AuthError> {
        let channel = Channel::from_shared(uri.into())
            .map_err(|e| AuthError {
                code: Code::InvalidArgument,
                message: e.to_string(),
                reason: None,
                metadata: HashMap::new(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(Self::from_channel(channel))
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        AuthClient {
            inner: pb::auth_service_client::AuthServiceClient::new(channel),
        }
    }

    /// Verifies `token`, requiring every scope in `required_scopes`.
    pub async fn verify_token(
        &mut self,
        token: &str,
        required_scopes: &[&str],
    ) -> Result<VerifiedToken, AuthError> {
        let request = pb::VerifyTokenRequest {
            token: token.to_owned(),
            required_scopes: required_scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: None,
        };
        let response = self.inner.verify_token(request).await?.into_inner();
        Ok(verified_token(response))
    }

    /// The generated client, for the methods not wrapped yet.
    pub fn raw(&mut self) -> &mut pb::auth_service_client::AuthServiceClient<Channel> {
        &mut self.inner
    }
}

fn time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn verified_token(r: pb::VerifyTokenResponse) -> VerifiedToken {
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
        expires_at: time(r.expires_at).unwrap_or(UNIX_EPOCH),
        claims: r.claims.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn reason_is_decoded_from_error_info() {
        let status = Status::with_error_details(
            Code::Unauthenticated,
            "expired",
            ErrorDetails::with_error_info(
                "TOKEN_EXPIRED",
                "authd",
                [("expired_at".to_owned(), "1".to_owned())],
            ),
        );
        let error = AuthError::from(status);
        assert_eq!(error.reason(), Some(ErrorReason::TokenExpired));
        assert_eq!(error.metadata()["expired_at"], "1");
    }

    #[test]
    fn foreign_error_info_is_not_trusted() {
        let status = Status::with_error_details(
            Code::Unauthenticated,
            "x",
            ErrorDetails::with_error_info("TOKEN_EXPIRED", "example.com", HashMap::new()),
        );
        assert_eq!(AuthError::from(status).reason(), None);
    }
}
