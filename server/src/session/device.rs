//! Device login (RFC 8628) for apps with no browser: authd starts the
//! authorization at the issuer and turns each poll's answer into a state,
//! or into a new session once the user approved.

use std::sync::Arc;

use super::{NewSession, Sessions, grant_error, input, unix_now};
use crate::{
    error::Error,
    issuer::{DeviceAuthorization, IssuerError},
    secrets::{SealedSecret, hash_handle},
    store::DeviceApproval,
};

/// Where a device login stands.
#[derive(Debug, Clone)]
pub enum DeviceLoginState {
    /// Not answered yet; poll again after `interval` seconds.
    Pending {
        /// Seconds to wait.
        interval: u64,
    },
    /// Polling too fast; wait `interval` seconds.
    SlowDown {
        /// Seconds to wait.
        interval: u64,
    },
    /// The user refused.
    Denied,
    /// The device code expired.
    Expired,
    /// Approved: the new session.
    Approved(Box<NewSession>),
}

/// The poll interval RFC 8628 assumes when the issuer names none.
const DEFAULT_INTERVAL: u64 = 5;

/// The longest poll interval a caller may say it uses.
const MAX_INTERVAL: u64 = 3600;

/// What a slow down adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: u64 = 5;

/// How long a poll repeated after APPROVED gets the same session: longer
/// than any client's retry, shorter than a device code lives (Auth0: 900 s).
const APPROVAL_REPLAY_SECONDS: i64 = 600;

impl Sessions {
    /// Starts a device login asking for `scopes` (plus `openid` and
    /// `offline_access`, which a session needs, and
    /// `sessions.device_login_scopes`) and `audience` (default: the issuer's
    /// first configured audience).
    pub async fn start_device_login(
        self: &Arc<Self>,
        issuer: &str,
        scopes: &[String],
        audience: &str,
    ) -> Result<DeviceAuthorization, Error> {
        let client = Arc::clone(self.issuer(issuer)?);
        if scopes.len() > input::MAX_SCOPES {
            return Err(Error::InvalidRequest {
                field: "scopes",
                problem: format!("at most {} scopes", input::MAX_SCOPES),
            });
        }
        input::bounded("audience", audience, input::MAX_AUDIENCE)?;
        // A session needs `openid` and `offline_access`; the configured
        // scopes (default `profile email`) fill the profile authd keeps.
        let mut wanted: Vec<&str> = vec!["openid", "offline_access"];
        for scope in &self.config.device_login_scopes {
            if !wanted.contains(&scope.as_str()) {
                wanted.push(scope);
            }
        }
        for scope in scopes {
            input::bounded("scopes", scope, input::MAX_SCOPE)?;
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(Error::InvalidRequest {
                    field: "scopes",
                    problem: "each scope is one non-empty word".to_owned(),
                });
            }
            if !wanted.contains(&scope.as_str()) {
                wanted.push(scope);
            }
        }
        let audience = if audience.is_empty() {
            self.verifier
                .issuers()
                .find(|p| p.keys().issuer().as_ref() == client.issuer())
                .and_then(|p| p.audiences().first().cloned())
                .unwrap_or_default()
        } else {
            audience.to_owned()
        };
        client
            .start_device(&wanted.join(" "), &audience)
            .await
            .map_err(|e| grant_error(client.issuer(), e))
    }

    /// Polls the issuer once for `device_code`. `interval` is the one the
    /// caller polls at now (0: the RFC's default); the answer keeps it while
    /// pending and adds five seconds on a slow down.
    pub async fn poll_device_login(
        &self,
        issuer: &str,
        device_code: &str,
        interval: u64,
    ) -> Result<DeviceLoginState, Error> {
        if device_code.is_empty() || device_code.len() > 512 {
            return Err(Error::InvalidRequest {
                field: "device_code",
                problem: "must be 1 to 512 bytes".to_owned(),
            });
        }
        if interval > MAX_INTERVAL {
            return Err(Error::InvalidRequest {
                field: "interval",
                problem: format!("must be at most {MAX_INTERVAL} seconds"),
            });
        }
        let interval = if interval == 0 {
            DEFAULT_INTERVAL
        } else {
            interval
        };
        let client = Arc::clone(self.issuer(issuer)?);
        // The issuer hands the tokens out once: a poll repeated after an
        // APPROVED answer the app lost gets the same session again.
        let approval = hash_handle(device_code);
        if let Some(session) = self.replay_approval(&approval).await? {
            return Ok(DeviceLoginState::Approved(session));
        }
        match client.poll_device(device_code).await {
            Ok(tokens) => {
                let session = self.establish(&client, tokens, "", true).await?;
                self.remember_approval(&approval, &session).await;
                Ok(DeviceLoginState::Approved(Box::new(session)))
            }
            Err(IssuerError::Grant { error, .. }) => match error.as_str() {
                "authorization_pending" => Ok(DeviceLoginState::Pending { interval }),
                "slow_down" => Ok(DeviceLoginState::SlowDown {
                    interval: interval + SLOW_DOWN_STEP,
                }),
                "access_denied" => Ok(DeviceLoginState::Denied),
                "expired_token" => Ok(DeviceLoginState::Expired),
                // A concurrent poll may have just won the tokens.
                _ => match self.replay_approval(&approval).await? {
                    Some(session) => Ok(DeviceLoginState::Approved(session)),
                    None => Err(Error::GrantRejected(error)),
                },
            },
            // Auth0 answers slow_down with 429.
            Err(IssuerError::RateLimited { .. }) => Ok(DeviceLoginState::SlowDown {
                interval: interval + SLOW_DOWN_STEP,
            }),
            Err(other) => Err(grant_error(client.issuer(), other)),
        }
    }

    /// Keeps the approved session's handle (sealed) for
    /// [`APPROVAL_REPLAY_SECONDS`], under the device code's hash. The only
    /// place authd keeps a handle rather than its hash, for minutes.
    async fn remember_approval(&self, id: &str, session: &NewSession) {
        let mut approval = DeviceApproval {
            id: id.to_owned(),
            session_id: session.record.id.clone(),
            session_version: Some(session.record.version),
            handle: SealedSecret(String::new()),
            expires_at: unix_now() + APPROVAL_REPLAY_SECONDS,
        };
        approval.handle = match self.seal(&session.handle, &approval.item_key()).await {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::warn!(%error, "cannot seal a device approval; a repeated poll will not find it");
                return;
            }
        };
        if let Err(error) = self.store.put_device_approval(&approval).await {
            tracing::warn!(%error, "cannot record a device approval; a repeated poll will not find it");
        }
    }

    /// The session an earlier poll of this device code was approved with.
    async fn replay_approval(&self, id: &str) -> Result<Option<Box<NewSession>>, Error> {
        let now = unix_now();
        let Some(approval) = self.store.get_device_approval(id, now).await? else {
            return Ok(None);
        };
        // Spent once the session was used: refreshed (even in vain),
        // revoked, deleted or expired. Only a poll repeated before any of
        // that gets the session again.
        let record = self
            .store
            .get_session(&approval.session_id, now)
            .await?
            .filter(|r| !r.revoked && approval.session_version == Some(r.version))
            .ok_or(Error::DeviceCodeSpent)?;
        let handle = self.open(&approval.handle, &approval.item_key()).await?;
        let key = record.item_key();
        let Some(access_token) = &record.access_token else {
            return Err(Error::Internal(
                "the session keeps no access token".to_owned(),
            ));
        };
        let access_token = self.open(access_token, &key).await?;
        let id_token = match &record.id_token {
            Some(sealed) => Some(self.open(sealed, &key).await?),
            None => None,
        };
        let profile = self
            .profiles
            .stored(&record.user_id)
            .await?
            .ok_or_else(|| Error::UserNotFound(record.user_id.clone()))?;
        tracing::info!(session = %record.id.get(..16).unwrap_or_default(), "device poll repeated after approval: same session");
        Ok(Some(Box::new(NewSession {
            handle,
            record,
            access_token,
            id_token,
            profile,
        })))
    }
}
