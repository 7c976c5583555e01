//! GetProfile: profiles read from the store, filled from the issuer's
//! userinfo endpoint when missing or older than `max_age_seconds`.
//!
//! Auth0 allows about five userinfo calls per user per minute, so: one
//! upstream call at a time per user (later callers wait and read its
//! result from the store), the stored profile answers while it is fresh, a
//! 429 is remembered until its `Retry-After`, and any upstream failure falls
//! back to the stored profile — never a crash or a wiped profile.

pub mod sealed;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::{
    config::ProfilesConfig,
    error::Error,
    issuer::{IssuerClient, IssuerError},
    secrets::{SealError, Sealer},
    store::{Profile, Store, unix_now},
    verify::{VerifiedToken, Verifier, VerifyRequest},
};

/// The longest user id accepted from a caller.
const MAX_USER_ID_BYTES: usize = 512;
/// How long a 429 without `Retry-After` keeps authd from calling userinfo
/// for that user.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The profile service.
#[derive(Debug)]
pub struct Profiles {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    verifier: Arc<Verifier>,
    issuers: HashMap<String, Arc<IssuerClient>>,
    config: ProfilesConfig,
    /// One lock per user with a userinfo call under way.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Users the issuer rate-limited, until when.
    limited: Mutex<HashMap<String, Instant>>,
}

impl Profiles {
    /// Profiles over `store`, sealed by `sealer`, verifying tokens with
    /// `verifier` and calling the userinfo endpoints of `issuers` (keyed by
    /// `iss`).
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        verifier: Arc<Verifier>,
        issuers: HashMap<String, Arc<IssuerClient>>,
        config: ProfilesConfig,
    ) -> Self {
        Profiles {
            store,
            sealer,
            verifier,
            issuers,
            config,
            inflight: Mutex::new(HashMap::new()),
            limited: Mutex::new(HashMap::new()),
        }
    }

    /// The profile of the user holding `access_token`.
    pub async fn own(&self, access_token: &str) -> Result<Profile, Error> {
        let token = self
            .verifier
            .verify(&VerifyRequest {
                token: access_token.to_owned(),
                ..VerifyRequest::default()
            })
            .await?;
        if token.subject.is_empty() {
            return Err(Error::MalformedToken("the token has no sub".to_owned()));
        }
        let stored = self.stored(&token.subject).await?;
        if let Some(profile) = stored.as_ref().filter(|p| self.is_fresh(p)) {
            return Ok(profile.clone());
        }
        match self.refresh(&token, access_token).await {
            Ok(profile) => Ok(profile),
            Err(error) => match stored {
                Some(profile) => {
                    tracing::info!(user = %token.subject, reason = error.reason().as_str(), "serving the stored profile");
                    Ok(profile)
                }
                None => Err(error),
            },
        }
    }

    /// Any user's profile by id. Only trusted callers may ask: the
    /// `[[callers]]` policy (`callers::PolicyLayer`) decides that before the
    /// call reaches here (`profiles.trusted_permission` is one of its
    /// entries).
    pub async fn by_id(&self, user_id: &str) -> Result<Profile, Error> {
        if user_id.is_empty() || user_id.len() > MAX_USER_ID_BYTES {
            return Err(Error::InvalidRequest {
                field: "user_id",
                problem: format!("must be 1 to {MAX_USER_ID_BYTES} bytes"),
            });
        }
        self.stored(user_id)
            .await?
            .ok_or_else(|| Error::UserNotFound(crate::error::truncate(user_id, 128)))
    }

    /// The stored profile of `user`, opened. One that does not open (sealed
    /// under a key no longer configured, or under another process's own key
    /// when none is configured) counts as absent: the issuer fills it again.
    pub(crate) async fn stored(&self, user: &str) -> Result<Option<Profile>, Error> {
        let Some(stored) = self.store.get_profile(user).await? else {
            return Ok(None);
        };
        match sealed::open(&self.sealer, user, stored).await {
            Ok(profile) => Ok(Some(profile)),
            Err(SealError::Unavailable(detail)) => {
                tracing::warn!(%user, %detail, "cannot open a stored profile");
                Err(Error::SealingKeysUnavailable)
            }
            Err(error) => {
                tracing::warn!(%user, %error, "a stored profile does not open; filling it again");
                Ok(None)
            }
        }
    }

    /// Seals and stores `profile`.
    async fn save(&self, profile: &Profile) -> Result<(), Error> {
        let sealed = sealed::seal(&self.sealer, profile).await?;
        self.store.put_profile(&profile.user_id, &sealed).await?;
        Ok(())
    }

    /// Creates or updates `user`'s profile from verified id-token claims.
    pub async fn upsert_from_claims(
        &self,
        user: &str,
        claims: &Map<String, Value>,
    ) -> Result<Profile, Error> {
        let mut claims = claims.clone();
        // Token bookkeeping is not profile data.
        for registered in [
            "aud",
            "azp",
            "nonce",
            "sid",
            "auth_time",
            "at_hash",
            "c_hash",
            "acr",
            "amr",
        ] {
            claims.remove(registered);
        }
        claims.insert("sub".to_owned(), Value::String(user.to_owned()));
        let stored = self.stored(user).await?;
        let profile = merge(stored, user, claims, unix_now())?;
        self.save(&profile).await?;
        Ok(profile)
    }

    fn is_fresh(&self, profile: &Profile) -> bool {
        let age = unix_now().saturating_sub(profile.fetched_at);
        age >= 0 && (age as u64) < self.config.max_age_seconds
    }

    fn user_lock(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(inflight.entry(user.to_owned()).or_default())
    }

    fn release(&self, user: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map and this caller hold it: nobody waits, forget it.
        if Arc::strong_count(&lock) == 2 {
            inflight.remove(user);
        }
    }

    fn limited_until(&self, user: &str) -> Option<Instant> {
        let mut limited = self.limited.lock().unwrap_or_else(|e| e.into_inner());
        match limited.get(user) {
            Some(until) if *until > Instant::now() => Some(*until),
            Some(_) => {
                limited.remove(user);
                None
            }
            None => None,
        }
    }

    async fn refresh(&self, token: &VerifiedToken, access_token: &str) -> Result<Profile, Error> {
        let user = token.subject.as_str();
        let lock = self.user_lock(user);
        let result = async {
            let _turn = lock.lock().await;
            // Whoever held the lock before may have just refreshed it.
            let stored = self.stored(user).await?;
            if let Some(profile) = stored.as_ref().filter(|p| self.is_fresh(p)) {
                return Ok(profile.clone());
            }
            if let Some(until) = self.limited_until(user) {
                return Err(Error::RateLimited {
                    retry_after_seconds: until
                        .saturating_duration_since(Instant::now())
                        .as_secs()
                        .max(1),
                });
            }
            let issuer = self
                .issuers
                .get(&token.issuer)
                .ok_or_else(|| Error::Internal(format!("no client for issuer {}", token.issuer)))?;
            let timeout = Duration::from_millis(self.config.userinfo_timeout_ms);
            let claims = match tokio::time::timeout(
                timeout,
                issuer.userinfo(crate::verify::strip_bearer(access_token)),
            )
            .await
            {
                Ok(Ok(claims)) => claims,
                Ok(Err(error)) => return Err(self.upstream_error(user, &token.issuer, error)),
                Err(_) => {
                    tracing::warn!(%user, issuer = %token.issuer, "userinfo timed out");
                    return Err(Error::IssuerUnavailable {
                        issuer: token.issuer.clone(),
                    });
                }
            };
            let profile = merge(stored, user, claims, unix_now())?;
            self.save(&profile).await?;
            Ok(profile)
        }
        .await;
        self.release(user, lock);
        result
    }

    fn upstream_error(&self, user: &str, issuer: &str, error: IssuerError) -> Error {
        match error {
            IssuerError::RateLimited { retry_after, .. } => {
                let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                self.limited
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(user.to_owned(), Instant::now() + wait);
                tracing::warn!(%user, %issuer, ?wait, "userinfo rate-limited");
                Error::RateLimited {
                    retry_after_seconds: wait.as_secs().max(1),
                }
            }
            IssuerError::Refused { status, .. } => {
                tracing::info!(%user, %issuer, status, "userinfo refused the access token");
                Error::UserNotFound(crate::error::truncate(user, 128))
            }
            other => {
                tracing::warn!(%user, %issuer, error = %other, "userinfo failed");
                Error::IssuerUnavailable {
                    issuer: issuer.to_owned(),
                }
            }
        }
    }
}

/// Builds the profile from userinfo `claims`, keeping `created_at` (and
/// `updated_at` when nothing changed) from the stored one.
pub fn merge(
    stored: Option<Profile>,
    user: &str,
    mut claims: Map<String, Value>,
    now: i64,
) -> Result<Profile, Error> {
    // OpenID Connect Core §5.3.2: the sub of userinfo must be the token's.
    match claims.remove("sub") {
        Some(Value::String(sub)) if sub == user => {}
        _ => {
            return Err(Error::Internal(format!(
                "userinfo answered for another subject than {user}"
            )));
        }
    }
    let mut take = |name: &str| match claims.remove(name) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let email = take("email");
    let name = take("name");
    let nickname = take("nickname");
    let picture = take("picture");
    let email_verified = match claims.remove("email_verified") {
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    // The issuer's own timestamp says nothing about authd's copy.
    claims.remove("updated_at");
    let mut profile = Profile {
        user_id: user.to_owned(),
        email,
        email_verified,
        name,
        nickname,
        picture,
        attributes: claims,
        created_at: now,
        updated_at: now,
        fetched_at: now,
    };
    if let Some(old) = stored {
        profile.created_at = old.created_at;
        let unchanged = Profile {
            fetched_at: old.fetched_at,
            updated_at: old.updated_at,
            created_at: old.created_at,
            ..profile.clone()
        } == old;
        if unchanged {
            profile.updated_at = old.updated_at;
        }
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn userinfo_claims_fill_the_profile() {
        let p = merge(
            None,
            "auth0|alice",
            claims(json!({"sub": "auth0|alice", "email": "a@x", "email_verified": true, "name": "Alice",
                          "nickname": "al", "picture": "https://p", "updated_at": "2026-01-01", "locale": "fr"})),
            100,
        )
        .expect("merge");
        assert_eq!(p.email.as_deref(), Some("a@x"));
        assert!(p.email_verified);
        assert_eq!(p.attributes, claims(json!({"locale": "fr"})));
        assert_eq!((p.created_at, p.updated_at, p.fetched_at), (100, 100, 100));
    }

    #[test]
    fn unchanged_profile_keeps_its_timestamps() {
        let first = merge(None, "u", claims(json!({"sub": "u", "name": "A"})), 100).expect("merge");
        let again = merge(
            Some(first.clone()),
            "u",
            claims(json!({"sub": "u", "name": "A"})),
            200,
        )
        .expect("merge");
        assert_eq!(
            (again.created_at, again.updated_at, again.fetched_at),
            (100, 100, 200)
        );
        let changed = merge(
            Some(first),
            "u",
            claims(json!({"sub": "u", "name": "B"})),
            300,
        )
        .expect("merge");
        assert_eq!((changed.created_at, changed.updated_at), (100, 300));
    }

    #[test]
    fn userinfo_for_another_subject_is_refused() {
        assert!(
            merge(
                None,
                "auth0|alice",
                claims(json!({"sub": "auth0|mallory"})),
                1
            )
            .is_err()
        );
        assert!(merge(None, "auth0|alice", claims(json!({"email": "x"})), 1).is_err());
    }
}
