//! Creating sessions: exchanging a grant, verifying the id token, storing
//! the sealed tokens under the hash of a fresh handle.

use super::*;

impl Sessions {
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
                input::required("authorization_code.code", &code, input::MAX_CODE)?;
                input::required(
                    "authorization_code.redirect_uri",
                    &redirect_uri,
                    input::MAX_URI,
                )?;
                input::bounded(
                    "authorization_code.code_verifier",
                    &code_verifier,
                    input::MAX_VERIFIER,
                )?;
                input::bounded("authorization_code.nonce", &nonce, input::MAX_NONCE)?;
                let tokens = client
                    .exchange_code(&code, &redirect_uri, &code_verifier)
                    .await
                    .map_err(|e| grant_error(client.issuer(), e))?;
                self.establish(&client, tokens, &nonce, false).await
            }
            Grant::ExistingTokens {
                refresh_token,
                id_token,
                access_token,
                nonce,
            } => {
                input::required(
                    "existing_tokens.refresh_token",
                    refresh_token.expose(),
                    input::MAX_REFRESH_TOKEN,
                )?;
                input::required(
                    "existing_tokens.id_token",
                    id_token.expose(),
                    input::MAX_TOKEN,
                )?;
                if let Some(access_token) = &access_token {
                    input::bounded(
                        "existing_tokens.access_token",
                        access_token.expose(),
                        input::MAX_TOKEN,
                    )?;
                }
                input::bounded("existing_tokens.nonce", &nonce, input::MAX_NONCE)?;
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
                self.establish(&client, tokens, &nonce, false).await
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
        device_login: bool,
    ) -> Result<NewSession, Error> {
        let session = self
            .establish_uncounted(client, tokens, nonce, device_login)
            .await?;
        metrics::counter!("authd_sessions_created_total").increment(1);
        Ok(session)
    }

    async fn establish_uncounted(
        &self,
        client: &IssuerClient,
        tokens: TokenSet,
        nonce: &str,
        device_login: bool,
    ) -> Result<NewSession, Error> {
        self.sealer()?;
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
            issued_tokens: vec![issued_token(
                tokens.access_token.expose(),
                if access_expires_at > 0 {
                    access_expires_at
                } else {
                    now + 86_400
                },
            )],
            lease_until: 0,
            device_code_open: device_login,
        };
        let key = record.item_key();
        record.refresh_token = Some(self.seal(&refresh_token, &key).await?);
        record.access_token = Some(self.seal(&tokens.access_token, &key).await?);
        record.id_token = Some(self.seal(&id_token, &key).await?);
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
    pub(super) async fn access_expiry(&self, tokens: &TokenSet, now: i64) -> i64 {
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
}
