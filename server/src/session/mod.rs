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

mod device;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

pub use device::DeviceLoginState;

use crate::{
    config::SessionsConfig,
    error::Error,
    issuer::{IssuerClient, IssuerError, TokenSet},
    profile::Profiles,
    revocation::{Revocations, revocation},
    secrets::{Sealer, Secret, hash_handle, random_handle},
    store::{IssuedToken, Profile, RevocationKind, SessionRecord, Store, StoreError},
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

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
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

    // === create ===

    /// Creates a session from `grant` at `issuer` (empty: the only one).
    pub async fn create(&self, issuer: &str, grant: Grant) -> Result<NewSession, Error> {
        let client = Arc::clone(self.issuer(issuer)?);
        match grant {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
                nonce,
            } => {
                if code.is_empty() || redirect_uri.is_empty() {
                    return Err(Error::InvalidRequest {
                        field: if code.is_empty() {
                            "authorization_code.code"
                        } else {
                            "authorization_code.redirect_uri"
                        },
                        problem: "is required".to_owned(),
                    });
                }
                let tokens = client
                    .exchange_code(&code, &redirect_uri, &code_verifier)
                    .await
                    .map_err(|e| grant_error(client.issuer(), e))?;
                self.establish(&client, tokens, &nonce).await
            }
            Grant::ExistingTokens {
                refresh_token,
                id_token,
                access_token,
                nonce,
            } => {
                if refresh_token.expose().is_empty() || id_token.expose().is_empty() {
                    return Err(Error::InvalidRequest {
                        field: if refresh_token.expose().is_empty() {
                            "existing_tokens.refresh_token"
                        } else {
                            "existing_tokens.id_token"
                        },
                        problem: "is required".to_owned(),
                    });
                }
                let tokens = match access_token.filter(|t| !t.expose().is_empty()) {
                    Some(access_token) => TokenSet {
                        access_token,
                        expires_in: None,
                        refresh_token: Some(refresh_token),
                        id_token: Some(id_token),
                        scope: None,
                    },
                    // No access token yet: get one, and keep the rotated
                    // refresh token the issuer answers with.
                    None => {
                        let mut tokens = client
                            .refresh(&refresh_token)
                            .await
                            .map_err(|e| grant_error(client.issuer(), e))?;
                        tokens.refresh_token = tokens.refresh_token.or(Some(refresh_token));
                        tokens.id_token = Some(id_token);
                        tokens
                    }
                };
                self.establish(&client, tokens, &nonce).await
            }
        }
    }

    /// Verifies what the issuer answered, upserts the profile and stores the
    /// session.
    pub(crate) async fn establish(
        &self,
        client: &IssuerClient,
        tokens: TokenSet,
        nonce: &str,
    ) -> Result<NewSession, Error> {
        let sealer = self.sealer()?;
        let client_id = client.client_id().unwrap_or_default();
        let refresh_token = tokens
            .refresh_token
            .clone()
            .ok_or_else(|| Error::InvalidRequest {
                field: "scope",
                problem: "the issuer returned no refresh token: ask for offline_access".to_owned(),
            })?;
        let id_token = tokens
            .id_token
            .clone()
            .ok_or_else(|| Error::InvalidRequest {
                field: "scope",
                problem: "the issuer returned no id token: ask for openid".to_owned(),
            })?;
        let identity = self
            .verifier
            .verify_id_token(id_token.expose(), client.issuer(), client_id, Some(nonce))
            .await?;
        if identity.subject.is_empty() {
            return Err(Error::MalformedToken("the id token has no sub".to_owned()));
        }
        let profile = self
            .profiles
            .upsert_from_claims(&identity.subject, &identity.claims)
            .await?;

        let now = unix_now();
        let access_expires_at = self.access_expiry(&tokens, now).await;
        let handle = Secret::new(random_handle());
        let mut record = SessionRecord {
            id: hash_handle(handle.expose()),
            user_id: identity.subject.clone(),
            issuer: client.issuer().to_owned(),
            refresh_token: None,
            version: 1,
            created_at: now,
            refreshed_at: now,
            expires_at: now + self.config.lifetime_seconds as i64,
            revoked: false,
            issuer_session_id: identity.session_id.clone(),
            access_token: None,
            access_token_expires_at: access_expires_at,
            id_token: None,
            issued_tokens: vec![IssuedToken {
                hash: hash_handle(tokens.access_token.expose()),
                expires_at: if access_expires_at > 0 {
                    access_expires_at
                } else {
                    now + 86_400
                },
            }],
            lease_until: 0,
        };
        let key = record.item_key();
        record.refresh_token = Some(sealer.seal(&refresh_token, &key));
        record.access_token = Some(sealer.seal(&tokens.access_token, &key));
        record.id_token = Some(sealer.seal(&id_token, &key));
        self.store.create_session(&record).await?;
        tracing::info!(session = %&record.id[..16], user = %record.user_id, "session created");
        Ok(NewSession {
            handle,
            record,
            access_token: tokens.access_token,
            id_token: Some(id_token),
            profile,
        })
    }

    /// When an access token expires: `expires_in`, else its own `exp`.
    async fn access_expiry(&self, tokens: &TokenSet, now: i64) -> i64 {
        if let Some(seconds) = tokens.expires_in {
            return now + seconds as i64;
        }
        let request = VerifyRequest {
            token: tokens.access_token.expose().to_owned(),
            ..VerifyRequest::default()
        };
        self.verifier
            .verify(&request)
            .await
            .map(|t| t.expires_at)
            .unwrap_or(0)
    }

    // === refresh ===

    /// Runs `work` once per `key` at a time in this replica; every caller
    /// gets its result. The work runs on its own task, so a caller that goes
    /// away does not abandon a refresh half-way.
    fn single_flight(
        self: &Arc<Self>,
        key: String,
        work: impl Future<Output = Result<Refreshed, Error>> + Send + 'static,
    ) -> Flight {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = inflight.get(&key) {
            return flight.clone();
        }
        let this = Arc::clone(self);
        let owned_key = key.clone();
        let task = tokio::spawn(async move {
            let result = work.await;
            this.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&owned_key);
            result
        });
        let flight = async move {
            task.await
                .unwrap_or_else(|e| Err(Error::Internal(format!("refresh task: {e}"))))
        }
        .boxed()
        .shared();
        inflight.insert(key, flight.clone());
        flight
    }

    /// A fresh access token for the session behind `handle`.
    pub async fn refresh_session(self: &Arc<Self>, handle: &str) -> Result<Refreshed, Error> {
        check_handle(handle)?;
        let id = hash_handle(handle);
        let this = Arc::clone(self);
        let key = format!("session:{id}");
        self.single_flight(key, async move { this.refresh_record(&id).await })
            .await
    }

    /// Spends a raw refresh token held by the caller; returns the rotated one.
    pub async fn refresh_token(
        self: &Arc<Self>,
        issuer: &str,
        refresh_token: Secret,
    ) -> Result<Refreshed, Error> {
        if refresh_token.expose().is_empty() {
            return Err(Error::InvalidRequest {
                field: "refresh_token",
                problem: "is required".to_owned(),
            });
        }
        let client = Arc::clone(self.issuer(issuer)?);
        let key = format!("token:{}", hash_handle(refresh_token.expose()));
        self.single_flight(key, async move {
            let tokens = client
                .refresh(&refresh_token)
                .await
                .map_err(|e| grant_error(client.issuer(), e))?;
            let now = unix_now();
            Ok(Refreshed {
                expires_at: tokens.expires_in.map_or(0, |s| now + s as i64),
                scopes: scopes_of(tokens.scope.as_deref()),
                access_token: tokens.access_token,
                id_token: tokens.id_token,
                refresh_token: tokens.refresh_token,
            })
        })
        .await
    }

    /// Loads a session that may be refreshed.
    async fn live_record(&self, id: &str, now: i64) -> Result<SessionRecord, Error> {
        let record = self
            .store
            .get_session(id, i64::MIN)
            .await?
            .ok_or(Error::SessionNotFound)?;
        if record.revoked {
            return Err(Error::SessionRevoked);
        }
        if record.expires_at <= now {
            return Err(Error::SessionExpired);
        }
        Ok(record)
    }

    /// The stored access token, when it was refreshed recently enough for
    /// another caller to share it.
    fn recent_token(&self, record: &SessionRecord, now: i64) -> Result<Option<Refreshed>, Error> {
        let recent = now - record.refreshed_at < self.config.reuse_access_token_seconds as i64;
        let valid = record.access_token_expires_at == 0 || record.access_token_expires_at > now + 5;
        match (&record.access_token, recent && valid) {
            (Some(sealed), true) => {
                let sealer = self.sealer()?;
                let key = record.item_key();
                let open = |s| {
                    sealer
                        .open(s, &key)
                        .map_err(|e| Error::Internal(e.to_string()))
                };
                Ok(Some(Refreshed {
                    access_token: open(sealed)?,
                    expires_at: record.access_token_expires_at,
                    id_token: record.id_token.as_ref().map(open).transpose()?,
                    refresh_token: None,
                    scopes: Vec::new(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// Takes the session's lease (or finds a token another replica just
    /// got), then refreshes at the issuer and stores the rotation.
    async fn refresh_record(&self, id: &str) -> Result<Refreshed, Error> {
        let wait_until = unix_now() + self.config.lease_seconds as i64 + 5;
        let leased = loop {
            let now = unix_now();
            let record = self.live_record(id, now).await?;
            if let Some(recent) = self.recent_token(&record, now)? {
                return Ok(recent);
            }
            if record.lease_until > now {
                // Another replica is refreshing: wait for its token.
                if now > wait_until {
                    return Err(Error::Conflict);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let mut leased = record.clone();
            leased.version += 1;
            leased.lease_until = now + self.config.lease_seconds as i64;
            match self
                .store
                .update_session(&leased, record.version, now)
                .await
            {
                Ok(()) => break leased,
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(Error::SessionNotFound),
                Err(other) => return Err(other.into()),
            }
        };

        let sealer = self.sealer()?;
        let key = leased.item_key();
        let client = self
            .issuers
            .get(&leased.issuer)
            .ok_or_else(|| Error::Internal(format!("issuer {} has no client", leased.issuer)))?;
        let refresh_token = leased
            .refresh_token
            .as_ref()
            .ok_or(Error::SessionRevoked)
            .and_then(|s| {
                sealer
                    .open(s, &key)
                    .map_err(|e| Error::Internal(e.to_string()))
            })?;
        match client.refresh(&refresh_token).await {
            Ok(tokens) => self.store_rotation(leased, tokens).await,
            Err(IssuerError::Grant { error, .. }) if error == "invalid_grant" => {
                // The issuer revoked the token (or its family): so is the session.
                tracing::warn!(session = %&id[..16], "issuer answered invalid_grant: session revoked");
                self.mark_revoked(leased).await?;
                Err(Error::SessionRevoked)
            }
            Err(error) => {
                let answer = grant_error(client.issuer(), error);
                self.release(leased).await;
                Err(answer)
            }
        }
    }

    /// Gives the lease back, the tokens untouched.
    async fn release(&self, leased: SessionRecord) {
        let mut released = leased.clone();
        released.version += 1;
        released.lease_until = 0;
        if let Err(error) = self
            .store
            .update_session(&released, leased.version, unix_now())
            .await
        {
            // The lease then simply runs out.
            tracing::warn!(%error, "could not release a session lease");
        }
    }

    /// Writes the rotated tokens; retried on conflict (a concurrent revoke)
    /// and on store failures, because a rotation lost here is a refresh
    /// token lost.
    async fn store_rotation(
        &self,
        leased: SessionRecord,
        tokens: TokenSet,
    ) -> Result<Refreshed, Error> {
        let sealer = self.sealer()?;
        let now = unix_now();
        let expires_at = self.access_expiry(&tokens, now).await;
        let key = leased.item_key();
        let mut current = leased;
        for attempt in 0..5 {
            let mut next = current.clone();
            next.version += 1;
            next.lease_until = 0;
            next.refreshed_at = now;
            next.expires_at = now + self.config.lifetime_seconds as i64;
            if let Some(rotated) = &tokens.refresh_token {
                next.refresh_token = Some(sealer.seal(rotated, &key));
            }
            next.access_token = Some(sealer.seal(&tokens.access_token, &key));
            next.access_token_expires_at = expires_at;
            if let Some(id_token) = &tokens.id_token {
                next.id_token = Some(sealer.seal(id_token, &key));
            }
            next.issued_tokens.retain(|t| t.expires_at > now);
            next.issued_tokens.push(IssuedToken {
                hash: hash_handle(tokens.access_token.expose()),
                expires_at: if expires_at > 0 {
                    expires_at
                } else {
                    now + 86_400
                },
            });
            match self.store.update_session(&next, current.version, now).await {
                Ok(()) => {
                    return Ok(Refreshed {
                        access_token: tokens.access_token,
                        expires_at,
                        id_token: tokens.id_token,
                        refresh_token: None,
                        scopes: scopes_of(tokens.scope.as_deref()),
                    });
                }
                Err(StoreError::Conflict) => {
                    current = self
                        .store
                        .get_session(&current.id, i64::MIN)
                        .await?
                        .ok_or(Error::SessionNotFound)?;
                    if current.revoked {
                        // Revoked while we refreshed: the new token must die too.
                        if let (Some(rotated), Some(client)) =
                            (&tokens.refresh_token, self.issuers.get(&current.issuer))
                        {
                            let _ = client.revoke(rotated).await;
                        }
                        return Err(Error::SessionRevoked);
                    }
                }
                Err(StoreError::Unavailable(detail)) if attempt < 4 => {
                    tracing::warn!(%detail, attempt, "store unavailable while saving a rotated refresh token; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::StoreUnavailable)
    }

    // === revoke ===

    /// Revokes the session behind `handle`; returns how many were revoked
    /// (0 when it already was).
    pub async fn revoke_handle(&self, handle: &str) -> Result<u32, Error> {
        check_handle(handle)?;
        let record = self
            .store
            .get_session(&hash_handle(handle), i64::MIN)
            .await?
            .ok_or(Error::SessionNotFound)?;
        self.revoke_record(record).await
    }

    /// Revokes every session of `user_id`, and every token of that user
    /// issued until now; for callers holding the trusted permission.
    pub async fn revoke_user(
        &self,
        caller_token: Option<&str>,
        user_id: &str,
    ) -> Result<u32, Error> {
        if user_id.is_empty() || user_id.len() > 512 {
            return Err(Error::InvalidRequest {
                field: "user_id",
                problem: "must be 1 to 512 bytes".to_owned(),
            });
        }
        self.verifier
            .verify_service(caller_token, &self.config.trusted_permission)
            .await?;
        let expires_at = unix_now() + self.config.revocation_ttl_seconds as i64;
        let subject: Vec<_> = self
            .verifier
            .issuers()
            .map(|p| {
                revocation(
                    RevocationKind::Subject,
                    p.keys().issuer(),
                    user_id,
                    expires_at,
                )
            })
            .collect();
        for r in &subject {
            self.store.put_revocation(r).await?;
        }
        self.revocations.apply(&subject);
        let mut revoked = 0;
        let mut first_error = None;
        for record in self.store.list_sessions(user_id, unix_now()).await? {
            match self.revoke_record(record).await {
                Ok(n) => revoked += n,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(revoked),
        }
    }

    /// Marks the session revoked (retrying on conflict), publishes the
    /// revocations of its tokens, then revokes its refresh token at the
    /// issuer. When the issuer is down the session stays revoked in authd,
    /// keeps its sealed refresh token, and a retry finishes the job.
    async fn revoke_record(&self, mut record: SessionRecord) -> Result<u32, Error> {
        let newly = !record.revoked;
        let revoked = self.mark_revoked(record.clone()).await?;
        record = revoked;
        let Some(sealed) = record.refresh_token.clone() else {
            return Ok(u32::from(newly));
        };
        let sealer = self.sealer()?;
        let refresh_token = sealer
            .open(&sealed, &record.item_key())
            .map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(client) = self.issuers.get(&record.issuer) {
            client
                .revoke(&refresh_token)
                .await
                .map_err(|e| grant_error(client.issuer(), e))?;
        }
        // Revoked at the issuer: authd forgets the secret.
        loop {
            let mut cleared = record.clone();
            cleared.version += 1;
            cleared.refresh_token = None;
            cleared.access_token = None;
            match self
                .store
                .update_session(&cleared, record.version, i64::MIN)
                .await
            {
                Ok(()) | Err(StoreError::NotFound) => break,
                Err(StoreError::Conflict) => {
                    record = self
                        .store
                        .get_session(&record.id, i64::MIN)
                        .await?
                        .ok_or(Error::SessionNotFound)?;
                }
                Err(other) => return Err(other.into()),
            }
        }
        tracing::info!(session = %&record.id[..16], user = %record.user_id, "session revoked");
        Ok(u32::from(newly))
    }

    /// Sets `revoked` with a conditional write and publishes revocations for
    /// the session's `sid` and the access tokens authd handed out.
    async fn mark_revoked(&self, mut record: SessionRecord) -> Result<SessionRecord, Error> {
        let now = unix_now();
        loop {
            if !record.revoked {
                let mut next = record.clone();
                next.version += 1;
                next.revoked = true;
                next.lease_until = 0;
                match self
                    .store
                    .update_session(&next, record.version, i64::MIN)
                    .await
                {
                    Ok(()) => record = next,
                    Err(StoreError::Conflict) => {
                        record = self
                            .store
                            .get_session(&record.id, i64::MIN)
                            .await?
                            .ok_or(Error::SessionNotFound)?;
                        continue;
                    }
                    Err(StoreError::NotFound) => return Err(Error::SessionNotFound),
                    Err(other) => return Err(other.into()),
                }
            }
            break;
        }
        let ttl = now + self.config.revocation_ttl_seconds as i64;
        let mut revocations: Vec<_> = record
            .issued_tokens
            .iter()
            .filter(|t| t.expires_at > now)
            .map(|t| {
                revocation(
                    RevocationKind::TokenHash,
                    &record.issuer,
                    &t.hash,
                    t.expires_at,
                )
            })
            .collect();
        if let Some(sid) = &record.issuer_session_id {
            revocations.push(revocation(
                RevocationKind::SessionId,
                &record.issuer,
                sid,
                ttl,
            ));
        }
        for r in &revocations {
            self.store.put_revocation(r).await?;
        }
        self.revocations.apply(&revocations);
        Ok(record)
    }
}
