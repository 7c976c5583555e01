//! [`AuthError`]: what went wrong, with authd's reason decoded from
//! `google.rpc.ErrorInfo`.

use std::collections::HashMap;

use authd_proto::ERROR_DOMAIN;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Why authd refused a request: the `reason` of its `google.rpc.ErrorInfo`
/// (the `auth.v1.ErrorReason` value without `ERROR_REASON_`).
///
/// A newer authd may send a reason this client does not know yet: it arrives
/// as [`ErrorReason::Other`], so a `match` keeps working.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorReason {
    /// The request carried no token.
    TokenMissing,
    /// The token is larger than authd accepts; metadata `max_bytes`.
    TokenTooLarge,
    /// Not a well-formed JWT, or a header authd refuses; metadata `detail`.
    MalformedToken,
    /// The signature does not verify.
    BadSignature,
    /// No key of the issuer has the token's `kid`; metadata `issuer`, `kid`.
    UnknownKey,
    /// The token's `alg` is not allowed for its issuer; metadata `alg`.
    AlgorithmNotAllowed,
    /// `exp` is in the past; metadata `expired_at`.
    TokenExpired,
    /// `nbf` or `iat` is in the future.
    TokenNotYetValid,
    /// `iss` is not a configured issuer.
    WrongIssuer,
    /// `aud` holds no accepted audience; metadata `expected`.
    WrongAudience,
    /// A required scope or permission is missing; metadata `missing`.
    InsufficientScope,
    /// The token's session was revoked.
    SessionRevoked,
    /// No key could be had and the issuer is unreachable; metadata `issuer`.
    KeysUnavailable,
    /// A request field is missing or invalid; metadata `field`.
    InvalidRequest,
    /// The session handle is unknown.
    SessionNotFound,
    /// The session has expired.
    SessionExpired,
    /// No profile exists for that user.
    UserNotFound,
    /// The caller is not a trusted service for this request.
    CallerNotTrusted,
    /// The issuer refused the grant (bad code, reused refresh token, ...).
    GrantRejected,
    /// The issuer could not be reached or failed.
    IssuerUnavailable,
    /// The issuer or authd limits the rate of this request.
    RateLimited,
    /// authd's store could not be reached.
    StoreUnavailable,
    /// A concurrent change won; retrying is safe.
    Conflict,
    /// This authd does not implement the method yet.
    NotImplemented,
    /// An unexpected failure inside authd.
    Internal,
    /// The request message is larger than authd accepts for the RPC;
    /// metadata `length`, `max_bytes`.
    RequestTooLarge,
    /// The request is not one well-formed protobuf message; metadata `detail`.
    MalformedRequest,
    /// authd is at its bound of calls in flight and shed this one; retry.
    Overloaded,
    /// The call's deadline passed; metadata `waiting_for`.
    DeadlineExceeded,
    /// A WatchRevocations stream fell too far behind and was ended;
    /// metadata `buffer`. Reconnect with the last cursor.
    WatcherTooSlow,
    /// authd serves as many WatchRevocations streams as it allows;
    /// metadata `max_watchers`.
    TooManyWatchers,
    /// The token is bound to a DPoP key or a client certificate the request
    /// does not prove; metadata `binding`, `problem`.
    TokenBindingMismatch,
    /// The DPoP proof fails a check; metadata `problem` names it.
    DpopProofInvalid,
    /// The DPoP proof was used before.
    DpopProofReplayed,
    /// authd requires a server nonce in DPoP proofs; metadata `nonce`.
    DpopNonceRequired,
    /// The token's `typ` is not accepted as an access token; metadata `typ`.
    TokenTypeNotAllowed,
    /// A device code polled again after its session was used.
    DeviceCodeSpent,
    /// The keys sealing secrets at rest (KMS) cannot be reached; retry.
    SealingKeysUnavailable,
    /// A reason this client does not know, as sent.
    Other(String),
}

impl ErrorReason {
    /// Decodes the `ErrorInfo.reason` string.
    pub fn from_wire(reason: &str) -> ErrorReason {
        use ErrorReason::*;
        match reason {
            "TOKEN_MISSING" => TokenMissing,
            "TOKEN_TOO_LARGE" => TokenTooLarge,
            "MALFORMED_TOKEN" => MalformedToken,
            "BAD_SIGNATURE" => BadSignature,
            "UNKNOWN_KEY" => UnknownKey,
            "ALGORITHM_NOT_ALLOWED" => AlgorithmNotAllowed,
            "TOKEN_EXPIRED" => TokenExpired,
            "TOKEN_NOT_YET_VALID" => TokenNotYetValid,
            "WRONG_ISSUER" => WrongIssuer,
            "WRONG_AUDIENCE" => WrongAudience,
            "INSUFFICIENT_SCOPE" => InsufficientScope,
            "SESSION_REVOKED" => SessionRevoked,
            "KEYS_UNAVAILABLE" => KeysUnavailable,
            "INVALID_REQUEST" => InvalidRequest,
            "SESSION_NOT_FOUND" => SessionNotFound,
            "SESSION_EXPIRED" => SessionExpired,
            "USER_NOT_FOUND" => UserNotFound,
            "CALLER_NOT_TRUSTED" => CallerNotTrusted,
            "GRANT_REJECTED" => GrantRejected,
            "ISSUER_UNAVAILABLE" => IssuerUnavailable,
            "RATE_LIMITED" => RateLimited,
            "STORE_UNAVAILABLE" => StoreUnavailable,
            "CONFLICT" => Conflict,
            "NOT_IMPLEMENTED" => NotImplemented,
            "INTERNAL" => Internal,
            "REQUEST_TOO_LARGE" => RequestTooLarge,
            "MALFORMED_REQUEST" => MalformedRequest,
            "OVERLOADED" => Overloaded,
            "DEADLINE_EXCEEDED" => DeadlineExceeded,
            "WATCHER_TOO_SLOW" => WatcherTooSlow,
            "TOO_MANY_WATCHERS" => TooManyWatchers,
            "TOKEN_BINDING_MISMATCH" => TokenBindingMismatch,
            "DPOP_PROOF_INVALID" => DpopProofInvalid,
            "DPOP_PROOF_REPLAYED" => DpopProofReplayed,
            "DPOP_NONCE_REQUIRED" => DpopNonceRequired,
            "TOKEN_TYPE_NOT_ALLOWED" => TokenTypeNotAllowed,
            "DEVICE_CODE_SPENT" => DeviceCodeSpent,
            "SEALING_KEYS_UNAVAILABLE" => SealingKeysUnavailable,
            other => Other(other.to_owned()),
        }
    }

    /// The `ErrorInfo.reason` string, e.g. `TOKEN_EXPIRED`.
    pub fn as_str(&self) -> &str {
        use ErrorReason::*;
        match self {
            TokenMissing => "TOKEN_MISSING",
            TokenTooLarge => "TOKEN_TOO_LARGE",
            MalformedToken => "MALFORMED_TOKEN",
            BadSignature => "BAD_SIGNATURE",
            UnknownKey => "UNKNOWN_KEY",
            AlgorithmNotAllowed => "ALGORITHM_NOT_ALLOWED",
            TokenExpired => "TOKEN_EXPIRED",
            TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            WrongIssuer => "WRONG_ISSUER",
            WrongAudience => "WRONG_AUDIENCE",
            InsufficientScope => "INSUFFICIENT_SCOPE",
            SessionRevoked => "SESSION_REVOKED",
            KeysUnavailable => "KEYS_UNAVAILABLE",
            InvalidRequest => "INVALID_REQUEST",
            SessionNotFound => "SESSION_NOT_FOUND",
            SessionExpired => "SESSION_EXPIRED",
            UserNotFound => "USER_NOT_FOUND",
            CallerNotTrusted => "CALLER_NOT_TRUSTED",
            GrantRejected => "GRANT_REJECTED",
            IssuerUnavailable => "ISSUER_UNAVAILABLE",
            RateLimited => "RATE_LIMITED",
            StoreUnavailable => "STORE_UNAVAILABLE",
            Conflict => "CONFLICT",
            NotImplemented => "NOT_IMPLEMENTED",
            Internal => "INTERNAL",
            RequestTooLarge => "REQUEST_TOO_LARGE",
            MalformedRequest => "MALFORMED_REQUEST",
            Overloaded => "OVERLOADED",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            WatcherTooSlow => "WATCHER_TOO_SLOW",
            TooManyWatchers => "TOO_MANY_WATCHERS",
            TokenBindingMismatch => "TOKEN_BINDING_MISMATCH",
            DpopProofInvalid => "DPOP_PROOF_INVALID",
            DpopProofReplayed => "DPOP_PROOF_REPLAYED",
            DpopNonceRequired => "DPOP_NONCE_REQUIRED",
            TokenTypeNotAllowed => "TOKEN_TYPE_NOT_ALLOWED",
            DeviceCodeSpent => "DEVICE_CODE_SPENT",
            SealingKeysUnavailable => "SEALING_KEYS_UNAVAILABLE",
            Other(other) => other,
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// An error that did not come from authd (no reason, no metadata).
    pub(crate) fn local(code: Code, message: impl Into<String>) -> AuthError {
        AuthError {
            code,
            message: message.into(),
            reason: None,
            metadata: HashMap::new(),
        }
    }

    /// A refusal decided in this client exactly as authd decides it (a
    /// cached verdict's binding checks), with authd's reason.
    pub(crate) fn refused(
        code: Code,
        reason: ErrorReason,
        message: impl Into<String>,
        metadata: &[(&str, &str)],
    ) -> AuthError {
        AuthError {
            code,
            message: message.into(),
            reason: Some(reason),
            metadata: metadata
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// authd's reason, decoded from `google.rpc.ErrorInfo`; `None` when the
    /// error did not come from authd (e.g. a connection failure).
    pub fn reason(&self) -> Option<ErrorReason> {
        self.reason.clone()
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
        // ErrorInfo from another domain (a proxy, another service) says
        // nothing about authd's decision.
        let (reason, metadata) = match status.get_details_error_info() {
            Some(info) if info.domain == ERROR_DOMAIN => {
                (Some(ErrorReason::from_wire(&info.reason)), info.metadata)
            }
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
        AuthError::local(Code::Unavailable, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authd_proto::pb;
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

    #[test]
    fn every_protocol_reason_has_a_variant_and_round_trips() {
        // Every value after UNSPECIFIED, however many the protocol grows.
        let reasons: Vec<_> = (1..)
            .map_while(|value| pb::ErrorReason::try_from(value).ok())
            .collect();
        assert!(reasons.len() >= 25);
        for reason in reasons {
            let wire = reason
                .as_str_name()
                .strip_prefix("ERROR_REASON_")
                .unwrap_or_default();
            let decoded = ErrorReason::from_wire(wire);
            assert!(
                !matches!(decoded, ErrorReason::Other(_)),
                "{wire} has no variant"
            );
            assert_eq!(decoded.as_str(), wire);
        }
    }

    #[test]
    fn unknown_reason_is_kept_as_other() {
        let reason = ErrorReason::from_wire("QUOTA_EXCEEDED");
        assert_eq!(reason, ErrorReason::Other("QUOTA_EXCEEDED".to_owned()));
        assert_eq!(reason.as_str(), "QUOTA_EXCEEDED");
    }
}
