//! Revoking sessions: marked revoked, revocations published to every
//! replica, the refresh token revoked at the issuer and then forgotten.

use super::*;

impl Sessions {
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
    /// issued until now. Only trusted callers may ask: the `[[callers]]`
    /// policy (`callers::PolicyLayer`) decides that before the call reaches
    /// here (`sessions.trusted_permission` is one of its entries).
    pub async fn revoke_user(&self, user_id: &str) -> Result<u32, Error> {
        if user_id.is_empty() || user_id.len() > 512 {
            return Err(Error::InvalidRequest {
                field: "user_id",
                problem: "must be 1 to 512 bytes".to_owned(),
            });
        }
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
    pub(super) async fn revoke_record(&self, mut record: SessionRecord) -> Result<u32, Error> {
        let newly = !record.revoked;
        let revoked = self.mark_revoked(record.clone()).await?;
        if newly {
            metrics::counter!("authd_sessions_revoked_total").increment(1);
        }
        record = revoked;
        let Some(sealed) = record.refresh_token.clone() else {
            return Ok(u32::from(newly));
        };
        let refresh_token = self.open(&sealed, &record.item_key()).await?;
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
    pub(super) async fn mark_revoked(
        &self,
        mut record: SessionRecord,
    ) -> Result<SessionRecord, Error> {
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
        let mut revocations = self.token_revocations(&record, now).await;
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

    /// Revocations naming the unexpired access tokens handed out for
    /// `record`, by the digest of what the issuer signed. A record written
    /// before tokens were named that way holds whole-token hashes: those are
    /// published as they are, and the newest token (kept sealed) is also
    /// named by its signed content, so that a re-encoded twin of it is
    /// refused too.
    async fn token_revocations(&self, record: &SessionRecord, now: i64) -> Vec<Revocation> {
        let mut out = Vec::new();
        for issued in record.issued_tokens.iter().filter(|t| t.expires_at > now) {
            let (kind, value) = match (&issued.signed_digest, &issued.hash) {
                (Some(digest), _) => (RevocationKind::SignedDigest, digest),
                (None, Some(hash)) => (RevocationKind::TokenHash, hash),
                (None, None) => continue,
            };
            out.push(revocation(kind, &record.issuer, value, issued.expires_at));
        }
        let legacy = record
            .issued_tokens
            .iter()
            .any(|t| t.signed_digest.is_none() && t.expires_at > now);
        if legacy && let Some(sealed) = &record.access_token {
            let newest = self.open(sealed, &record.item_key()).await;
            match newest {
                Ok(token) => {
                    let digest = signed_digest(token.expose());
                    if !out.iter().any(|r| r.value == digest) {
                        let expires_at = if record.access_token_expires_at > now {
                            record.access_token_expires_at
                        } else {
                            now + 86_400
                        };
                        out.push(revocation(
                            RevocationKind::SignedDigest,
                            &record.issuer,
                            &digest,
                            expires_at,
                        ));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, session = %record.id.get(..16).unwrap_or_default(), "cannot open the session's access token; its whole-token hash is revoked");
                }
            }
        }
        out
    }
}
