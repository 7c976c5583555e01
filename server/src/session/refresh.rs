//! Refreshing sessions: single-flight per replica, a lease across
//! replicas, and the rotated refresh token stored with a conditional write.

use super::*;
use crate::revocation::SignedIdentity;
use tracing::Instrument as _;

impl Sessions {
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
            refreshed("shared");
            return flight.clone();
        }
        let this = Arc::clone(self);
        let owned_key = key.clone();
        // In the span of the call that started it: its issuer and store
        // operations belong to that call's trace.
        let task = tokio::spawn(
            async move {
                let result = work.await;
                this.inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&owned_key);
                result
            }
            .in_current_span(),
        );
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
        input::required(
            "refresh_token",
            refresh_token.expose(),
            input::MAX_REFRESH_TOKEN,
        )?;
        let client = Arc::clone(self.issuer(issuer)?);
        let key = format!("token:{}", hash_handle(refresh_token.expose()));
        self.single_flight(key, async move {
            refreshed("upstream");
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
    /// another caller to share it: within the reuse window, or at or after
    /// `minted_since` (a refresh this caller waited for).
    async fn recent_token(
        &self,
        record: &SessionRecord,
        now: i64,
        minted_since: Option<i64>,
    ) -> Result<Option<Refreshed>, Error> {
        let recent = now - record.refreshed_at < self.config.reuse_access_token_seconds as i64
            || minted_since.is_some_and(|since| record.refreshed_at >= since);
        let valid = record.access_token_expires_at == 0 || record.access_token_expires_at > now + 5;
        match (&record.access_token, recent && valid) {
            (Some(sealed), true) => {
                let key = record.item_key();
                let id_token = match &record.id_token {
                    Some(sealed) => Some(self.open(sealed, &key).await?),
                    None => None,
                };
                Ok(Some(Refreshed {
                    access_token: self.open(sealed, &key).await?,
                    expires_at: record.access_token_expires_at,
                    id_token,
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
        let arrived = unix_now();
        let wait_until = arrived + self.config.lease_seconds as i64 + 5;
        // Set once another replica's lease made this caller wait: the token
        // that replica stores was minted after this caller asked, so it is
        // shared whatever the reuse window (spending the rotated refresh
        // token again would only race the issuer's reuse detection).
        let mut waited = false;
        let leased = loop {
            let now = unix_now();
            let record = self.live_record(id, now).await?;
            // Its `sid` or its user revoked since it began (a back-channel
            // logout, RevokeSession on any replica, `authd revoke`): it ends
            // here as RevokeSession ends a session, its refresh token
            // revoked at the issuer and forgotten. An issuer that does not
            // answer leaves the session revoked and its token sealed, as
            // RevokeSession does; the caller is refused either way.
            if self.revocations.check_begun(&started_as(&record)).is_err() {
                if let Err(error) = self.revoke_record(record).await {
                    tracing::warn!(session = %&id[..16], %error, "session ended by a revocation; revoking it did not finish");
                }
                return Err(Error::SessionRevoked);
            }
            if let Some(recent) = self
                .recent_token(&record, now, waited.then_some(arrived))
                .await?
            {
                if record.device_code_open {
                    self.close_device_code(&record, now).await?;
                }
                refreshed(if waited { "lease_wait" } else { "reused" });
                return Ok(recent);
            }
            if record.lease_until > now {
                // Another replica is refreshing: wait for its token.
                waited = true;
                if now > wait_until {
                    return Err(Error::Conflict);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let mut leased = record.clone();
            leased.version += 1;
            leased.device_code_open = false;
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
        // The refresh token opens, and a data key will seal its rotation,
        // before it is spent: a rotation that cannot be sealed is lost.
        let ready = async {
            let sealed = leased.refresh_token.as_ref().ok_or(Error::SessionRevoked)?;
            let refresh_token = self.open(sealed, &key).await?;
            sealer.warm().await?;
            Ok::<_, Error>(refresh_token)
        };
        let refresh_token = match ready.await {
            Ok(token) => token,
            Err(error) => {
                self.release(leased).await;
                return Err(error);
            }
        };
        refreshed("upstream");
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

    /// The first use of a device login's session that changes nothing else
    /// still moves its version on: the device code is spent from now.
    async fn close_device_code(&self, record: &SessionRecord, now: i64) -> Result<(), Error> {
        let mut used = record.clone();
        used.version += 1;
        used.device_code_open = false;
        match self.store.update_session(&used, record.version, now).await {
            // Whoever moved it on first spent the code too.
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(StoreError::NotFound) => Err(Error::SessionNotFound),
            Err(other) => Err(other.into()),
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
        let now = unix_now();
        let expires_at = self.access_expiry(&tokens, now).await;
        let key = leased.item_key();
        let rotated = match &tokens.refresh_token {
            Some(rotated) => Some(self.seal(rotated, &key).await?),
            None => None,
        };
        let access_token = self.seal(&tokens.access_token, &key).await?;
        let id_token = match &tokens.id_token {
            Some(id_token) => Some(self.seal(id_token, &key).await?),
            None => None,
        };
        let mut current = leased;
        for attempt in 0..5 {
            let mut next = current.clone();
            next.version += 1;
            next.lease_until = 0;
            next.refreshed_at = now;
            next.expires_at = now + self.config.lifetime_seconds as i64;
            if let Some(rotated) = &rotated {
                next.refresh_token = Some(rotated.clone());
            }
            next.access_token = Some(access_token.clone());
            next.access_token_expires_at = expires_at;
            if let Some(id_token) = &id_token {
                next.id_token = Some(id_token.clone());
            }
            next.issued_tokens.retain(|t| t.expires_at > now);
            next.issued_tokens.push(issued_token(
                tokens.access_token.expose(),
                if expires_at > 0 {
                    expires_at
                } else {
                    now + 86_400
                },
            ));
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
}

/// What a revocation can match of a session: its issuer's `sid`, its user
/// as of when it began (no token: a digest never matches an empty input).
fn started_as(record: &SessionRecord) -> SignedIdentity<'_> {
    SignedIdentity {
        issuer: &record.issuer,
        subject: &record.user_id,
        session_id: record.issuer_session_id.as_deref(),
        issued_at: Some(record.created_at),
        token: "",
    }
}

/// Counts a refresh by how it was answered: `upstream` (a call to the
/// issuer), `shared` (joined this replica's call under way), `reused` (the
/// token stored within the reuse window), `lease_wait` (the token another
/// replica stored while this caller waited for its lease).
fn refreshed(path: &'static str) {
    metrics::counter!("authd_sessions_refreshed_total", "path" => path).increment(1);
}
