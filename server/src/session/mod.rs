//! Sessions: created from an authorization code, from tokens the caller
//! holds, or by device login; refreshed safely under concurrency; revoked at
//! the issuer and, through [`crate::revocation`], on every replica.
//!
//! Refresh is where naive implementations log users out: issuers such as
//! Auth0 rotate the refresh token on every use and revoke the whole family
//! when an already-rotated token is presented again. So:
//!
//! - within one replica, concurrent refreshes of a session share one upstream
//!   call (single-flight keyed by session id);
//! - across replicas, the refresher first takes a *lease* on the session with
//!   a conditional write on its version; others wait for the lease to end and
//!   answer with the access token the winner stored (sealed), so the refresh
//!   token is spent once;
//! - the rotated refresh token is written with a conditional update on the
//!   version the lease produced, so no rotation is lost;
//! - `invalid_grant` marks the session revoked; any other issuer failure
//!   releases the lease and leaves the tokens exactly as they were.

mod create;
mod device;
mod input;
mod refresh;
mod revoke;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

pub use device::DeviceLoginState;

use crate::{
    config::SessionsConfig,
    error::Error,
    issuer::{IssuerClient, IssuerError, TokenSet},
    profile::Profiles,
    revocation::{Revocations, issued_token, revocation, signed_digest},
    secrets::{SealedSecret, Sealer, Secret, hash_handle, random_handle},
    store::{Profile, Revocation, RevocationKind, SessionRecord, Store, StoreError, unix_now},
    verify::{Verifier, VerifyRequest},
};

/// A new session, as answered once to its creator.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The handle: the only copy; authd keeps its hash.
    pub handle: Secret,
    /// The stored record.
    pub record: SessionRecord,
    /// A current access token.
    pub access_token: Secret,
    /// The id token, when the issuer gave one.
    pub id_token: Option<Secret>,
    /// The user's profile after this sign-in.
    pub profile: Profile,
}

/// A refresh's result.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: Secret,
    /// When it expires (unix seconds; 0 when unknown).
    pub expires_at: i64,
    /// A new id token, when the issuer gave one.
    pub id_token: Option<Secret>,
    /// The rotated refresh token: only for raw refresh tokens.
    pub refresh_token: Option<Secret>,
    /// The scopes granted.
    pub scopes: Vec<String>,
}

/// How a caller proves who it is to create a session.
#[derive(Debug, Clone)]
pub enum Grant {
    /// An authorization code to exchange.
    AuthorizationCode {
        /// The code.
        code: String,
        /// The redirect URI of the authorization request.
        redirect_uri: String,
        /// The PKCE verifier (may be empty).
        code_verifier: String,
        /// The nonce of the authorization request (may be empty).
        nonce: String,
    },
    /// Tokens the caller already holds.
    ExistingTokens {
        /// The refresh token.
        refresh_token: Secret,
        /// The id token.
        id_token: Secret,
        /// The access token, when the caller has one.
        access_token: Option<Secret>,
        /// The nonce of the authorization request (may be empty).
        nonce: String,
    },
}

type Flight = Shared<BoxFuture<'static, Result<Refreshed, Error>>>;

/// The session service.
#[derive(Debug)]
pub struct Sessions {
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    profiles: Arc<Profiles>,
    issuers: HashMap<String, Arc<IssuerClient>>,
    sealer: Option<Arc<Sealer>>,
    revocations: Arc<Revocations>,
    config: SessionsConfig,
    inflight: Mutex<HashMap<String, Flight>>,
}

fn scopes_of(scope: Option<&str>) -> Vec<String> {
    scope
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A handle is 32 bytes of base64url: anything else cannot name a session.
fn check_handle(handle: &str) -> Result<(), Error> {
    let well_formed = handle.len() == 43
        && handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if well_formed {
        Ok(())
    } else {
        Err(Error::InvalidRequest {
            field: "session_handle",
            problem: "is not a session handle".to_owned(),
        })
    }
}

/// The issuer's answer to a spent grant, as authd's error.
fn grant_error(issuer: &str, error: IssuerError) -> Error {
    match error {
        IssuerError::Grant { error, .. } => Error::GrantRejected(error),
        IssuerError::Refused { status, .. } => Error::GrantRejected(format!("HTTP {status}")),
        IssuerError::RateLimited { retry_after, .. } => Error::RateLimited {
            retry_after_seconds: retry_after.map_or(60, |d| d.as_secs().max(1)),
        },
        other => {
            tracing::warn!(%issuer, error = %other, "issuer call failed");
            Error::IssuerUnavailable {
                issuer: issuer.to_owned(),
            }
        }
    }
}

impl Sessions {
    /// Sessions over `store`, for the issuers in `issuers` that have an
    /// OAuth client configured.
    pub fn new(
        store: Arc<dyn Store>,
        verifier: Arc<Verifier>,
        profiles: Arc<Profiles>,
        issuers: HashMap<String, Arc<IssuerClient>>,
        sealer: Option<Arc<Sealer>>,
        config: SessionsConfig,
    ) -> Self {
        let issuers = issuers
            .into_iter()
            .filter(|(_, c)| c.client_id().is_some())
            .collect();
        let revocations = Arc::clone(verifier.revocations());
        Sessions {
            store,
            verifier,
            profiles,
            issuers,
            sealer,
            revocations,
            config,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The issuer named by a request, or the only one with sessions.
    fn issuer(&self, name: &str) -> Result<&Arc<IssuerClient>, Error> {
        let found = if name.is_empty() {
            let mut all = self.issuers.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        } else {
            self.issuers.get(name)
        };
        found.ok_or_else(|| Error::InvalidRequest {
            field: "issuer",
            problem: if name.is_empty() {
                "name the issuer: sessions need exactly one issuer with a client_id, or an explicit one".to_owned()
            } else {
                "is not an issuer configured with a client_id".to_owned()
            },
        })
    }

    fn sealer(&self) -> Result<&Sealer, Error> {
        self.sealer
            .as_deref()
            .ok_or_else(|| Error::Internal("sessions need [secrets] keys".to_owned()))
    }

    /// Seals `secret` for the item `item_key`.
    async fn seal(&self, secret: &Secret, item_key: &str) -> Result<SealedSecret, Error> {
        Ok(self.sealer()?.seal(secret, item_key).await?)
    }

    /// Opens `sealed`, sealed for the item `item_key`.
    async fn open(&self, sealed: &SealedSecret, item_key: &str) -> Result<Secret, Error> {
        Ok(self.sealer()?.open(sealed, item_key).await?)
    }
}
