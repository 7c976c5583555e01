//! The one error type of authd's domain code, and its stable reasons.
//!
//! Each variant names a [`Reason`]; `grpc::status` maps errors to gRPC codes
//! with a `google.rpc.ErrorInfo` detail in one place. Messages never contain
//! a token, a refresh token, a key or a session handle.

use std::sync::Arc;

/// Everything that can go wrong in authd's domain code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request carried no token.
    #[error("the request carries no token")]
    TokenMissing,
    /// The token is over the configured size limit.
    #[error("the token is {len} bytes, over the limit of {max} bytes")]
    TokenTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Not a well-formed JWS compact JWT, or a claim of the wrong type.
    #[error("malformed token: {0}")]
    MalformedToken(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// No key of the issuer has the token's `kid`.
    #[error("issuer {issuer} has no key {kid:?}")]
    UnknownKey {
        /// The issuer.
        issuer: Arc<str>,
        /// The token's `kid` (empty when it has none).
        kid: String,
    },
    /// The token's `alg` is not configured for the issuer or does not fit the key.
    #[error("algorithm {alg:?} is not allowed here")]
    AlgorithmNotAllowed {
        /// The `alg` the token asked for.
        alg: String,
    },
    /// `exp` has passed.
    #[error("the token expired at {expired_at} (unix seconds)")]
    TokenExpired {
        /// The token's `exp`.
        expired_at: i64,
    },
    /// `nbf` or `iat` lies in the future.
    #[error("the token is not valid before {not_before} (unix seconds)")]
    TokenNotYetValid {
        /// The token's `nbf` (or `iat`).
        not_before: i64,
    },
    /// `iss` is not one of the configured issuers.
    #[error("issuer {0:?} is not configured")]
    WrongIssuer(String),
    /// `aud` holds none of the accepted audiences.
    #[error("the token's audience is not accepted")]
    WrongAudience {
        /// The audiences that would have been accepted.
        expected: Vec<String>,
    },
    /// Required scopes or permissions are missing.
    #[error("missing scopes: {}", missing.join(" "))]
    InsufficientScope {
        /// The required scopes the token lacks.
        missing: Vec<String>,
    },
    /// No usable key, and the issuer's key set cannot be fetched.
    #[error("no usable key for issuer {issuer}: its key set cannot be fetched")]
    KeysUnavailable {
        /// The issuer.
        issuer: Arc<str>,
    },
    /// A request field is missing or invalid.
    #[error("invalid {field}: {problem}")]
    InvalidRequest {
        /// The field's name in the protocol.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The session was revoked, or the token was issued before all of its
    /// user's sessions were revoked.
    #[error("the session was revoked")]
    SessionRevoked,
    /// The session handle is unknown.
    #[error("no such session")]
    SessionNotFound,
    /// The session has expired.
    #[error("the session has expired")]
    SessionExpired,
    /// The issuer refused the grant (bad code, reused or revoked refresh
    /// token, wrong client credentials).
    #[error("the issuer refused the grant: {0}")]
    GrantRejected(String),
    /// No profile exists for the user.
    #[error("no profile for user {0:?}")]
    UserNotFound(String),
    /// The caller is not a trusted service for this request.
    #[error("the caller is not trusted for this request: {0}")]
    CallerNotTrusted(String),
    /// The `[[callers]]` policy does not grant this RPC to this caller.
    #[error("{caller} may not call {rpc}")]
    CallerNotAllowed {
        /// The RPC, by gRPC path (`:user_id` for the by-user-id variants).
        rpc: String,
        /// The caller's identity (never a credential).
        caller: String,
    },
    /// The issuer (or authd) limits the rate of this request.
    #[error("rate limited; retry in {retry_after_seconds} s")]
    RateLimited {
        /// When to retry.
        retry_after_seconds: u64,
    },
    /// The issuer cannot be reached or failed.
    #[error("the issuer is unavailable")]
    IssuerUnavailable {
        /// The issuer.
        issuer: String,
    },
    /// The store cannot be reached (after retries).
    #[error("the store is unavailable")]
    StoreUnavailable,
    /// A concurrent change won; retrying is safe.
    #[error("a concurrent change won; retry")]
    Conflict,
    /// An unexpected failure; the detail is logged, never returned.
    #[error("internal error")]
    Internal(String),
    /// The request message is over the RPC's size limit.
    #[error("the request message is {len} bytes, over the limit of {max} bytes")]
    RequestTooLarge {
        /// Its declared length in bytes.
        len: usize,
        /// The limit of the RPC.
        max: usize,
    },
    /// The request is not one well-formed protobuf message of its RPC.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// Too many calls in flight: this one is shed at once.
    #[error("authd is at its limit of calls in flight; retry shortly")]
    Overloaded,
    /// The call's deadline passed.
    #[error("deadline exceeded waiting for {waiting_for}")]
    DeadlineExceeded {
        /// What the call was waiting for: `the request message` or `the answer`.
        waiting_for: &'static str,
    },
    /// A revocation watcher fell too far behind and was ended.
    #[error(
        "this watcher fell more than {buffer} revocations behind; reconnect with its last cursor"
    )]
    WatcherTooSlow {
        /// `watch.buffer`.
        buffer: usize,
    },
    /// The bound on revocation watchers is reached.
    #[error("authd already serves {max_watchers} revocation watchers; retry later")]
    TooManyWatchers {
        /// `watch.max_watchers`.
        max_watchers: usize,
    },
    /// The token is sender-constrained and the call did not prove it.
    #[error("the token is bound to a key or certificate the call does not prove: {problem}")]
    TokenBindingMismatch {
        /// `jkt`, `x5t#S256` or `cnf`.
        binding: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// The DPoP proof fails a check.
    #[error("invalid DPoP proof: {detail}")]
    DpopProofInvalid {
        /// The check that failed (`htu`, `ath`, `iat`, `signature`, …).
        problem: &'static str,
        /// What is wrong, in words.
        detail: &'static str,
    },
    /// The DPoP proof was used before.
    #[error("the DPoP proof was used before; every request needs a fresh proof")]
    DpopProofReplayed,
    /// A server nonce is required in DPoP proofs.
    #[error("the DPoP proof must carry the server's current nonce")]
    DpopNonceRequired {
        /// The nonce to use.
        nonce: String,
    },
    /// The token's type is not accepted as an access token.
    #[error("a token of type {typ:?} is not accepted as an access token here")]
    TokenTypeNotAllowed {
        /// The token's `typ` (`events` for a token with an `events` claim).
        typ: String,
    },
    /// A device code polled again after its session was used.
    #[error("the device code was spent: its session has been used since it was approved")]
    DeviceCodeSpent,
    /// The keys sealing secrets at rest cannot be reached (KMS).
    #[error("the keys that seal secrets at rest cannot be reached")]
    SealingKeysUnavailable,
}

/// The stable reasons of `google.rpc.ErrorInfo`, mirrored by the protocol's
/// `auth.v1.ErrorReason` enum (whose names add an `ERROR_REASON_` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// See [`Error::TokenMissing`].
    TokenMissing,
    /// See [`Error::TokenTooLarge`].
    TokenTooLarge,
    /// See [`Error::MalformedToken`].
    MalformedToken,
    /// See [`Error::BadSignature`].
    BadSignature,
    /// See [`Error::UnknownKey`].
    UnknownKey,
    /// See [`Error::AlgorithmNotAllowed`].
    AlgorithmNotAllowed,
    /// See [`Error::TokenExpired`].
    TokenExpired,
    /// See [`Error::TokenNotYetValid`].
    TokenNotYetValid,
    /// See [`Error::WrongIssuer`].
    WrongIssuer,
    /// See [`Error::WrongAudience`].
    WrongAudience,
    /// See [`Error::InsufficientScope`].
    InsufficientScope,
    /// See [`Error::KeysUnavailable`].
    KeysUnavailable,
    /// See [`Error::InvalidRequest`].
    InvalidRequest,
    /// See [`Error::SessionRevoked`].
    SessionRevoked,
    /// See [`Error::SessionNotFound`].
    SessionNotFound,
    /// See [`Error::SessionExpired`].
    SessionExpired,
    /// See [`Error::GrantRejected`].
    GrantRejected,
    /// See [`Error::UserNotFound`].
    UserNotFound,
    /// See [`Error::CallerNotTrusted`].
    CallerNotTrusted,
    /// See [`Error::RateLimited`].
    RateLimited,
    /// See [`Error::IssuerUnavailable`].
    IssuerUnavailable,
    /// See [`Error::StoreUnavailable`].
    StoreUnavailable,
    /// See [`Error::Conflict`].
    Conflict,
    /// See [`Error::Internal`].
    Internal,
    /// See [`Error::RequestTooLarge`].
    RequestTooLarge,
    /// See [`Error::MalformedRequest`].
    MalformedRequest,
    /// See [`Error::Overloaded`].
    Overloaded,
    /// See [`Error::DeadlineExceeded`].
    DeadlineExceeded,
    /// See [`Error::WatcherTooSlow`].
    WatcherTooSlow,
    /// See [`Error::TooManyWatchers`].
    TooManyWatchers,
    /// See [`Error::TokenBindingMismatch`].
    TokenBindingMismatch,
    /// See [`Error::DpopProofInvalid`].
    DpopProofInvalid,
    /// See [`Error::DpopProofReplayed`].
    DpopProofReplayed,
    /// See [`Error::DpopNonceRequired`].
    DpopNonceRequired,
    /// See [`Error::TokenTypeNotAllowed`].
    TokenTypeNotAllowed,
    /// See [`Error::DeviceCodeSpent`].
    DeviceCodeSpent,
    /// See [`Error::SealingKeysUnavailable`].
    SealingKeysUnavailable,
}

impl Reason {
    /// Every reason (tests check it against the protocol's `ErrorReason`).
    pub const ALL: [Reason; 37] = [
        Reason::SealingKeysUnavailable,
        Reason::DeviceCodeSpent,
        Reason::TokenBindingMismatch,
        Reason::DpopProofInvalid,
        Reason::DpopProofReplayed,
        Reason::DpopNonceRequired,
        Reason::TokenTypeNotAllowed,
        Reason::SessionRevoked,
        Reason::SessionNotFound,
        Reason::SessionExpired,
        Reason::GrantRejected,
        Reason::UserNotFound,
        Reason::CallerNotTrusted,
        Reason::RateLimited,
        Reason::IssuerUnavailable,
        Reason::StoreUnavailable,
        Reason::Conflict,
        Reason::TokenMissing,
        Reason::TokenTooLarge,
        Reason::MalformedToken,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::AlgorithmNotAllowed,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::InsufficientScope,
        Reason::KeysUnavailable,
        Reason::InvalidRequest,
        Reason::Internal,
        Reason::RequestTooLarge,
        Reason::MalformedRequest,
        Reason::Overloaded,
        Reason::DeadlineExceeded,
        Reason::WatcherTooSlow,
        Reason::TooManyWatchers,
    ];

    /// Whether the reason says authd could not decide (a dependency was
    /// unavailable, the server was overloaded or failed) rather than that
    /// the request was refused on its merits.
    pub const fn is_undecided(self) -> bool {
        matches!(
            self,
            Reason::KeysUnavailable
                | Reason::SealingKeysUnavailable
                | Reason::IssuerUnavailable
                | Reason::StoreUnavailable
                | Reason::Overloaded
                | Reason::RateLimited
                | Reason::DeadlineExceeded
                | Reason::Conflict
                | Reason::Internal
        )
    }

    /// The `ErrorInfo.reason` string, e.g. `TOKEN_EXPIRED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::TokenMissing => "TOKEN_MISSING",
            Reason::TokenTooLarge => "TOKEN_TOO_LARGE",
            Reason::MalformedToken => "MALFORMED_TOKEN",
            Reason::BadSignature => "BAD_SIGNATURE",
            Reason::UnknownKey => "UNKNOWN_KEY",
            Reason::AlgorithmNotAllowed => "ALGORITHM_NOT_ALLOWED",
            Reason::TokenExpired => "TOKEN_EXPIRED",
            Reason::TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            Reason::WrongIssuer => "WRONG_ISSUER",
            Reason::WrongAudience => "WRONG_AUDIENCE",
            Reason::InsufficientScope => "INSUFFICIENT_SCOPE",
            Reason::KeysUnavailable => "KEYS_UNAVAILABLE",
            Reason::InvalidRequest => "INVALID_REQUEST",
            Reason::SessionRevoked => "SESSION_REVOKED",
            Reason::SessionNotFound => "SESSION_NOT_FOUND",
            Reason::SessionExpired => "SESSION_EXPIRED",
            Reason::GrantRejected => "GRANT_REJECTED",
            Reason::UserNotFound => "USER_NOT_FOUND",
            Reason::CallerNotTrusted => "CALLER_NOT_TRUSTED",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::IssuerUnavailable => "ISSUER_UNAVAILABLE",
            Reason::StoreUnavailable => "STORE_UNAVAILABLE",
            Reason::Conflict => "CONFLICT",
            Reason::Internal => "INTERNAL",
            Reason::RequestTooLarge => "REQUEST_TOO_LARGE",
            Reason::MalformedRequest => "MALFORMED_REQUEST",
            Reason::Overloaded => "OVERLOADED",
            Reason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Reason::WatcherTooSlow => "WATCHER_TOO_SLOW",
            Reason::TooManyWatchers => "TOO_MANY_WATCHERS",
            Reason::TokenBindingMismatch => "TOKEN_BINDING_MISMATCH",
            Reason::DpopProofInvalid => "DPOP_PROOF_INVALID",
            Reason::DpopProofReplayed => "DPOP_PROOF_REPLAYED",
            Reason::DpopNonceRequired => "DPOP_NONCE_REQUIRED",
            Reason::TokenTypeNotAllowed => "TOKEN_TYPE_NOT_ALLOWED",
            Reason::DeviceCodeSpent => "DEVICE_CODE_SPENT",
            Reason::SealingKeysUnavailable => "SEALING_KEYS_UNAVAILABLE",
        }
    }
}

impl Error {
    /// The stable reason of this error.
    pub fn reason(&self) -> Reason {
        match self {
            Error::TokenMissing => Reason::TokenMissing,
            Error::TokenTooLarge { .. } => Reason::TokenTooLarge,
            Error::MalformedToken(_) => Reason::MalformedToken,
            Error::BadSignature => Reason::BadSignature,
            Error::UnknownKey { .. } => Reason::UnknownKey,
            Error::AlgorithmNotAllowed { .. } => Reason::AlgorithmNotAllowed,
            Error::TokenExpired { .. } => Reason::TokenExpired,
            Error::TokenNotYetValid { .. } => Reason::TokenNotYetValid,
            Error::WrongIssuer(_) => Reason::WrongIssuer,
            Error::WrongAudience { .. } => Reason::WrongAudience,
            Error::InsufficientScope { .. } => Reason::InsufficientScope,
            Error::KeysUnavailable { .. } => Reason::KeysUnavailable,
            Error::InvalidRequest { .. } => Reason::InvalidRequest,
            Error::SessionRevoked => Reason::SessionRevoked,
            Error::SessionNotFound => Reason::SessionNotFound,
            Error::SessionExpired => Reason::SessionExpired,
            Error::GrantRejected(_) => Reason::GrantRejected,
            Error::UserNotFound(_) => Reason::UserNotFound,
            Error::CallerNotTrusted(_) | Error::CallerNotAllowed { .. } => Reason::CallerNotTrusted,
            Error::RateLimited { .. } => Reason::RateLimited,
            Error::IssuerUnavailable { .. } => Reason::IssuerUnavailable,
            Error::StoreUnavailable => Reason::StoreUnavailable,
            Error::Conflict => Reason::Conflict,
            Error::Internal(_) => Reason::Internal,
            Error::RequestTooLarge { .. } => Reason::RequestTooLarge,
            Error::MalformedRequest(_) => Reason::MalformedRequest,
            Error::Overloaded => Reason::Overloaded,
            Error::DeadlineExceeded { .. } => Reason::DeadlineExceeded,
            Error::WatcherTooSlow { .. } => Reason::WatcherTooSlow,
            Error::TooManyWatchers { .. } => Reason::TooManyWatchers,
            Error::TokenBindingMismatch { .. } => Reason::TokenBindingMismatch,
            Error::DpopProofInvalid { .. } => Reason::DpopProofInvalid,
            Error::DpopProofReplayed => Reason::DpopProofReplayed,
            Error::DpopNonceRequired { .. } => Reason::DpopNonceRequired,
            Error::TokenTypeNotAllowed { .. } => Reason::TokenTypeNotAllowed,
            Error::DeviceCodeSpent => Reason::DeviceCodeSpent,
            Error::SealingKeysUnavailable => Reason::SealingKeysUnavailable,
        }
    }

    /// Context for `ErrorInfo.metadata`. Values come from configuration or
    /// from claims the caller sent; never from secrets.
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::TokenTooLarge { len, max } | Error::RequestTooLarge { len, max } => {
                vec![("length", len.to_string()), ("max_bytes", max.to_string())]
            }
            Error::MalformedRequest(detail) => vec![("detail", detail.clone())],
            Error::DeadlineExceeded { waiting_for } => {
                vec![("waiting_for", (*waiting_for).to_owned())]
            }
            Error::MalformedToken(detail) => vec![("detail", detail.clone())],
            Error::UnknownKey { issuer, kid } => {
                vec![("issuer", issuer.to_string()), ("kid", kid.clone())]
            }
            Error::AlgorithmNotAllowed { alg } => vec![("alg", alg.clone())],
            Error::TokenExpired { expired_at } => vec![("expired_at", expired_at.to_string())],
            Error::TokenNotYetValid { not_before } => {
                vec![("not_before", not_before.to_string())]
            }
            Error::WrongIssuer(iss) => vec![("issuer", iss.clone())],
            Error::WrongAudience { expected } => vec![("expected", expected.join(" "))],
            Error::InsufficientScope { missing } => vec![("missing", missing.join(" "))],
            Error::KeysUnavailable { issuer } => vec![("issuer", issuer.to_string())],
            Error::InvalidRequest { field, .. } => vec![("field", (*field).to_owned())],
            Error::UserNotFound(user) => vec![("user_id", user.clone())],
            Error::GrantRejected(error) => vec![("error", error.clone())],
            Error::CallerNotTrusted(detail) => vec![("detail", detail.clone())],
            Error::CallerNotAllowed { rpc, caller } => {
                vec![("rpc", rpc.clone()), ("caller", caller.clone())]
            }
            Error::RateLimited {
                retry_after_seconds,
            } => {
                vec![("retry_after_seconds", retry_after_seconds.to_string())]
            }
            Error::IssuerUnavailable { issuer } => vec![("issuer", issuer.clone())],
            Error::WatcherTooSlow { buffer } => vec![("buffer", buffer.to_string())],
            Error::TooManyWatchers { max_watchers } => {
                vec![("max_watchers", max_watchers.to_string())]
            }
            Error::TokenBindingMismatch { binding, problem } => vec![
                ("binding", (*binding).to_owned()),
                ("problem", (*problem).to_owned()),
            ],
            Error::DpopProofInvalid { problem, .. } => vec![("problem", (*problem).to_owned())],
            Error::DpopNonceRequired { nonce } => vec![("nonce", nonce.clone())],
            Error::TokenTypeNotAllowed { typ } => vec![("typ", typ.clone())],
            Error::TokenMissing
            | Error::DpopProofReplayed
            | Error::BadSignature
            | Error::StoreUnavailable
            | Error::SessionRevoked
            | Error::DeviceCodeSpent
            | Error::SealingKeysUnavailable
            | Error::SessionNotFound
            | Error::SessionExpired
            | Error::Conflict
            | Error::Overloaded
            | Error::Internal(_) => Vec::new(),
        }
    }
}

/// Cuts attacker-controlled text to a length that is safe to echo and log.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

impl From<crate::secrets::SealError> for Error {
    fn from(error: crate::secrets::SealError) -> Self {
        use crate::secrets::SealError;
        match error {
            SealError::Unavailable(detail) => {
                tracing::warn!(%detail, "sealing keys unavailable");
                Error::SealingKeysUnavailable
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Conflict => Error::Conflict,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                Error::StoreUnavailable
            }
            other => Error::Internal(other.to_string()),
        }
    }
}
